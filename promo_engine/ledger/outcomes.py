"""What recording an event answers (`Recorded`) and the two ways it refuses one
(`LedgerError`, `IdempotencyConflict`).

Apart from the recorder because the API and the stream consumer handle these answers, and
the grant and refund code raise them, without needing the write path itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from promo_engine.core.engine import Decision


class LedgerError(Exception):
    """A business rule refused the event; nothing was written."""

    def __init__(self, code: str, message: str, field: str | None = None,
                 fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        # The error body's `fields`: given, or the message under `field`.
        self.fields = fields if fields is not None else ({field: [message]} if field else None)


@dataclass(frozen=True)
class Recorded:
    status: int  # 201 new, 200 replayed
    body: str  # the exact JSON text of the first response
    replayed: bool
    decision: Decision | None = None


class IdempotencyConflict(Exception):
    """The event_id was used before with a different body."""
