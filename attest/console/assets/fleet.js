// The fleet page, live: each host_state event from /ui/events updates its host's row
// (state word, class, reasons) without a reload; a host revoked is marked revoked.
// Everything from the stream is data: written with textContent, never as markup.
"use strict";
(function () {
  var table = document.getElementById("fleet");
  var live = document.getElementById("live");
  if (!table || !live || typeof EventSource === "undefined") {
    return;
  }
  var STATES = ["trusted", "untrusted", "stale", "revoked"];
  var cursor = table.getAttribute("data-cursor") || "0";
  if (!/^[0-9]{1,19}$/.test(cursor)) {
    cursor = "0";
  }
  var announced = {};

  function say(text) {
    live.textContent = text;
  }

  // The row of a host, compared as text: a host id is never put in a selector.
  function rowOf(host) {
    var rows = table.querySelectorAll("tbody tr[data-host]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-host") === host) {
        return rows[i];
      }
    }
    return null;
  }

  function show(host, state, reasons) {
    if (typeof host !== "string" || STATES.indexOf(state) < 0) {
      return;
    }
    var row = rowOf(host);
    if (row === null) {
      if (!announced[host]) {
        announced[host] = true;
        say("new host " + host + ": reload to see it");
      }
      return;
    }
    if (row.getAttribute("data-state") === "revoked") {
      return; // a revoked host id stays revoked, whatever it reports
    }
    row.setAttribute("data-state", state);
    var span = row.querySelector("span.state");
    if (span) {
      span.textContent = state;
      span.className = "state state-" + state;
    }
    var cell = row.querySelector("td.reasons");
    if (cell) {
      var words = Array.isArray(reasons) ? reasons.filter(function (r) {
        return typeof r === "string";
      }) : [];
      cell.textContent = state === "untrusted" ? words.join(", ") : "";
    }
  }

  function parse(message) {
    try {
      var event = JSON.parse(message.data);
      return event && typeof event === "object" ? event : null;
    } catch (e) {
      return null;
    }
  }

  var source = new EventSource("/ui/events?after=" + encodeURIComponent(cursor));
  source.onopen = function () {
    say("Live");
  };
  source.onerror = function () {
    // The browser reconnects by itself with Last-Event-ID; a session gone ends it.
    say(source.readyState === EventSource.CLOSED ? "Not live: reload the page."
      : "Reconnecting\u2026");
  };
  source.addEventListener("host_state", function (message) {
    var event = parse(message);
    if (event && event.data && typeof event.data === "object") {
      show(event.subject, event.data.state, event.data.reasons);
    }
  });
  source.addEventListener("revocation", function (message) {
    var event = parse(message);
    // A host's own revocation names it; its EK's and AKs' come as their own events.
    if (event && event.data && event.data.kind === "host") {
      show(event.data.subject, "revoked", []);
    }
  });
})();
