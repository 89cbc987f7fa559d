"""The back-test gives exactly what the service grants: a generated history is posted, line by
line, to a fresh service (SQLite; PostgreSQL; PostgreSQL with Redis holding the budgets)
and simulated from its file, and every campaign's figures are compared: rewards, users,
cost, points, each day's figures, when its budget ran out, and the events refused and why.

Budgets and max_redemptions that run out, per-user and per-day limits (one of them in
another timezone), first-activation and first-payment bonuses, multipliers that do not
compound, an exclusive campaign, discounts, partial and full refunds, points spent on a
payment and on exchanges, cancels, user-history targeting and a holdout are all in it.
"""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from simulate_history import (CAMPAIGNS, OPEN_AT, START, base_points, campaign_figures,
                              generate_history, with_event_id, write_jsonl)
from wallet import new_wallet_client

from conftest import make_redis_settings, make_settings, reused_schema_url, running_app
from promo_engine.backtest.event_lines import LineReader
from promo_engine.backtest.events_file import EventsFile
from promo_engine.backtest.simulator import Simulator
from promo_engine.coordination.reservations import Reservations
from promo_engine.ledger.gates import DatabaseGate

SEED = 15

# What the history must exercise, or the comparison proves little: checked exactly, so a
# change of the generator that loses one of them fails here.
EXHAUSTED = {"cashback-exchange", "double-points", "first-payment-cashback", "flat-off-m3",
             "lunch-discount", "welcome-points", "welcome-voucher", "win-back"}


@pytest.fixture(params=["sqlite", "postgresql", "postgresql+redis"])
def backend(request, tmp_path):
    url = reused_schema_url(_Request(request, request.param.split("+")[0]), tmp_path)
    if request.param.endswith("+redis"):
        return make_redis_settings(url, request.getfixturevalue("redis_prefix"))
    return make_settings(url)


class _Request:
    """`reused_schema_url` reads the database from `request.param`."""

    def __init__(self, request, param):
        self._request, self.param = request, param

    def getfixturevalue(self, name):
        return self._request.getfixturevalue(name)


@pytest.fixture(scope="module")
def history():
    return generate_history(SEED)


def test_the_simulation_is_exactly_what_the_service_grants(backend, history, tmp_path,
                                                           monkeypatch):
    live, simulated = _post_and_simulate(backend, history, tmp_path, monkeypatch)
    answers, result = live.answers, simulated.result
    assert {"unknown_payment", "refund_exceeds_payment", "insufficient_points",
            "idempotency_conflict", "offer_unavailable"} <= set(answers.values())
    assert result.totals_rewards > 100
    assert set(live.refusals) == EXHAUSTED
    _assert_the_same(live, simulated, len(history))


def test_a_demo_data_history_too(tmp_path, monkeypatch, request):
    """`promo-engine demo-data`'s history (in the past: the service refuses events ahead of
    its clock), on SQLite: what marketing will simulate most."""
    from promo_engine.backtest.demo_data import DemoOptions, write_demo_data
    path = tmp_path / "demo.jsonl"
    with open(path, "wb") as out:
        write_demo_data(DemoOptions(users=300, days=10, seed=3, start=START.date()), out)
    bodies = [json.loads(line) for line in path.read_text().splitlines()]
    settings = make_settings(reused_schema_url(_Request(request, "sqlite"), tmp_path))
    live, simulated = _post_and_simulate(settings, bodies, tmp_path, monkeypatch)
    assert sum(body["type"] == "refund" for body in bodies) >= 5
    assert simulated.result.totals_rewards > 100 and live.refusals
    _assert_the_same(live, simulated, len(bodies))


class _Live:
    """What the service answered and its ledger holds."""


class _Simulated:
    """The simulation of the same file."""


def _post_and_simulate(settings, bodies, tmp_path, monkeypatch):
    live = _Live()
    live.refusals, current = _spy_on_budget_refusals(monkeypatch)
    with running_app(settings) as app:
        _apply(app, tmp_path)
        wallet = new_wallet_client(app)
        live.answers = {}
        for line, body in enumerate(bodies, 1):
            body = with_event_id(body, line)
            current["at"] = body["occurred_at"]
            response = wallet.post("/v1/events", body)
            assert response.status_code in (200, 201, 409, 422), (line, response.get_json())
            if response.status_code >= 400:
                live.answers[line] = response.get_json()["error"]["code"]
        with app.app_context():
            from promo_engine.ledger.extensions import db
            from promo_engine.ledger.models import UserRecord
            from promo_engine.ledger.usage import ledger_usage
            from promo_engine.service import promo_service
            service = promo_service(app)
            live.zones = {c.id: c.campaign.timezone
                          for c in service.engine().campaigns.values()}
            live.figures = campaign_figures(db.session, live.zones)
            live.base_points = base_points(db.session)
            live.users = {u.user_id: (u.activations, u.payments, u.points_balance)
                          for u in db.session.query(UserRecord)}
            live.usage = ledger_usage(list(live.zones))
            registry = service.registry
    path = tmp_path / "history.jsonl"
    write_jsonl(bodies, path)
    simulated = _Simulated()
    simulated.simulator, simulated.result, simulated.skipped = _simulate(path, registry,
                                                                         settings)
    return live, simulated


