"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1 that verifies every
request with the `standardwebhooks` library, as a wallet's receiver would, and records it.

Each path is one endpoint, with its own secret, the answers it gives (a list of statuses,
then 200) and, optionally, an Event it waits for or a time it takes before answering.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Request:
    path: str
    webhook_id: str
    body: bytes
    status: int  # what the receiver answered


class Receiver:
    def __init__(self, port: int = 0):
        self.port = port
        self.secrets: dict[str, str] = {}
        self.answers: dict[str, list[int]] = {}
        self.holds: dict[str, threading.Event] = {}
        self.delays: dict[str, float] = {}  # seconds each answer takes
        self.requests: list[Request] = []
        self.rejected: list[str] = []  # why a request did not verify
        self.in_flight = 0  # requests read and not yet answered
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as receivers behind a proxy do

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-body: no request arrived
                    self.close_connection = True
                    return
                receiver.handle(self, body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self.lock:
            self.in_flight += 1
        try:
            self._answer(handler, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up (timed out, or was killed): it will send again
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        path = handler.path
        hold = self.holds.get(path)
        if hold is not None:
            hold.wait(30)
        if self.delays.get(path):
            time.sleep(self.delays[path])
        status = 200
        try:
            if handler.headers.get("Content-Type") != "application/json":
                raise WebhookVerificationError("Content-Type is not application/json")
            Webhook(self.secrets[path]).verify(body, dict(handler.headers.items()))
        except (WebhookVerificationError, KeyError) as exc:
            with self.lock:
                self.rejected.append(f"{path}: {exc!r}")
            status = 400
        with self.lock:
            if status == 200 and self.answers.get(path):
                status = self.answers[path].pop(0)
            self.requests.append(Request(path, handler.headers["webhook-id"], body, status))
        handler.send_response(status)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"no" if status >= 300 else b"ok")

    # -- what it got ----------------------------------------------------------------------

    def accepted(self, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests
                    if r.status == 200 and (path is None or r.path == path)]

    def accepted_ids(self, path: str | None = None) -> Counter:
        """webhook-id -> how many times it was accepted."""
        return Counter(r.webhook_id for r in self.accepted(path))

    def bodies(self, path: str) -> list[dict]:
        return [json.loads(r.body) for r in self.accepted(path)]


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now
