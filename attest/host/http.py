"""The client side of the verifier service's HTTP API: one bounded, strict JSON exchange.

Every host command that talks to a verifier (`attest run --verifier`, `attest authorize
--verifier`, enrollment) goes through :func:`post_json`: the URL checked first
(:func:`check_verifier_url`), https verified against the system's roots or ``cacert``,
a timeout on every request, an answer capped before it is parsed, strict JSON (no
duplicate members). Retries only where the request is idempotent: the caller says so.
Nothing in an answer is trusted by this module: what the verifier decided is read from
its signed attestation result (attest.ear), never from the JSON around it.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Any

from attest import strictjson
from attest.errors import EnvironmentProblem, UsageError

DEFAULT_TIMEOUT_S = 10.0
# An answer is a decision with its attestation result: a few kilobytes. Whatever answers
# at the URL chooses the length, so it is capped before it is read whole.
MAX_ANSWER_BYTES = 1 << 20
RETRY_PAUSE_S = 0.2
# ``timeout`` bounds each socket operation; a verifier that answers a byte at a time
# passes every one of them. The whole exchange (connect, send, the answer's headers and
# body) is bounded too, at this many timeouts.
EXCHANGE_TIMEOUTS = 3


class VerifierUnreachable(EnvironmentProblem):
    """The remote verifier did not answer (or not with JSON): nothing runs (exit 3)."""


def check_verifier_url(url: str, *, insecure: bool = False) -> None:
    """UsageError unless ``url`` is https, or http to this machine (loopback), or http
    anywhere with ``insecure``.

    What a verifier decided is read only from its signed attestation result, so a
    forged answer can't make a command run; still, plain http to another machine lets
    whoever is on the path read the artifact and deny service at will, so it takes an
    explicit ``--insecure``. Loopback never leaves the machine: allowed.
    """
    if not (url.isascii() and url.isprintable()) or any(char.isspace() for char in url):
        # http.client refuses these only when it connects: say it here, as usage.
        raise UsageError(f"--verifier holds spaces, control or non-ASCII characters: {url!r}",
                         hint="percent-encode them (%20, %C3%A9), a host in its xn-- form")
    try:
        parts = urllib.parse.urlsplit(url)
        # Read here, so that a bad host or port ("[::1", ":99999") is refused as usage.
        host, _ = (parts.hostname or "").rstrip(".").lower(), parts.port
    except ValueError as exc:
        raise UsageError(f"--verifier is not a URL: {url!r} ({exc})") from None
    # Only http(s): urllib would also open file: and other schemes.
    if parts.scheme not in ("http", "https") or not host:
        raise UsageError(f"--verifier must be an http(s) URL naming a host, not {url!r}")
    if parts.scheme == "https" or insecure or is_loopback(host):
        return
    raise UsageError(f"--verifier {url!r} is plain http to another machine: anyone on the "
                     "path reads the artifact and answers in the verifier's place",
                     hint="use https (the verifier's certificate is checked, --cacert for a "
                     "private CA), http to localhost / 127.0.0.1, or say --insecure")


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(cacert: Path | None) -> ssl.SSLContext:
    """Python's default verification (hostname, chain), against ``cacert`` when given."""
    try:
        return ssl.create_default_context(cafile=None if cacert is None else str(cacert))
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--cacert {cacert}: not a readable PEM certificate ({exc})") from None


