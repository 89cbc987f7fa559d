"""gunicorn's threaded worker, answering the requests gunicorn itself rejects in JSON.

gunicorn refuses some requests before the application sees them (a request line or header
too long, a malformed or contradictory header, an unknown HTTP version...) and answers them
with an HTML page, which the API's generated clients cannot parse. This worker gives those
answers the API's error shape, `{"error": {"code": ..., "message": ...}}`, with the status
gunicorn chooses. `promo-engine serve` uses it; with gunicorn itself:

    gunicorn --worker-class promo_engine.api.gunicorn_worker.JsonErrorThreadWorker \\
        --threads 8 'promo_engine.wsgi:app'
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from ssl import SSLError
from typing import NamedTuple

from gunicorn import util
from gunicorn.http.errors import (ConfigurationProblem, ExpectationFailed, ForbiddenProxyRequest,
                                  InvalidHeader, InvalidHeaderName, InvalidHTTPVersion,
                                  InvalidRequestLine, InvalidRequestMethod, InvalidResponseHeader,
                                  InvalidResponseHeaderName, InvalidSchemeHeaders,
                                  LimitRequestHeaders, LimitRequestLine, ParseException,
                                  UnsupportedTransferCoding)
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.gthread import ThreadWorker

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class RejectedRequest(NamedTuple):
    status: int
    reason: str
    code: str
    message: str

    @property
    def body(self) -> bytes:
        return json.dumps({"error": {"code": self.code, "message": self.message}},
                          separators=(",", ":")).encode() + b"\n"

    def http_response(self) -> bytes:
        body = self.body
        head = (f"HTTP/1.1 {self.status} {self.reason}\r\n"
                "Connection: close\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode("latin-1") + body


def _bad_request(message: str) -> RejectedRequest:
    return RejectedRequest(400, "Bad Request", "bad_request", message)


INTERNAL_ERROR = RejectedRequest(500, "Internal Server Error", "internal_error", "internal error")


def rejection(exc: BaseException, cfg) -> RejectedRequest:
    """The answer to a request gunicorn failed on with `exc`: the status gunicorn's own
    Worker.handle_error gives it, in the API's error shape (and 400, not 500, for a parse
    error gunicorn does not list, such as a malformed PROXY protocol v2 header)."""
    # The server's fault, not the client's: a header the application tried to send, or
    # gunicorn's configuration.
    if isinstance(exc, (InvalidResponseHeader, InvalidResponseHeaderName, ConfigurationProblem)):
        return INTERNAL_ERROR
    if isinstance(exc, LimitRequestLine):
        limit = getattr(exc, "max_size", None) or cfg.limit_request_line
        return RejectedRequest(414, "URI Too Long", "uri_too_long",
                               f"the request line (method, URI and version) is longer than "
                               f"{limit} bytes")
    if isinstance(exc, LimitRequestHeaders):
        return RejectedRequest(431, "Request Header Fields Too Large",
                               "request_header_fields_too_large",
                               f"the request has too many or too large header fields (at "
                               f"most {cfg.limit_request_fields} fields of "
                               f"{cfg.limit_request_field_size} bytes each)")
    if isinstance(exc, ExpectationFailed):
        return RejectedRequest(417, "Expectation Failed", "expectation_failed",
                               "the only Expect header the server meets is 100-continue")
    if isinstance(exc, UnsupportedTransferCoding):
        return RejectedRequest(501, "Not Implemented", "not_implemented",
                               "the request's Transfer-Encoding is not supported; send the "
                               "body with Content-Length or chunked")
    if isinstance(exc, ForbiddenProxyRequest):
        return RejectedRequest(403, "Forbidden", "forbidden",
                               "PROXY protocol requests are not accepted from this address")
    if isinstance(exc, SSLError):
        return RejectedRequest(403, "Forbidden", "forbidden", "the TLS handshake failed")
    if isinstance(exc, InvalidRequestMethod):
        return _bad_request("the request method is not a valid HTTP method")
    if isinstance(exc, InvalidHTTPVersion):
        return _bad_request("the HTTP version is not supported; use HTTP/1.0 or HTTP/1.1")
    if isinstance(exc, InvalidRequestLine):
        return _bad_request("the request line is not of the form `METHOD /target HTTP/1.1`")
    if isinstance(exc, InvalidHeaderName):
        return _bad_request("a request header field name is not valid")
    if isinstance(exc, InvalidSchemeHeaders):
        return _bad_request("the request's forwarded-scheme headers contradict each other")
    if isinstance(exc, InvalidHeader):
        return _bad_request(_invalid_header_message(str(exc.hdr)))
    if isinstance(exc, ParseException):
        # The rest of gunicorn's parse errors (obsolete line folding, malformed chunks or
        # PROXY lines...) are all malformed requests.
        return _bad_request("the request is malformed")
    return INTERNAL_ERROR


def _invalid_header_message(name: str) -> str:
    if name.upper() == "CONTENT-LENGTH":
        return ("the Content-Length header is not valid: send it once, as a decimal number, "
                "and never together with Transfer-Encoding")
    if name.upper() == "TRANSFER-ENCODING":
        return ("the Transfer-Encoding header is not valid: it must end with a single "
                "chunked (HTTP/1.1 only)")
    if _HEADER_NAME.fullmatch(name):
        return f"the request header {name.title()} is not valid"
    return "a request header line is malformed"


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, answering the requests it rejects itself in JSON."""

    def handle_request(self, req, conn):
        keepalive = super().handle_request(req, conn)
        # The response is out: an error found afterwards (reading past a malformed body
        # the application left unread) must not be sent behind it as a second answer.
        req.promo_answered = True
        return keepalive

    def handle_error(self, req, client, addr, exc):
        started = datetime.now()
        addr = addr or ("", -1)  # a unix socket
        answer = rejection(exc, self.cfg)
        if answer is not INTERNAL_ERROR:  # the client's fault, 501 included
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
            if req is None and isinstance(exc, InvalidHeader):
                req = getattr(exc, "req", None)
        elif getattr(req, "uri", None) is not None:
            self.log.exception("Error handling request %s %s", getattr(req, "method", ""),
                               req.uri)
        else:
            self.log.exception("Error handling request (no URI read)")
        if getattr(req, "promo_answered", False):
            return
        if req is not None:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
            response = Response(req, client, self.cfg)
            response.status = f"{answer.status} {answer.reason}"
            response.response_length = len(answer.body)
            self.log.access(response, req, environ, datetime.now() - started)
        try:
            util.write_nonblock(client, answer.http_response())
        except Exception:  # the client is gone: nothing left to tell it
            self.log.debug("Failed to send error message.")
