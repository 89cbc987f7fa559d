"""Two verdicts on one request: the description's (/v1/openapi.json read as a client's
validator reads it) and the server's (422 validation_error, or not), and the rules where
they may part.

Shared by test_openapi_agrees.py (boundary values of every field) and test_schemathesis.py
(every request the hostile runs send).
"""
from __future__ import annotations

import json
import re
from urllib.parse import unquote

import jsonschema_rs

from promo_engine.api.request_fields import WHOLE_NUMBER_MESSAGE, WHOLE_NUMBER_WORDS
from promo_engine.api.schemas import FUTURE_MESSAGE, POINTS_OVER_AMOUNT, POINTS_OVER_AMOUNT_WORDS

# What the server refuses of requests the description accepts, because JSON Schema cannot
# state it: field -> [(the server's message, or its start before ": ", the words of the
# field's description that warn of it)].
UNSTATABLE_RULES = {
    # relative to the server's clock, which a schema cannot read
    "occurred_at": [(FUTURE_MESSAGE, "at most 300 s ahead of the server's clock")],
    # a cursor is a next_cursor this endpoint returned; its shape is in the pattern
    "cursor": [("is not a cursor returned by this endpoint", "any other value gets 422")],
    # 1.0 and 1e2 are integers to JSON Schema; points are refused unless written as such
    "points": [(WHOLE_NUMBER_MESSAGE, WHOLE_NUMBER_WORDS)],
    # ... and redeem_points x the point value must not exceed the amount (a product)
    "redeem_points": [(WHOLE_NUMBER_MESSAGE, WHOLE_NUMBER_WORDS),
                      (POINTS_OVER_AMOUNT, POINTS_OVER_AMOUNT_WORDS)],
}
# A query parameter the operation does not list: OpenAPI has no way to forbid one, so the
# operations that refuse them say so in their description.
UNKNOWN_PARAMETER = ("is not a parameter of this endpoint",
                     "Query parameters other than")


class Description:
    """The served /v1/openapi.json, read with JSON Schema 2020-12 as OpenAPI 3.1 says:
    patterns as ECMA-262 regular expressions (where `$` is the end of the text, unlike
    Python's `re`), formats asserted (jsonschema_rs, the validator schemathesis uses)."""

    def __init__(self, document: dict):
        self.document = document

    def _valid(self, schema: dict, instance) -> bool:
        root = {**schema, "components": self.document["components"]}
        return jsonschema_rs.Draft202012Validator(root, validate_formats=True).is_valid(instance)

    def operation(self, method: str, path: str) -> tuple[dict, dict[str, str]] | None:
        """The operation that serves `path` (percent-encoded, as sent) and its path
        parameters (decoded, as routed)."""
        for template, operations in self.document["paths"].items():
            names = re.findall(r"{(\w+)}", template)
            shape = re.escape(template)
            for name in names:
                shape = shape.replace(re.escape("{" + name + "}"), "([^/]*)")
            found = re.fullmatch(shape, path)
            if found and method.lower() in operations:
                values = {name: unquote(value) for name, value in zip(names, found.groups())}
                return operations[method.lower()], values
        return None

    def accepts(self, method: str, path: str, *, args: dict | None = None,
                body: object = None) -> bool:
        """Whether the description allows this request: `path` as sent, `args` the query
        parameters (decoded), `body` the JSON body (None: none, or not JSON)."""
        found = self.operation(method, path)
        if found is None:
            return False
        operation, path_values = found
        given = {("path", k): v for k, v in path_values.items()}
        given.update({("query", k): v for k, v in (args or {}).items()})
        for parameter in operation.get("parameters", []):
            where = (parameter["in"], parameter["name"])
            if where not in given:
                if parameter.get("required"):
                    return False
                continue
            value = _typed(given[where], parameter["schema"])
            if value is None or not self._valid(parameter["schema"], value):
                return False
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            return True  # no body described: one sent is not looked at
        return body is not None and self._valid(content["schema"], body)

    def field_description(self, name: str) -> str:
        """The descriptions given to a request field or parameter of that name, joined."""
        texts = []
        for schema in self.document["components"]["schemas"].values():
            texts.append(schema.get("properties", {}).get(name, {}).get("description", ""))
        for operations in self.document["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == name:
                        texts.append(parameter.get("description", ""))
        return " ".join(texts)


def _typed(text: str, schema: dict):
    """A parameter's text as the value its schema describes (form style: an integer is
    written in decimal digits); None when it is not one."""
    if schema.get("type") == "integer":
        return int(text) if re.fullmatch(r"-?[0-9]{1,20}", text) else None
    return text


def validation_errors(status: int, body: bytes) -> dict[str, list[str]] | None:
    """The fields a 422 validation_error names; None when the server did not refuse so."""
    if status != 422:
        return None
    error = json.loads(body)["error"]
    if error["code"] != "validation_error":
        return None
    return error.get("fields") or {}


def unstatable_message(field: str, message: str) -> bool:
    """Whether `message` refuses `field` by a rule the description states in words alone."""
    return any(message == start or message.startswith(start + ": ")
               for start, _ in UNSTATABLE_RULES.get(field, ()))


def unstatable_refusal(errors: dict[str, list[str]]) -> bool:
    """Whether a refusal is only for rules the description states in words alone."""
    return bool(errors) and all(
        all(unstatable_message(name, message) for message in messages)
        if name in UNSTATABLE_RULES
        else all(message.startswith(UNKNOWN_PARAMETER[0]) for message in messages)
        for name, messages in errors.items())
