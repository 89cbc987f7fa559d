"""docs/points.md's worked example is run as written: every request is sent and every
response compared with the one the page shows.

Reward ids and voucher codes are random: each one the page shows stands for the one the
service returned at the same place (the same id everywhere it appears), and the page's
codes are replaced by the real ones in later requests. Entry times (`created_at`) are the
service's clock and are not compared.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import make_settings, running_app
from wallet import new_wallet_client

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "points.md"
STEP = re.compile(r"<!-- request(?: (?P<get>GET \S+))? -->\s*\n(?:```json\n(?P<body>.*?)```\s*\n)?"
                  r"\s*<!-- response (?P<status>\d{3}) -->\s*\n```json\n(?P<response>.*?)```",
                  re.S)
RANDOM = re.compile(r"^(rw_[0-9a-f]{20}|[A-Z0-9]{12})$")
# After every event of the example: expiry and voucher validity are judged at this instant.
CLOCK = datetime(2026, 12, 6, 4, 10, tzinfo=timezone.utc)


def steps():
    text = DOC.read_text()
    found = [(text[:m.start()].count("\n") + 1, m) for m in STEP.finditer(text)]
    return [(line, m["get"], json.loads(m["body"]) if m["body"] else None, int(m["status"]),
             json.loads(m["response"])) for line, m in found]


def test_the_example_has_every_kind_of_step():
    kinds = {(body or {}).get("type") or get.split()[1].rsplit("/", 1)[1]
             for _, get, body, _, _ in steps()}
    assert kinds == {"payment", "redemption", "cancel", "refund", "points", "vouchers",
                     "offers"}


def matches(shown, actual, bound: dict, where: str) -> None:
    """`actual` is what the page `shown`, a random id or code standing for the one returned."""
    if isinstance(shown, dict):
        assert isinstance(actual, dict) and set(shown) == set(actual), (where, shown, actual)
        for key in shown:
            if key != "created_at":
                matches(shown[key], actual[key], bound, f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list) and len(shown) == len(actual), (where, shown, actual)
        for index, (s, a) in enumerate(zip(shown, actual)):
            matches(s, a, bound, f"{where}[{index}]")
    elif isinstance(shown, str) and RANDOM.fullmatch(shown) and shown not in ("u_42",):
        assert isinstance(actual, str) and RANDOM.fullmatch(actual), (where, shown, actual)
        assert bound.setdefault(shown, actual) == actual, (where, shown, actual)
        assert list(bound.values()).count(actual) == 1, (where, "two shown for one", actual)
    elif isinstance(shown, str):
        assert substitute(shown, bound) == actual, (where, shown, actual)
    else:
        assert shown == actual, (where, shown, actual)


def substitute(value, bound: dict):
    text = json.dumps(value) if not isinstance(value, str) else value
    for shown, actual in bound.items():
        text = text.replace(shown, actual)
    return json.loads(text) if not isinstance(value, str) else text


@pytest.fixture
def wallet(database_url):
    settings = make_settings(database_url, points_expire_months=12)
    with running_app(settings) as app:
        app.extensions["promo"].clock = lambda: CLOCK
        # Opened as of the example's time, so that it runs the same on any later day.
        from promo_engine.campaigns.files import load_paths
        from promo_engine.campaigns.store import apply_campaigns
        service = app.extensions["promo"]
        with app.app_context():
            loaded = load_paths([ROOT / "campaigns" / "points-mall-coffee.yaml"],
                                registry=service.registry, currency="CNY",
                                default_timezone="Asia/Shanghai")
            apply_campaigns(loaded.campaigns, now=CLOCK)
            service.invalidate()
        yield new_wallet_client(app)


def test_the_worked_example_runs_as_written(wallet):
    bound: dict[str, str] = {}
    for line, get, body, status, shown in steps():
        if get:
            response = wallet.get(get.split()[1])
        else:
            response = wallet.post("/v1/events", substitute(body, bound))
        where = f"docs/points.md:{line}"
        assert response.status_code == status, (where, response.get_json())
        matches(shown, response.get_json(), bound, where)
