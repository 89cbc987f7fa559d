"""Requests gunicorn rejects before the application sees them are answered in the API's JSON
error shape, with gunicorn's status, by a real `promo-engine serve` over a raw socket."""
from __future__ import annotations

import json
import os
import socket
import ssl

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http.errors import (ConfigurationProblem, ForbiddenProxyRequest, InvalidChunkSize,
                                  InvalidProxyLine, InvalidResponseHeader)
from gunicorn.util import load_class

from promo_engine.api.gunicorn_worker import JsonErrorThreadWorker
from promo_engine.cli.serve import WORKER_CLASS

from processes import Server, run_cli, service_env

pytestmark = pytest.mark.slow

HEADER_LIMITS = "at most 100 fields of 8190 bytes each"
HEADERS_TOO_LARGE = (431, "Request Header Fields Too Large", "request_header_fields_too_large",
                     f"the request has too many or too large header fields ({HEADER_LIMITS})")
BAD_CONTENT_LENGTH = (400, "Bad Request", "bad_request",
                      "the Content-Length header is not valid: send it once, as a decimal "
                      "number, and never together with Transfer-Encoding")
BAD_REQUEST_LINE = (400, "Bad Request", "bad_request",
                    "the request line is not of the form `METHOD /target HTTP/1.1`")
INTERNAL_ERROR = (500, "Internal Server Error", "internal_error", "internal error")

REJECTED = {
    "header line of 8 KiB": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 8192 + b"\r\n\r\n",
        HEADERS_TOO_LARGE),
    "101 header fields": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-Field-%d: v\r\n" % n for n in range(100)) + b"\r\n",
        HEADERS_TOO_LARGE),
    "URI of 5,000 characters": (
        b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        (414, "URI Too Long", "uri_too_long",
         "the request line (method, URI and version) is longer than 4094 bytes")),
    "duplicate Content-Length": (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
        b"\r\n{}",
        BAD_CONTENT_LENGTH),
    "Content-Length not a number": (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2x\r\n\r\n{}",
        BAD_CONTENT_LENGTH),
    "negative Content-Length": (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        BAD_CONTENT_LENGTH),
    "Transfer-Encoding with Content-Length": (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n",
        BAD_CONTENT_LENGTH),
    "Transfer-Encoding not ending in chunked": (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        (400, "Bad Request", "bad_request", "the Transfer-Encoding header is not valid: it "
                                            "must end with a single chunked (HTTP/1.1 only)")),
    "unknown Transfer-Encoding": (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zstd-x\r\n\r\n",
        (501, "Not Implemented", "not_implemented", "the request's Transfer-Encoding is not "
                                                    "supported; send the body with "
                                                    "Content-Length or chunked")),
    "NUL in a header value": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Trace: a\x00b\r\n\r\n",
        (400, "Bad Request", "bad_request", "the request header X-Trace is not valid")),
    "space in a header name": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX Trace: a\r\n\r\n",
        (400, "Bad Request", "bad_request", "a request header field name is not valid")),
    "obsolete header line folding": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Trace: a\r\n b\r\n\r\n",
        (400, "Bad Request", "bad_request", "the request is malformed")),
    "request line without a version": (b"GARBAGE\r\n\r\n", BAD_REQUEST_LINE),
    "request line ending in a bare LF": (b"GET /healthz HTTP/1.1\nHost: x\n\n",
                                         BAD_REQUEST_LINE),
    "HTTP version 2.5": (
        b"GET /healthz HTTP/2.5\r\nHost: x\r\n\r\n",
        (400, "Bad Request", "bad_request",
         "the HTTP version is not supported; use HTTP/1.0 or HTTP/1.1")),
    "method that is not a token": (
        b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        (400, "Bad Request", "bad_request", "the request method is not a valid HTTP method")),
    "contradictory forwarded-scheme headers": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Ssl: off\r\n\r\n",
        (400, "Bad Request", "bad_request",
         "the request's forwarded-scheme headers contradict each other")),
    "Expect other than 100-continue": (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n"
        b"\r\n{}",
        (417, "Expectation Failed", "expectation_failed",
         "the only Expect header the server meets is 100-continue")),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("http-errors")
    env = service_env(f"sqlite:///{cwd / 'promo.db'}")
    run_cli(env, "db", "upgrade", cwd=cwd)
    started = Server(env, cwd, workers=1).start()
    try:
        yield started
    finally:
        started.close()


def exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends back before it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def parse(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return status_line, headers, body


def assert_json_error(response: bytes, expected: tuple[int, str, str, str]) -> None:
    status, reason, code, message = expected
    status_line, headers, body = parse(response)
    assert status_line == f"HTTP/1.1 {status} {reason}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert int(headers["Content-Length"]) == len(body)
    assert json.loads(body) == {"error": {"code": code, "message": message}}


@pytest.mark.parametrize("request_bytes, expected", REJECTED.values(), ids=REJECTED.keys())
def test_request_gunicorn_rejects_is_answered_in_json(server, request_bytes, expected):
    assert_json_error(exchange(server.port, request_bytes), expected)


def test_100_header_fields_are_still_accepted(server):
    request = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               + b"".join(b"X-Field-%d: v\r\n" % n for n in range(98)) + b"\r\n")
    status_line, _, body = parse(exchange(server.port, request))
    assert (status_line, json.loads(body)) == ("HTTP/1.1 200 OK", {"status": "ok"})


def test_malformed_body_left_unread_gets_no_second_answer(server):
    # /healthz answers without reading the body; gunicorn meets the bad chunk only when it
    # skips the body afterwards, and must then close the connection, not answer again.
    request = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\n{}\r\n0\r\n\r\n")
    response = exchange(server.port, request)
    status_line, headers, body = parse(response)
    assert status_line == "HTTP/1.1 200 OK"
    assert body == b'{"status":"ok"}\n' and int(headers["Content-Length"]) == len(body)


@pytest.mark.parametrize("path", ["/v1/events", "/portal/login"])
def test_a_malformed_chunk_read_by_the_application_is_a_400(server, path):
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
               ).encode()
    status_line, headers, body = parse(exchange(server.port, request))
    assert status_line == "HTTP/1.1 400 BAD REQUEST"
    if path.startswith("/v1/"):
        assert json.loads(body) == {"error": {
            "code": "bad_request",
            "message": "the request body is malformed (a chunk of a chunked body is not valid)"}}


def test_the_server_logged_no_traceback(server):
    for request_bytes, _ in REJECTED.values():
        exchange(server.port, request_bytes)
    server.assert_no_errors_logged()


# Failures `promo-engine serve` cannot meet from outside (no PROXY protocol, no TLS, an
# application that sends valid headers), given to the worker directly.
UNREACHABLE = {
    "PROXY request from a forbidden address": (
        ForbiddenProxyRequest("10.0.0.9"),
        (403, "Forbidden", "forbidden",
         "PROXY protocol requests are not accepted from this address")),
    "failed TLS handshake": (
        ssl.SSLError(1, "wrong version number"),
        (403, "Forbidden", "forbidden", "the TLS handshake failed")),
    "malformed PROXY line": (
        InvalidProxyLine("PROXY nonsense"),
        (400, "Bad Request", "bad_request", "the request is malformed")),
    "malformed chunk size": (
        InvalidChunkSize(b"zz"),
        (400, "Bad Request", "bad_request", "the request is malformed")),
    "invalid header from the application": (InvalidResponseHeader("X-Bad\r\n"),
                                            INTERNAL_ERROR),
    "server misconfiguration": (ConfigurationProblem("forwarder headers"), INTERNAL_ERROR),
    "unexpected error in the worker": (RuntimeError("boom"), INTERNAL_ERROR),
}


@pytest.fixture
def worker():
    cfg = Config()
    worker = JsonErrorThreadWorker(0, os.getpid(), [], None, 30, cfg, Logger(cfg))
    yield worker
    worker.tmp.close()


@pytest.mark.parametrize("exc, expected", UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_every_other_gunicorn_failure_is_answered_in_json(worker, exc, expected):
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        worker.handle_error(None, server_side, ("127.0.0.1", 40000), exc)
        server_side.shutdown(socket.SHUT_WR)
        client_side.settimeout(5)
        response = b""
        while chunk := client_side.recv(65536):
            response += chunk
    assert_json_error(response, expected)


def test_the_documented_worker_class_is_the_one_serve_uses():
    assert WORKER_CLASS == "promo_engine.api.gunicorn_worker.JsonErrorThreadWorker"
    assert load_class(WORKER_CLASS) is JsonErrorThreadWorker
