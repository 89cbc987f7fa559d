"""One HTTP POST of one delivery: the payload byte for byte, signed, within the timeout.

Connections are kept alive and reused per endpoint (urllib3's pool). urllib3 never retries
nor follows redirects here: the dispatcher decides what happens after any answer but 2xx.
Errors name what happened, never the URL (it may hold a token) nor the secret.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from promo_engine.webhooks.signing import signed_headers

DEFAULT_TIMEOUT_SECONDS = 10.0
ERROR_BODY_CHARS = 200  # of a refusal's body, kept in last_error for the operator
USER_AGENT = "promo-engine-webhooks"
DRAIN_BYTES = 64 * 1024  # of an answer's body read to keep its connection alive


@dataclass(frozen=True)
class Answer:
    status: int | None  # the HTTP status, None when there was no answer
    error: str | None  # None when accepted (2xx)

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def unreachable(self) -> bool:
        """No answer (refused, reset, timed out): the endpoint itself is in trouble."""
        return self.status is None


class Sender:
    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, per_endpoint: int = 8,
                 endpoints: int = 64):
        self.timeout = timeout
        self.http = urllib3.PoolManager(
            num_pools=endpoints, maxsize=per_endpoint, block=False, retries=False,
            timeout=urllib3.Timeout(total=timeout))

    def send(self, url: str, secret: str, message_id: str, payload: str) -> Answer:
        # Signed at the attempt's real time: a receiver checks webhook-timestamp against
        # its own clock to refuse replays.
        headers = signed_headers(secret, message_id, payload, datetime.now(timezone.utc))
        headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
        try:
            response = self.http.request("POST", url, body=payload.encode("utf-8"),
                                         headers=headers, redirect=False,
                                         preload_content=False)
        except NewConnectionError as exc:  # (a subclass of urllib3's TimeoutError)
            return Answer(None, f"cannot connect: {_reason(exc)}")
        except Urllib3Timeout:
            return Answer(None, f"no answer within {self.timeout:g} s")
        except (HTTPError, OSError) as exc:
            return Answer(None, f"connection failed: {_reason(exc)}")
        try:
            status = response.status
            if 200 <= status < 300:
                return Answer(status, None)
            return Answer(status, f"HTTP {status}: {_snippet(response)}".rstrip(": "))
        except (HTTPError, OSError) as exc:  # while reading a refusal's body
            return Answer(status, f"HTTP {status}: {_reason(exc)}")
        finally:
            _finish(response)

    def close(self) -> None:
        self.http.clear()


def _snippet(response) -> str:
    body = response.read(ERROR_BODY_CHARS + 1, decode_content=True) or b""
    text = body[:ERROR_BODY_CHARS].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text + ("..." if len(body) > ERROR_BODY_CHARS else "")


def _finish(response) -> None:
    """Reuse the connection once the answer is read to its end, or close it: reading a long
    body from a receiver would hold this sender up."""
    try:
        if len(response.read(DRAIN_BYTES, decode_content=False)) < DRAIN_BYTES:
            response.release_conn()
            return
    except (HTTPError, OSError):
        pass
    response.close()


def _reason(exc: BaseException) -> str:
    """The innermost cause (urllib3 wraps the socket's error, with the URL in its message)."""
    inner = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    if inner is exc and len(exc.args) == 2 and isinstance(exc.args[1], BaseException):
        inner = exc.args[1]  # ProtocolError("Connection aborted.", error)
    return str(inner) or type(inner).__name__
