"""A signed wallet-backend client over Flask's test client, and campaign set-up helpers."""
from __future__ import annotations

import json
import time
from pathlib import Path

from promo_engine.api.auth import sign_request

OPEN_RANGE = "starts_at: 2026-01-01T00:00:00\nends_at: 2030-01-01T00:00:00\n"


class WalletClient:
    def __init__(self, client, key_id: str, secret: str):
        self.client, self.key_id, self.secret = client, key_id, secret

    def headers(self, method: str, path: str, body: bytes) -> dict:
        timestamp = str(int(time.time()))
        return {"X-Promo-Key": self.key_id, "X-Promo-Timestamp": timestamp,
                "X-Promo-Signature": sign_request(self.secret, timestamp, method, path, body)}

    def post(self, path: str, body, *, content_type: str = "application/json"):
        raw = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.last_body = raw  # what was sent, for tests that look at the request again
        headers = self.headers("POST", path, raw)
        headers["Content-Type"] = content_type
        return self.client.post(path, data=raw, headers=headers)

    def get(self, path: str):
        self.last_body = b""
        return self.client.get(path, headers=self.headers("GET", path, b""))

    def event(self, **fields):
        return self.post("/v1/events", fields)


def new_wallet_client(app) -> WalletClient:
    from promo_engine.ledger.api_clients import create_client
    with app.app_context():
        key_id, secret = create_client("wallet-backend")
    return WalletClient(app.test_client(), key_id, secret)


def install_campaigns(app, yaml_text: str, tmp_path: Path, name: str = "campaigns.yaml"):
    """Validate and apply campaigns written as YAML, as marketing would."""
    from promo_engine.campaigns.files import load_paths
    from promo_engine.campaigns.store import apply_campaigns
    from promo_engine.service import promo_service
    path = tmp_path / name
    path.write_text(yaml_text)
    with app.app_context():
        service = promo_service(app)
        loaded = load_paths([path], registry=service.registry, currency=service.settings.currency,
                            default_timezone=service.settings.timezone)
        assert not loaded.problems, [str(p) for p in loaded.problems]
        report = apply_campaigns(loaded.campaigns)
        service.invalidate()
    return report


def payment(event_id: str, amount: str, *, user_id: str = "u_1", merchant_id: str = "m_100",
            at: str = "2026-06-15T12:00:00+08:00", **extra) -> dict:
    body = {"event_id": event_id, "type": "payment", "user_id": user_id,
            "occurred_at": at, "merchant_id": merchant_id, "amount": amount, "currency": "CNY"}
    body.update(extra)
    return body


def refund(event_id: str, original: str, amount: str, *, user_id: str = "u_1",
           merchant_id: str = "m_100", at: str = "2026-06-16T12:00:00+08:00") -> dict:
    return {"event_id": event_id, "type": "refund", "user_id": user_id, "occurred_at": at,
            "merchant_id": merchant_id, "amount": amount, "currency": "CNY",
            "original_event_id": original}


def activation(event_id: str, *, user_id: str = "u_1",
               at: str = "2026-06-15T09:00:00+08:00") -> dict:
    return {"event_id": event_id, "type": "activation", "user_id": user_id, "occurred_at": at}


def without_ids(rewards: list[dict]) -> list[dict]:
    """Rewards with their random ids (and voucher codes) taken out, for exact comparison."""
    cleaned = []
    for reward in rewards:
        reward = {k: v for k, v in reward.items() if k not in ("reward_id", "reverses")}
        if "voucher" in reward:
            reward["voucher"] = {k: v for k, v in reward["voucher"].items() if k != "code"}
        cleaned.append(reward)
    return cleaned
