// The decisions page, live: new decisions from /ui/decisions/stream are prepended to
// table#decisions. Every value from the server is set as textContent, never as markup.
(function () {
  "use strict";
  var MAX_ROWS = 500;
  var RESULTS = ["accepted", "denied"];
  var table = document.getElementById("decisions");
  var live = document.getElementById("live");
  if (!table || !live || !table.tBodies.length) {
    return;
  }
  if (!window.EventSource) {
    live.textContent = "Not live: this browser has no EventSource; reload for new decisions.";
    return;
  }
  var body = table.tBodies[0];
  var cursor = table.getAttribute("data-cursor") || "0";
  if (!/^[0-9]{1,19}$/.test(cursor)) {
    cursor = "0";
  }

  function text(value) {
    return typeof value === "string" && value !== "" ? value : "none";
  }

  function cell(content) {
    var td = document.createElement("td");
    if (typeof content === "string") {
      td.textContent = content;
    } else {
      td.appendChild(content);
    }
    return td;
  }

  function row(d) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-result", d.result);
    tr.setAttribute("data-position", String(d.index + 1));
    var stamp = new Date(d.time * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
    var time = document.createElement("time");
    time.setAttribute("datetime", stamp);
    time.textContent = stamp;
    var result = document.createElement("span");
    result.className = "result result-" + d.result;
    result.textContent = d.result;
    var reasons = Array.isArray(d.reasons) ? d.reasons.filter(function (r) {
      return typeof r === "string";
    }) : [];
    tr.appendChild(cell(time));
    tr.appendChild(cell(result));
    tr.appendChild(cell(reasons.length ? reasons.join(", ") : "none"));
    tr.appendChild(cell(text(d.subject)));
    tr.appendChild(cell(text(d.host)));
    return tr;
  }

  var source = new EventSource("/ui/decisions/stream?after=" + encodeURIComponent(cursor));
  source.addEventListener("open", function () {
    live.textContent = "Live: new decisions appear at the top of the table.";
  });
  source.addEventListener("error", function () {
    live.textContent = source.readyState === EventSource.CLOSED
      ? "Not live: the stream was refused (signed out?); reload the page."
      : "Reconnecting to the live stream\u2026";
  });
  source.addEventListener("decision", function (message) {
    var d;
    try {
      d = JSON.parse(message.data).data;
    } catch (e) {
      return;
    }
    // A time past year 9999 has no ISO form (toISOString throws): not a row.
    if (!d || RESULTS.indexOf(d.result) < 0 || !Number.isSafeInteger(d.time) || d.time < 0
        || d.time >= 253402300800 || typeof d.index !== "number") {
      return;
    }
    body.insertBefore(row(d), body.firstChild);
    while (body.rows.length > MAX_ROWS) {
      body.deleteRow(body.rows.length - 1);
    }
    var caption = table.caption;
    if (caption) {
      caption.textContent = "The newest " + body.rows.length + " decisions, newest first (live)";
    }
  });
})();
