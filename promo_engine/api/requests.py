"""Reading a JSON request body strictly, and hashing it for idempotency.

Numbers are read as `Decimal` (never float), and what JSON parsers usually let through
silently is refused: duplicate keys (which one wins differs between parsers), NaN and
Infinity, lone surrogates and NUL characters (which databases refuse later), and deep
nesting (which would exhaust the stack).
"""
from __future__ import annotations

import hashlib
import io
import json
from decimal import Decimal
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from promo_engine.api.errors import ApiError

MAX_DEPTH = 32
_READ_CHUNK = 64 * 1024


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class _NonFiniteNumber(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str):
    raise _NonFiniteNumber(name)


def raw_body() -> bytes:
    """The request body exactly as received; 413 when over MAX_CONTENT_LENGTH.

    Werkzeug stops a streamed (chunked) body at the limit without saying it was cut, so
    such a body is read here up to one byte past the limit. Afterwards the body is what
    `request.get_data()` returns too.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    environ = request.environ
    streamed = request.content_length is None and environ.get("wsgi.input_terminated")
    if limit is None or not streamed or "stream" in request.__dict__:
        return request.get_data(cache=True)  # Werkzeug checks a declared Content-Length
    if "promo.raw_body" not in environ:
        source, chunks, size = environ["wsgi.input"], [], 0
        while size <= limit:
            chunk = source.read(min(_READ_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge()
        environ["promo.raw_body"] = b"".join(chunks)
        environ["wsgi.input"] = io.BytesIO(environ["promo.raw_body"])
    return request.get_data(cache=True)


def parse_json(data: bytes) -> Any:
    """Parse a JSON document strictly; raises ApiError 400 `malformed_json` or 422."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("the body is not valid UTF-8") from None
    if not text.strip():
        raise _malformed("the body is empty; send a JSON object")
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant,
                           object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise _malformed(f"duplicate key {_shorten(exc.key)}") from None
    except _NonFiniteNumber as exc:
        raise _malformed(f"{exc} is not a JSON number") from None
    except json.JSONDecodeError as exc:
        raise _malformed(f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}") from None
    except RecursionError:
        raise _malformed("the JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise _malformed(f"invalid JSON: {exc}") from None
    _check_values(value)
    return value


def json_body() -> dict:
    """The request's JSON object: 415 unless JSON, 400 if malformed, 422 if not an object."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       "send the body as JSON with Content-Type: application/json")
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", "JSON bodies must be UTF-8")
    value = parse_json(raw_body())
    if not isinstance(value, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object",
                       fields={"_schema": ["must be a JSON object"]})
    return value


def _check_values(document: Any) -> None:
    """Walks the document without recursion: depth, lone surrogates, NUL characters."""
    stack: list[tuple[Any, int, str]] = [(document, 1, "_schema")]
    while stack:
        value, depth, field = stack.pop()
        if isinstance(value, dict):
            children = [(k, v) for k, v in value.items()]
            for key, _ in children:
                _check_text(key, field)
        elif isinstance(value, list):
            children = [(None, v) for v in value]
        else:
            if isinstance(value, str):
                _check_text(value, field)
            continue
        if depth > MAX_DEPTH:
            raise ApiError(422, "validation_error",
                           f"the JSON is nested more than {MAX_DEPTH} levels deep",
                           fields={field: [f"nested more than {MAX_DEPTH} levels deep"]})
        for key, child in children:
            child_field = key if depth == 1 and key is not None else field
            stack.append((child, depth + 1, child_field))


def _check_text(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed("a string holds a lone surrogate (an unpaired \\ud800-\\udfff "
                         "escape), which is not Unicode text") from None
    if "\x00" in text:
        raise ApiError(422, "validation_error", "text must not contain U+0000",
                       fields={field: ["must not contain the NUL character (U+0000)"]})


def _malformed(message: str) -> ApiError:
    return ApiError(400, "malformed_json", message)


def _shorten(key: str, limit: int = 64) -> str:
    quoted = json.dumps(key, ensure_ascii=False)
    return quoted if len(quoted) <= limit else quoted[:limit - 4] + '..."'


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, numbers written exactly as parsed (Decimal kept as is)."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, Decimal):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(repr(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(sorted(value, key=str)):
            if index:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as canonical JSON")


def canonical_body_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON: equal for bodies that differ only in
    whitespace and key order, different for any other change (1.5 vs "1.5" included)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8", "surrogatepass")).hexdigest()