def post_json(url: str, body: bytes, content_type: str = "application/json", *,
              cacert: Path | None = None, insecure: bool = False,
              timeout: float = DEFAULT_TIMEOUT_S, retries: int = 0) -> dict[str, Any]:
    """POST ``body`` to ``url`` and return the JSON object answered (a 4xx too: the
    verifier refused the request). ``retries`` more attempts after a failure to connect,
    a 429 or a 503, for idempotent requests only; a 429, a 5xx, or no JSON object:
    :class:`VerifierUnreachable`."""
    check_verifier_url(url, insecure=insecure)
    context = tls_context(cacert) if url.lower().startswith("https:") else None
    for attempt in range(retries + 1):
        try:
            return _bounded(url, body, content_type, context, timeout)
        except _Retryable as exc:
            if attempt == retries:
                raise VerifierUnreachable(str(exc), hint="check --verifier and that the "
                                          "service is up") from None
            time.sleep(RETRY_PAUSE_S * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class _Retryable(Exception):
    """The request may not have reached the verifier, or it was unavailable."""


def _bounded(url: str, body: bytes, content_type: str, context: ssl.SSLContext | None,
             timeout: float) -> dict[str, Any]:
    """:func:`_exchange` given EXCHANGE_TIMEOUTS * ``timeout`` seconds in all. It runs in
    a daemon thread: past the deadline the caller gets VerifierUnreachable (never
    retried: the request may be with the verifier) and the thread is left to its socket,
    which its own timeout ends at the next stall."""
    import threading

    outcome: list[tuple[bool, Any]] = []

    def work() -> None:
        try:
            outcome.append((True, _exchange(url, body, content_type, context, timeout)))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            outcome.append((False, exc))

    worker = threading.Thread(target=work, name="attest-verifier-exchange", daemon=True)
    worker.start()
    worker.join(EXCHANGE_TIMEOUTS * timeout)
    if not outcome:
        raise VerifierUnreachable(f"the verifier at {url} did not answer within "
                                  f"{EXCHANGE_TIMEOUTS * timeout:g} s",
                                  hint="check --verifier and that the service is up")
    done, value = outcome[0]
    if done:
        result: dict[str, Any] = value
        return result
    raise value


def _exchange(url: str, body: bytes, content_type: str, context: ssl.SSLContext | None,
              timeout: float) -> dict[str, Any]:
    # Imported here: http.client and its email parsing are for remote runs only.
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": content_type,
                                              "Accept": "application/json"})
    # No redirect is followed: urllib would turn a 301/302/303 into a GET to wherever
    # Location says (another host, plain http), past check_verifier_url. A 3xx is then an
    # HTTPError without a JSON answer: the verifier is unreachable.
    opener = urllib.request.build_opener(_no_redirect_handler(),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=timeout) as response:
            data = _parse(url, response.read(MAX_ANSWER_BYTES + 1))
    except urllib.error.HTTPError as exc:
        if exc.code in (429, 503):
            raise _Retryable(f"the verifier at {url} is unavailable (HTTP {exc.code})") from None
        if exc.code >= 500:
            # The verifier failed, not the request: no decision was made. Read as an
            # answer it would be a denial without a signed result (invalid_signature, exit
            # 1), which says "forged" where the service is only broken.
            raise VerifierUnreachable(f"the verifier at {url} failed (HTTP {exc.code})",
                                      hint="the verifier's log says why") from None
        try:
            data = _parse(url, exc.read(MAX_ANSWER_BYTES + 1))
        except VerifierUnreachable:
            raise VerifierUnreachable(f"the verifier at {url} answered HTTP {exc.code} "
                                      "without a JSON answer") from None
    except (urllib.error.URLError, OSError) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(cause, ssl.SSLCertVerificationError):
            # Not retried, and not "is the service up?": it is up, and this host does
            # not trust the certificate it showed (another CA, another name, expired).
            raise VerifierUnreachable(
                f"the verifier at {url} showed a certificate this host does not trust: "
                f"{cause.verify_message or cause}",
                hint="pass --cacert with the CA that issued the service's certificate; "
                "the URL's host must be one of the certificate's names") from None
        # str(URLError) is "<urlopen error ...>": say the cause alone.
        raise _Retryable(f"the verifier at {url} is unreachable: {cause}") from None
    return data


def _no_redirect_handler() -> Any:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # urllib then raises the 3xx as an HTTPError

    return NoRedirect()


def _parse(url: str, data: bytes) -> dict[str, Any]:
    if len(data) > MAX_ANSWER_BYTES:
        raise VerifierUnreachable(f"the verifier at {url} answered more than "
                                  f"{MAX_ANSWER_BYTES} bytes")
    try:
        value = strictjson.loads(data)
    except (ValueError, RecursionError) as exc:
        raise VerifierUnreachable(f"the verifier at {url} answered no JSON: "
                                  f"{str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise VerifierUnreachable(f"the verifier at {url} answered no JSON object")
    return value
