"""A small signed client for the wallet API (standard library only): for the quickstart,
operators' scripts and load tests."""
from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from promo_engine.api.auth import sign_request


@dataclass
class Reply:
    status: int
    headers: dict
    body: dict | None
    text: str


class Unreachable(Exception):
    """No HTTP answer came from the service: `reason` says why, in a few words."""

    def __init__(self, base_url: str, reason: str, *, timed_out: bool = False):
        super().__init__(f"cannot reach {base_url} ({reason})")
        self.base_url, self.reason, self.timed_out = base_url, reason, timed_out


class BadUrl(ValueError):
    """The base URL is not an http(s) URL."""


def _why(error: BaseException, timeout: float) -> str:
    """A few words for why a request got no answer."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error.reason, str):
        error = error.reason
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "unknown host"
    if isinstance(error, (ConnectionResetError, http.client.RemoteDisconnected)):
        return "the connection was closed without an answer"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(getattr(error, "reason", error)) or type(error).__name__


class PromoClient:
    def __init__(self, base_url: str, key_id: str, secret: str, *, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadUrl(f"{base_url!r} is not a URL like http://127.0.0.1:8000")
        try:
            parts.port  # noqa: B018 (raises for a port that is not a number)
        except ValueError:
            raise BadUrl(f"{base_url!r} has no valid port") from None
        self.key_id, self.secret, self.timeout = key_id, secret, timeout

    def request(self, method: str, path: str, body: dict | None = None) -> Reply:
        raw = b"" if body is None else json.dumps(body).encode()
        timestamp = str(int(time.time()))
        headers = {"X-Promo-Key": self.key_id, "X-Promo-Timestamp": timestamp,
                   "X-Promo-Signature": sign_request(self.secret, timestamp, method, path, raw)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=raw if body is not None else None,
                                         headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return self._reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return self._reply(error.code, error.headers, error.read())
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            reason = _why(error, self.timeout)
            raise Unreachable(self.base_url, reason,
                              timed_out=reason.startswith("no answer within")) from None

    @staticmethod
    def _reply(status, headers, raw: bytes) -> Reply:
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return Reply(status=status, headers=dict(headers), body=body, text=text)

    def send_event(self, event: dict) -> Reply:
        return self.request("POST", "/v1/events", event)

    def quote(self, event: dict, *, explain: bool = False) -> Reply:
        """`explain`: the answer also says why each candidate campaign applied or not."""
        return self.request("POST", "/v1/quote?explain=true" if explain else "/v1/quote",
                            event)

    def points(self, user_id: str, limit: int | None = None) -> Reply:
        query = f"?limit={limit}" if limit else ""
        return self.request("GET", f"/v1/users/{user_id}/points{query}")
