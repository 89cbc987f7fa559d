"""JSON errors for everything but the portal's pages: `{"error": {"code", "message", "fields"?}}`.

The handlers are app-wide, so a 404 for a URL no blueprint knows, a 405, a 413 raised while
reading the body, a lost database connection and a bug all answer in the same shape, and
no traceback or HTML page ever reaches an API client.
"""
from __future__ import annotations

import logging
from typing import Mapping

from flask import current_app, jsonify, make_response, request
# The server finds a body malformed (a bad chunk of a chunked body) only when the application
# reads it: the client's fault, answered 400 like gunicorn's own rejections.
from gunicorn.http.errors import ParseException as MalformedBody
from sqlalchemy.exc import DataError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError, ServiceUnavailable

from promo_engine.api import bp

log = logging.getLogger(__name__)

PORTAL_PREFIX = "/portal"
RETRY_AFTER_SECONDS = "1"
# A database that went away during COMMIT, or a connection dropped after it, may have kept
# the event: the client cannot tell, and the same event_id makes the retry safe.
UNAVAILABLE_MESSAGE = ("a backing service is unavailable, and the event may or may not have "
                       "been recorded: retry with the same event_id and body (a recorded "
                       "event is answered as a replay)")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    410: "gone",
    411: "length_required",
    412: "precondition_failed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    417: "expectation_failed",
    422: "validation_error",
    428: "precondition_required",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}

try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    _REDIS_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
except ImportError:  # pragma: no cover - redis is a dependency
    _REDIS_ERRORS = ()

UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, DisconnectionError,
                      PoolTimeoutError) + _REDIS_ERRORS


class ApiError(Exception):
    """Raise anywhere in a request to answer with this error body."""

    def __init__(self, status: int, code: str, message: str,
                 fields: Mapping[str, list[str]] | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.headers = fields, headers

    def response(self):
        return error_response(self.status, self.code, self.message, self.fields, self.headers)


def error_response(status: int, code: str, message: str,
                   fields: Mapping[str, list[str]] | None = None,
                   headers: Mapping[str, str] | None = None, **extra):
    """The error body; `extra` adds top-level keys beside "error" (e.g. readiness checks)."""
    error: dict = {"code": code, "message": message}
    if fields:
        error["fields"] = {name: list(messages) for name, messages in fields.items()}
    response = jsonify({"error": error, **extra})
    response.status_code = status
    if headers:
        response.headers.update(headers)
    if status == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def is_portal_request() -> bool:
    return request.path == PORTAL_PREFIX or request.path.startswith(PORTAL_PREFIX + "/")


@bp.app_errorhandler(ApiError)
def handle_api_error(exc: ApiError):
    return exc.response()


def portal_page(exc: HTTPException):
    """An error of a portal URL that no portal view handled (an unknown URL, a failed
    backing service, a bug): the portal's own page, in its layout and the user's language,
    which the portal registers as `app.extensions["portal_error_page"]`."""
    render = current_app.extensions.get("portal_error_page")
    if render is None:
        return exc
    response = make_response(render(exc.code))
    response.headers.update({k: v for k, v in exc.get_headers() if k.lower() != "content-type"})
    return response


@bp.app_errorhandler(HTTPException)
def handle_http_exception(exc: HTTPException):
    if exc.code is None or exc.code < 400:
        return exc  # redirects
    if is_portal_request():
        return portal_page(exc)
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(exc.code, HTTP_CODES.get(exc.code, _slug(exc.name)),
                          _http_message(exc), headers=headers)


def _http_message(exc: HTTPException) -> str:
    if exc.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit:
            return f"the request body is larger than {limit // 1024} KiB"
    return exc.description or exc.name


def _slug(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").split()) or "error"


@bp.app_errorhandler(Exception)
def handle_unexpected(exc: Exception):
    if isinstance(exc, MalformedBody):
        if is_portal_request():
            return portal_page(BadRequest())
        return error_response(400, "bad_request", "the request body is malformed (a chunk of "
                              "a chunked body is not valid)")
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.error("%s %s: backing service unavailable: %s: %s", request.method, request.path,
                  type(exc).__name__, _first_line(exc))
        if is_portal_request():
            return portal_page(ServiceUnavailable(retry_after=int(RETRY_AFTER_SECONDS)))
        return error_response(503, "unavailable", UNAVAILABLE_MESSAGE)
    if isinstance(exc, DataError) and not is_portal_request():
        # The database refused a value (out of range, not storable): the validation should
        # have caught it, so log it as the bug it is, but the client sent bad input.
        log.exception("database refused a value in %s %s", request.method, request.path)
        return error_response(422, "validation_error",
                              "a value is out of range or cannot be stored")
    log.exception("unhandled error in %s %s", request.method, request.path)
    if is_portal_request():
        return portal_page(InternalServerError())
    return error_response(500, "internal_error", "internal error")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
