"""Red team of the webhooks (attest.server.webhooks): a subscriber's receiver that holds
its connection open, answering a byte at a time, must not hold back the events of the
other subscribers (an operator's revocation hook among them). Real loopback receivers,
a real store."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attest.server import webhooks
from attest.store import Store, default_url
from attest.store.events import record_event
from tests.server.test_webhooks import SECRET, _receiving, _wait_for


@contextmanager
def _trickling() -> Iterator[tuple[str, threading.Event]]:
    """A receiver that reads the request and answers one byte every 0.2 s, for ever
    (each byte within any per-read timeout): a URL, and the event that ends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    done, connected = threading.Event(), threading.Event()

    def serve() -> None:
        while not done.is_set():
            listener.settimeout(0.2)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                connected.set()
                conn.recv(65536)
                for byte in iter(lambda: b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10**6, b""):
                    for one in byte:
                        if done.wait(0.2):
                            return
                        conn.sendall(bytes([one]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook", connected
    finally:
        done.set()
        thread.join(timeout=30)
        listener.close()


def test_a_receiver_holding_its_connection_does_not_hold_back_the_others(
        tmp_path: Path) -> None:
    """The attack: one subscriber's receiver (compromised, or merely broken) answers a
    byte at a time. urllib's timeout bounds each read, not the answer, so before the fix
    the one delivery thread waited on it for ever, and no other subscriber got any event
    again: a revocation hook blinded by a log collector."""
    store = Store.open(default_url(tmp_path))
    try:
        with _trickling() as (slow_url, connected), _receiving([204]) as good:
            deliverer = webhooks.Deliverer(store, [
                webhooks.Subscriber("slow", slow_url, SECRET.encode()),
                webhooks.Subscriber("ops", good.url, SECRET.encode())],
                poll_s=0.02, first_backoff_s=0.05)
            deliverer.start()
            try:
                with store.write() as tx:
                    record_event(tx, "revocation", "web-7", {"reason": "stolen"}, now=1)
                _wait_for(connected.is_set, "the slow receiver to be reached")
                _wait_for(lambda: len(good.taken()) == 1, "the other subscriber's event")
            finally:
                deliverer.stop()
    finally:
        store.close()
