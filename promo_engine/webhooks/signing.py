"""Standard Webhooks signatures (https://www.standardwebhooks.com), made by the
`standardwebhooks` library rather than by hand: a receiver verifying with any Standard
Webhooks library accepts them."""
from __future__ import annotations

import base64
import secrets
from datetime import datetime, timezone

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def new_secret() -> str:
    """`whsec_` and the base64 of 24 random bytes, the form every Standard Webhooks library
    takes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signed_headers(secret: str, message_id: str, payload: str | bytes,
                   at: datetime | None = None) -> dict[str, str]:
    """The three headers of one attempt: webhook-id, webhook-timestamp (Unix seconds, the
    attempt's own, so a receiver's replay window measures the attempt) and
    webhook-signature."""
    at = at or datetime.now(timezone.utc)
    return {"webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, at, payload)}
