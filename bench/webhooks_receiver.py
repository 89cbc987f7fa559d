"""The receiver the dispatch benchmark sends webhooks to: a local HTTP/1.1 keep-alive
server in a process of its own that answers every POST 204, counts the requests and the
distinct webhook ids, and verifies a sample of signatures with the `standardwebhooks`
library (as a wallet's receiver would).

Apart from the benchmark's run because it is the body of a forked process: it must cost
the dispatcher as little as a fast receiver would, and its CPU is counted on its own. Its
figures live in shared counters the parent reads at any moment.
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
PATH = "/hooks"
VERIFY_FIRST = 50  # the first requests are all verified, then one in VERIFY_EVERY
VERIFY_EVERY = 50


def receiver_url(port: int) -> str:
    return f"http://{HOST}:{port}{PATH}"


class Counters:
    """Shared with the receiver process: requests, distinct ids, signatures verified and
    refused."""

    NAMES = ("requests", "distinct", "verified", "refused")

    def __init__(self, context):
        self._values = {name: context.Value("q", 0) for name in self.NAMES}

    def add(self, name: str, amount: int = 1) -> None:
        value = self._values[name]
        with value.get_lock():
            value.value += amount

    def read(self) -> dict:
        return {name: value.value for name, value in self._values.items()}


def _serve(port: int, secret: str, counters: Counters, ready) -> None:
    from standardwebhooks import Webhook
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; it sees Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited
    verifier = Webhook(secret)
    seen: set[str] = set()
    lock = threading.Lock()
    state = {"n": 0, "refusals": []}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy

        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            message_id = self.headers.get("webhook-id", "")
            with lock:
                state["n"] += 1
                n = state["n"]
                new = message_id not in seen
                seen.add(message_id)
            counters.add("requests")
            if new:
                counters.add("distinct")
            if n <= VERIFY_FIRST or n % VERIFY_EVERY == 0:
                try:
                    verifier.verify(body, dict(self.headers.items()))
                    counters.add("verified")
                except Exception:  # noqa: BLE001 (any refusal is counted, none answered)
                    counters.add("refused")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):  # nothing per request: it would cost the receiver
            pass

    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    ready.send(True)
    server.serve_forever(poll_interval=0.5)


class Receiver:
    """The receiver process on `port`; `stop` ends it."""

    def __init__(self, port: int, secret: str):
        context = multiprocessing.get_context("fork")
        self.port = port
        self.url = receiver_url(port)
        self.counters = Counters(context)
        parent_end, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(port, secret, self.counters,
                                                            child_end), daemon=True)
        self.process.start()
        child_end.close()
        if not parent_end.poll(30) or not parent_end.recv():
            self.stop()
            raise SystemExit(f"the webhook receiver did not start on port {port}")
        parent_end.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def counts(self) -> dict:
        return self.counters.read()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
