"""HMAC request signing: `sign_request` for clients, and the check on every /v1/ request.

The signed message is `{timestamp}.{METHOD}.{request target}.{raw body}`, where the request
target is the path and query exactly as sent on the request line. The server reads the raw
body first, so an oversized body gets 413 before any signature is looked at.

An unknown key id takes the same path as a known one with a wrong signature: no database
lookup (api_clients.ClientDirectory), one HMAC, so the time taken does not say which key
ids exist. An address whose requests keep failing is turned away first (auth_failures.py).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from flask import g, request

from promo_engine.api import bp
from promo_engine.api.auth_failures import (address_key, auth_failure_limit,
                                            install_auth_failure_limit)
from promo_engine.api.errors import ApiError
from promo_engine.api.rate_limit import check_client_rate
from promo_engine.api.requests import raw_body
from promo_engine.ledger.api_clients import install_client_directory, lookup_secret

SIGNATURE_VERSION = "v1"
MAX_CLOCK_SKEW_SECONDS = 300
MAX_SIGNATURES = 8  # rotation needs two or three; a bound keeps the work per request small

KEY_HEADER = "X-Promo-Key"
TIMESTAMP_HEADER = "X-Promo-Timestamp"
SIGNATURE_HEADER = "X-Promo-Signature"

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
# What an unknown key id's signature is checked against: nobody can sign with it, and the
# check costs what a known key's does.
_DECOY_SECRET = secrets.token_urlsafe(32)


def server_time() -> int:
    return int(time.time())


def signing_message(timestamp: int | str, method: str, path: str | bytes, body: bytes) -> bytes:
    if isinstance(path, str):
        path = path.encode("utf-8")
    return b".".join([str(timestamp).encode("ascii"), method.upper().encode("ascii"),
                      path, body])


def sign_request(secret: str, timestamp: int | str, method: str, path: str | bytes,
                 body: bytes = b"") -> str:
    """The `X-Promo-Signature` value (`v1=<hex>`) for one request.

    `path` is the request target as sent, query string included: "/v1/users/u1/points?limit=5".
    """
    digest = hmac.new(secret.encode("utf-8"), signing_message(timestamp, method, path, body),
                      hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signed_headers(key_id: str, secret: str, method: str, path: str, body: bytes = b"",
                   timestamp: int | None = None) -> dict[str, str]:
    """The three authentication headers, signed now unless `timestamp` is given."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {KEY_HEADER: key_id, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign_request(secret, timestamp, method, path, body)}


def requires_signature(method: str, path: str) -> bool:
    if not path.startswith("/v1/"):
        return False
    return not (path == "/v1/openapi.json" and method in ("GET", "HEAD"))


def request_target() -> bytes:
    """The path and query as the client sent them (the servers keep them in the environ)."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        target = raw.encode("latin-1", "replace")  # WSGI strings carry bytes as latin-1
        if target.startswith((b"http://", b"https://")):
            # absolute-form request line: keep only the path and query
            rest = target.split(b"//", 1)[1]
            target = b"/" + rest.split(b"/", 1)[1] if b"/" in rest else b"/"
        query = environ.get("QUERY_STRING", "")
        if b"?" not in target and query:
            target += b"?" + query.encode("latin-1", "replace")
        return target
    target = request.path.encode("utf-8")
    query = request.query_string
    return target + b"?" + query if query else target


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


def _offered_signatures(header: str) -> list[bytes]:
    offered = []
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        value = value.strip().lower()
        if version == SIGNATURE_VERSION and _HEX_DIGEST.fullmatch(value):
            offered.append(value.encode("ascii"))
    return offered


def verify_request() -> str:
    """The verified client's key id; raises ApiError 401 otherwise."""
    body = raw_body()  # 413 for an oversized body (chunked too) comes before any 401
    key_id = request.headers.get(KEY_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    for name, value in ((KEY_HEADER, key_id), (TIMESTAMP_HEADER, timestamp),
                        (SIGNATURE_HEADER, signature)):
        if not value:
            raise _unauthorized(f"missing {name} header")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise _unauthorized(f"{TIMESTAMP_HEADER} must be Unix time in whole seconds")
    if abs(server_time() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise _unauthorized(f"{TIMESTAMP_HEADER} is more than {MAX_CLOCK_SKEW_SECONDS} s "
                            "from the server clock")
    if signature.count(",") >= MAX_SIGNATURES:
        raise _unauthorized(f"at most {MAX_SIGNATURES} signatures in {SIGNATURE_HEADER}, "
                            "comma-separated (a secret rotation needs 2 or 3)")
    offered = _offered_signatures(signature)
    if not offered:
        raise _unauthorized(f"{SIGNATURE_HEADER} must be v1=<hex HMAC-SHA256>")
    secret = lookup_secret(key_id) if _KEY_ID.fullmatch(key_id) else None
    expected = sign_request(_DECOY_SECRET if secret is None else secret, timestamp,
                            request.method, request_target(), body)
    expected = expected.partition("=")[2].encode("ascii")
    # Compare against every offered value, so the time taken does not say which matched.
    matched = False
    for candidate in offered:
        matched |= hmac.compare_digest(candidate, expected)
    if secret is None or not matched:
        raise _unauthorized("invalid key or signature")
    return key_id


@bp.record_once
def _install(state) -> None:
    install_client_directory(state.app)
    install_auth_failure_limit(state.app)


@bp.before_app_request
def authenticate():
    if not requires_signature(request.method, request.path):
        return
    failures = auth_failure_limit()
    if failures is None:
        g.client_id = verify_request()
    else:
        address = address_key(request.remote_addr)
        failures.check(address)
        try:
            g.client_id = verify_request()
        except ApiError as exc:
            if exc.status == 401:
                failures.record_failure(address)
            raise
    check_client_rate(g.client_id)
