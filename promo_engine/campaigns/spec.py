"""A campaign document as it is stored: `canonical_spec` makes a JSON-ready copy of a valid
document and `spec_hash` its fingerprint, by which the store and the portal tell whether a
campaign changed.

Apart from the schema because storing is not validating: the spec is what was written
(with the timezone filled in), kept so that `load_campaign` rebuilds the same campaign
from it later, not the `Campaign` the schema made of it.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Mapping


def canonical_spec(document: Mapping, default_timezone: str) -> dict:
    """A JSON-ready copy of a (valid) document with `timezone` filled in, which
    `load_campaign` turns into the same campaign; raises TypeError for values JSON cannot
    hold (binary, sets, tagged scalars)."""
    spec = plain_document(document)
    spec.setdefault("timezone", default_timezone)
    return spec


def plain_document(document: Mapping) -> dict:
    """A JSON-ready copy of a document as written (the risk policy's stored form); raises
    TypeError for values JSON cannot hold."""
    spec = _plain(document)
    if not isinstance(spec, dict):
        raise TypeError("a campaign document must be a mapping")
    return spec


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, value.hour, value.minute,
                        value.second, value.microsecond, tzinfo=value.tzinfo).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S" if value.second else "%H:%M")
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be strings, not {type(key).__name__}")
            result[str(key)] = _plain(item)
        return result
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored")


def spec_hash(spec: Mapping) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