def _assert_the_same(live: _Live, simulated: _Simulated, lines: int) -> None:
    result, simulator, zones = simulated.result, simulated.simulator, live.zones
    # The same events refused, for the same reasons.
    assert {line: message.split(":")[0]
            for line, message in simulated.skipped.items()} == live.answers
    assert (result.events, result.skipped) == (lines - len(live.answers), len(live.answers))

    by_id = {c.campaign_id: c for c in result.campaigns}
    assert set(by_id) == set(zones)
    for campaign_id, campaign in by_id.items():
        figures = live.figures.get(campaign_id, {"rewards": 0, "users": 0, "cost": 0,
                                                 "points": 0, "days": {}})
        assert (campaign.rewards, campaign.users, campaign.cost, campaign.points) == (
            figures["rewards"], figures["users"], Decimal(figures["cost"]).scaleb(-2),
            figures["points"]), campaign_id
        assert {d.day: (d.rewards, int(d.cost.scaleb(2)), d.points) for d in campaign.days} \
            == figures["days"], campaign_id
    assert result.base_points == live.base_points
    assert result.totals_rewards == sum(c.rewards for c in result.campaigns)

    # When each budget ran out: the first event a reward found no room, in its zone.
    exhausted = {c.campaign_id: c.budget_exhausted_at for c in result.campaigns
                 if c.budget_exhausted_at is not None}
    assert set(exhausted) == set(live.refusals)
    for campaign_id, at in exhausted.items():
        assert at.isoformat() == _in_zone(live.refusals[campaign_id], zones[campaign_id])
        assert at.tzinfo.key == zones[campaign_id]

    # And what the ledger keeps besides: each user's counters and points, each campaign's
    # budget and redemptions.
    assert {user_id: (u.activations, u.payments, u.points_balance)
            for user_id, u in simulator.users.items()} == live.users
    assert {c: (simulator.gate.spent.get(c, 0), simulator.gate.redemptions.get(c, 0))
            for c in zones} == live.usage


def _apply(app, tmp_path) -> None:
    from promo_engine.campaigns.files import load_paths
    from promo_engine.campaigns.store import apply_campaigns
    from promo_engine.service import promo_service
    path = tmp_path / "campaigns.yaml"
    path.write_text(CAMPAIGNS)
    with app.app_context():
        service = promo_service(app)
        loaded = load_paths([path], registry=service.registry,
                            currency=service.settings.currency,
                            default_timezone=service.settings.timezone)
        assert not loaded.problems, [str(p) for p in loaded.problems]
        apply_campaigns(loaded.campaigns, now=OPEN_AT)
        service.invalidate()
        assert len(service.engine()) == len(loaded.campaigns)


def _simulate(path, registry, settings):
    from promo_engine.campaigns.files import load_paths
    loaded = load_paths([path.with_name("campaigns.yaml")], registry=registry,
                        currency=settings.currency, default_timezone=settings.timezone)
    simulator = Simulator([item.campaign for item in loaded.campaigns], registry,
                          currency=settings.currency, points_per_unit=settings.points_per_unit,
                          point_value=settings.point_value, timezone=settings.timezone)
    reader = LineReader(event_types=registry.event_types, currency=settings.currency,
                        point_value=settings.point_value)
    skipped: dict[int, str] = {}
    result = simulator.run(EventsFile(str(path), reader), skip_invalid=True,
                           on_skip=skipped.__setitem__)
    return simulator, result, skipped


def _spy_on_budget_refusals(monkeypatch):
    """The live service's own answers to "does this reward fit its budget?": the first
    event each campaign was refused at, with the database's gate or Redis's counters."""
    refusals: dict[str, str] = {}
    current: dict[str, str] = {}
    database_reserve, redis_reserve = DatabaseGate.reserve, Reservations.reserve

    def database_gate(self, compiled, reward, local_day):
        fits = database_reserve(self, compiled, reward, local_day)
        if not fits:
            refusals.setdefault(compiled.id, current["at"])
        return fits

    def redis_counters(self, requests):
        outcome = redis_reserve(self, requests)
        for campaign_id in outcome.full:
            refusals.setdefault(campaign_id, current["at"])
        return outcome

    monkeypatch.setattr(DatabaseGate, "reserve", database_gate)
    monkeypatch.setattr(Reservations, "reserve", redis_counters)
    return refusals, current


def _in_zone(text: str, zone: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(
        ZoneInfo(zone)).isoformat()
