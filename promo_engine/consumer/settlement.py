"""What becomes of each message of a batch: its outcome, and the acknowledgement, result and
dead letter that go with it (consumer/stream.py writes a batch's in one MULTI)."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from promo_engine.api.errors import ApiError

RECORDED, REPLAYED, DEAD_LETTERED, DELETED = "recorded", "replayed", "dead_lettered", "deleted"

Entry = tuple[bytes, dict]  # (message id, fields) as redis-py returns them

# The HTTP status the API answers each rejection with, for the results stream.
STATUS_OF = {"malformed_json": 400, "malformed_message": 400, "idempotency_conflict": 409,
             "payload_too_large": 413, "internal_error": 500}


class Rejected(Exception):
    """The message can never succeed: it goes to the dead-letter stream."""

    def __init__(self, code: str, message: str, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields

    @classmethod
    def from_api_error(cls, exc: ApiError) -> Rejected:
        """The message refused as the API refuses a request with this error."""
        return cls(exc.code, exc.message, exc.fields)

    @property
    def status(self) -> int:
        return STATUS_OF.get(self.code, 422)

    def error_json(self) -> str:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = {name: list(messages) for name, messages in self.fields.items()}
        return json.dumps({"error": error}, ensure_ascii=False)


@dataclass
class Settlement:
    """One batch's acknowledgements and what goes with them, written in one MULTI."""
    acks: list[bytes] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)

    def add(self, message_id: bytes, outcome: str, result: dict | None = None,
            dead_letter: dict | None = None) -> None:
        self.acks.append(message_id)
        self.outcomes[outcome] += 1
        if result is not None:
            self.results.append(result)
        if dead_letter is not None:
            self.dead_letters.append(dead_letter)
