"""The back-test grants exactly what the service grants under the abuse controls: events from
a few devices that many users share (reward hunters), campaigns with `per_device` and
`per_device_daily` limits (one of them by a London day), and a risk policy with every rule
(per user and per device per day, distinct users per device, monthly cashback, and holds).

A generated history is posted line by line to a fresh service (SQLite; PostgreSQL;
PostgreSQL with Redis holding the budgets) and simulated from its file with the policy
document beside the campaigns; every event's campaign rewards are compared, `held`
included, and then every campaign's figures and what the ledger keeps besides.
"""
from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest
from simulate_history import (OPEN_AT, base_points, campaign_figures, generate_history,
                              with_event_id, write_jsonl)
from wallet import new_wallet_client

from conftest import make_redis_settings, make_settings, reused_schema_url, running_app
from promo_engine.backtest.event_lines import LineReader
from promo_engine.backtest.events_file import EventsFile
from promo_engine.backtest.simulator import Simulator
from promo_engine.core import money
from promo_engine.core.rewards import MONEY_KINDS
from promo_engine.core.risk import CompiledRiskPolicy

SEED = 16

CAMPAIGNS = """\
id: welcome-points
type: first_activation_bonus
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
limits: {per_device: 3}
params: {on: activation, points: 100}
---
id: first-payment-cashback
type: first_activation_bonus
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
limits: {per_device: 2}
params: {on: first_payment, cashback: "12.00"}
---
id: small-cashback
type: first_activation_bonus
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
params: {on: first_payment, cashback: "3.00"}
---
id: device-daily-off
type: holiday_discount
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
conditions: {min_amount: "10.00"}
limits: {per_device: 6, per_device_daily: 2}
params: {amount_off: "1.50"}
---
id: london-daily
type: holiday_discount
timezone: Europe/London
merchants: [m_4, m_9]
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
limits: {per_device_daily: 1}
params: {percent: 5, max_discount: "4.00"}
---
id: double-points
type: points_multiplier
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
limits: {per_device: 10, per_user_daily: 2}
params: {multiplier: 2}
---
id: cashback-exchange
type: points_exchange
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
limits: {per_device: 2}
params: {cost_points: 150, cashback: "2.00"}
"""

POLICY = """\
risk_policy:
  per_user_daily: {rewarded_events: 3, reward_amount: "16.00"}
  per_device_daily: {rewarded_events: 4, reward_amount: "25.00", users: 3}
  per_user_monthly: {cashback: "16.00"}
  hold: {cashback_above: "10.00"}
"""

DEVICES_SHARED = 3  # the hunters' devices: users u0..u14 take turns on them


def _with_devices(bodies: list[dict], seed: int) -> list[dict]:
    """Each line with the device its user is on: most users have their own, fifteen share
    three, some lines come from a second device, and some carry none."""
    rng = random.Random(seed)
    result = []
    for body in bodies:
        user = int(body["user_id"][1:])
        draw = rng.random()
        if draw < 0.12:
            result.append(body)  # no device_id: not counted, not limited
            continue
        if user < 15:
            device = f"shared-{rng.randrange(DEVICES_SHARED)}"
        elif draw < 0.2:
            device = f"spare-{user}"
        else:
            device = f"own-{user}"
        result.append(dict(body, device_id=device))
    return result


@pytest.fixture(params=["sqlite", "postgresql", "postgresql+redis"])
def backend(request, tmp_path):
    url = reused_schema_url(_Request(request, request.param.split("+")[0]), tmp_path)
    if request.param.endswith("+redis"):
        return make_redis_settings(url, request.getfixturevalue("redis_prefix"))
    return make_settings(url)


class _Request:
    def __init__(self, request, param):
        self._request, self.param = request, param

    def getfixturevalue(self, name):
        return self._request.getfixturevalue(name)


@pytest.fixture(scope="module")
def history():
    return _with_devices(generate_history(SEED, users=30, payments=320), SEED)


@pytest.fixture
def files(tmp_path, history):
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "campaigns.yaml").write_text(CAMPAIGNS)
    (tmp_path / "campaigns" / "risk-policy.yaml").write_text(POLICY)
    write_jsonl(history, tmp_path / "history.jsonl")
    return tmp_path


def test_every_event_gets_what_the_service_grants(backend, history, files):
    live = _post(backend, history, files)
    simulated = _simulate(files, live.registry, backend)
    # What the history must exercise, or the comparison proves little.
    assert simulated.device_limited >= 10
    assert {"user's rewarded events", "device's rewarded events", "device's rewarded users"} \
        <= simulated.refusal_kinds
    assert 5 <= sum(c.held for c in simulated.result.campaigns) < sum(
        held for *_, held in (g for grants in simulated.granted.values() for g in grants))
    assert simulated.money_capped == {"user", "device", "cashback"}

    # Event by event: the same campaign rewards, the same ones held.
    assert simulated.granted == live.granted
    assert {line: message.split(":")[0] for line, message in simulated.skipped.items()} \
        == live.answers

    by_id = {c.campaign_id: c for c in simulated.result.campaigns}
    for campaign_id, campaign in by_id.items():
        figures = live.figures.get(campaign_id, {"rewards": 0, "users": 0, "cost": 0,
                                                 "points": 0, "days": {}})
        assert (campaign.rewards, campaign.users, campaign.cost, campaign.points) == (
            figures["rewards"], figures["users"], Decimal(figures["cost"]).scaleb(-2),
            figures["points"]), campaign_id
    assert simulated.result.base_points == live.base_points
    assert {c: by_id[c].held for c in by_id if by_id[c].held} == live.held
    # The devices' uses, net of full refunds and cancels, as the ledger's rows hold them.
    assert {(campaign_id, device_id): uses
            for device_id, device in simulated.simulator.devices.items()
            for campaign_id, uses in device.uses.items() if uses} == live.device_uses


def test_without_the_policy_and_the_devices_more_is_granted(history, files):
    """The controls bite: the same history simulated without device ids and without the
    policy grants more of the per-device campaigns and holds nothing."""
    from promo_engine.core.registry import build_registry, get_plugin_manager
    registry = build_registry(get_plugin_manager(load_entry_points=False))
    settings = make_settings("sqlite://")
    controlled = _simulate(files, registry, settings).result
    (files / "campaigns" / "risk-policy.yaml").unlink()
    write_jsonl([{k: v for k, v in body.items() if k != "device_id"} for body in history],
                files / "history.jsonl")
    free = _simulate(files, registry, settings).result
    rewards = {c.campaign_id: c.rewards for c in free.campaigns}
    for campaign in controlled.campaigns:
        assert campaign.rewards <= rewards[campaign.campaign_id], campaign.campaign_id
    assert controlled.totals_rewards < free.totals_rewards
    assert not free.holds and controlled.holds
    assert sum(c.held for c in free.campaigns) == 0


# -- the service -----------------------------------------------------------------------

class _Live:
    """What the service answered and its ledger holds."""


def _campaign_rewards(rewards: list[dict]) -> list[tuple]:
    """A response's campaign grants as (campaign, kind, value, held), without the points an
    event spends and without reversals."""
    found = []
    for reward in rewards:
        if reward["campaign_id"] is None or "reverses" in reward:
            continue
        if reward["kind"] == "points":
            if reward["points"] < 0:
                continue
            value = str(reward["points"])
        elif reward["kind"] == "voucher":
            value = reward["voucher"]["amount"]
        else:
            value = reward["amount"]
        found.append((reward["campaign_id"], reward["kind"], value,
                      reward.get("held", False)))
    return sorted(found)


def _post(settings, bodies, files) -> _Live:
    from promo_engine.campaigns.files import load_paths
    from promo_engine.campaigns.store import apply_campaigns
    from promo_engine.service import promo_service
    live = _Live()
    with running_app(settings) as app:
        with app.app_context():
            service = promo_service(app)
            loaded = load_paths([files / "campaigns"], registry=service.registry,
                                currency=settings.currency, default_timezone=settings.timezone)
            assert not loaded.problems, [str(p) for p in loaded.problems]
            report = apply_campaigns(loaded.campaigns, risk_policy=loaded.risk_policy,
                                     now=OPEN_AT)
            assert report.risk_policy == "created"
            service.invalidate()
            assert service.engine().risk is not None
        wallet = new_wallet_client(app)
        live.answers, live.granted = {}, {}
        for line, body in enumerate(bodies, 1):
            body = with_event_id(body, line)
            response = wallet.post("/v1/events", body)
            assert response.status_code in (200, 201, 409, 422), (line, response.get_json())
            answer = response.get_json()
            if response.status_code >= 400:
                live.answers[line] = answer["error"]["code"]
            elif response.status_code == 201 and body["type"] not in ("refund", "cancel"):
                grants = _campaign_rewards(answer["rewards"])
                if grants:
                    live.granted[body["event_id"]] = grants
        with app.app_context():
            from sqlalchemy import func, select

            from promo_engine.ledger.extensions import db
            from promo_engine.ledger.models import RewardRecord
            from promo_engine.ledger.risk_models import DeviceCampaignUsage, RewardHold
            zones = {c.id: c.campaign.timezone for c in service.engine().campaigns.values()}
            live.figures = campaign_figures(db.session, zones)
            live.base_points = base_points(db.session)
            # Held rewards not fully reversed since (the result's `held`).
            reversed_ = dict(db.session.execute(
                select(RewardRecord.reverses_id, func.sum(RewardRecord.amount_minor))
                .where(RewardRecord.reverses_id.is_not(None))
                .group_by(RewardRecord.reverses_id)).all())
            live.held = {}
            for pk, campaign_id, amount in db.session.execute(
                    select(RewardRecord.id, RewardRecord.campaign_id, RewardRecord.amount_minor)
                    .join(RewardHold, RewardHold.reward_pk == RewardRecord.id)).all():
                if amount + reversed_.get(pk, 0):
                    live.held[campaign_id] = live.held.get(campaign_id, 0) + 1
            live.device_uses = {(row.campaign_id, row.device_id): row.uses
                                for row in db.session.scalars(select(DeviceCampaignUsage))
                                if row.uses}
            live.registry = service.registry
    return live


# -- the simulation --------------------------------------------------------------------

class _Simulated:
    """The simulation of the same file, with each event's grants and why rewards were
    refused, seen from outside the simulator."""


class _Watching(Simulator):
    """Records each event's campaign grants, and how often each control refused one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.granted: dict[str, list[tuple]] = {}
        self.device_limited = 0
        self.money_capped: set[str] = set()  # which money caps refused a reward
        self.refusal_kinds: set[str] = set()
        engine, evaluate = self.engine, self.engine.evaluate
        if engine.risk is not None:
            engine.risk = _CountingPolicy(engine.risk.policy, engine.risk.minor_digits, self)

        def watched(event, user, gate=None, **kwargs):
            refusal = engine.risk_refusal(event, user)
            if refusal is not None:
                self.refusal_kinds.add(refusal.split(" today")[0].replace("the ", "", 1))
            elif event.device_id is not None and any(
                    compiled.starts_at <= event.occurred_at < compiled.ends_at and
                    compiled.device_limit_reached(
                        user, event.occurred_at.astimezone(compiled.zone).date())
                    for compiled in engine.campaigns.values()):
                self.device_limited += 1
            return evaluate(event, user, gate, **kwargs)

        engine.evaluate = watched

    def _book(self, event, user, grants, kept, device):
        found = []
        for grant in grants:
            if grant.campaign is None:
                continue
            reward = grant.reward
            value = (str(reward.points) if reward.kind == "points"
                     else money.format_amount(reward.amount, self.currency))
            found.append((grant.campaign.id, reward.kind, value, grant.held))
        if found:
            self.granted[event.event_id] = sorted(found)
        super()._book(event, user, grants, kept, device)


class _CountingPolicy(CompiledRiskPolicy):
    """The policy, counting the money rewards its caps refused."""

    def __init__(self, policy, minor_digits, watcher):
        super().__init__(policy, minor_digits)
        self.watcher = watcher

    def gate(self, inner, counters, has_device):
        made = super().gate(inner, counters, has_device)
        return None if made is None else _CountingGate(made, self.watcher)


class _CountingGate:
    def __init__(self, gate, watcher):
        self.gate, self.watcher = gate, watcher

    def reserve(self, campaign, reward, local_day):
        gate = self.gate
        if reward.kind in MONEY_KINDS:
            cost = int(reward.amount.scaleb(gate.minor_digits))
            lefts = {"user": gate.user_left, "device": gate.device_left}
            if reward.kind == "cashback":
                lefts["cashback"] = gate.cashback_left
            for cap, left in lefts.items():
                if left is not None and cost > left:
                    self.watcher.money_capped.add(cap)
        return gate.reserve(campaign, reward, local_day)


def _simulate(files, registry, settings) -> _Simulated:
    from promo_engine.campaigns.files import load_paths
    loaded = load_paths([files / "campaigns"], registry=registry, currency=settings.currency,
                        default_timezone=settings.timezone)
    assert not loaded.problems, [str(p) for p in loaded.problems]
    simulator = _Watching([item.campaign for item in loaded.campaigns], registry,
                          currency=settings.currency, points_per_unit=settings.points_per_unit,
                          point_value=settings.point_value, timezone=settings.timezone,
                          risk_policy=(loaded.risk_policy.policy if loaded.risk_policy
                                       else None))
    reader = LineReader(event_types=registry.event_types, currency=settings.currency,
                        point_value=settings.point_value)
    simulated = _Simulated()
    simulated.skipped = {}
    simulated.result = simulator.run(EventsFile(str(files / "history.jsonl"), reader),
                                     skip_invalid=True, on_skip=simulated.skipped.__setitem__)
    simulated.simulator = simulator
    simulated.granted = simulator.granted
    simulated.device_limited = simulator.device_limited
    simulated.money_capped = simulator.money_capped
    simulated.refusal_kinds = simulator.refusal_kinds
    return simulated


def test_the_history_file_is_json_lines(files):
    first = json.loads((files / "history.jsonl").read_text().splitlines()[0])
    assert first["type"] in ("activation", "payment")


# -- the command line --------------------------------------------------------------------

CLI_CAMPAIGN = """\
id: big-cashback
type: first_activation_bonus
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
limits: {per_device: 1}
params: {on: first_payment, cashback: "150.00"}
"""


def _pay(line: int, user: str, device: str | None) -> dict:
    body = {"type": "payment", "user_id": user, "event_id": f"e{line}",
            "occurred_at": f"2026-03-03T1{line}:00:00+08:00", "merchant_id": "m_1",
            "amount": "500.00", "currency": "CNY"}
    if device is not None:
        body["device_id"] = device
    return body


CLI_EVENTS = [
    _pay(1, "u1", "d1"),  # held
    _pay(2, "u2", "d1"),  # the device's one reward is taken
    _pay(3, "u3", "d2"),  # held
    {"type": "refund", "user_id": "u1", "event_id": "e4", "original_event_id": "e1",
     "occurred_at": "2026-03-03T14:30:00+08:00", "merchant_id": "m_1", "amount": "500.00",
     "currency": "CNY"},  # gives d1 its use back
    _pay(5, "u4", "d1"),  # held
    _pay(6, "u5", None),  # no device: not limited; held
]


def _simulate_cli(tmp_path, *args, as_json=True):
    from click.testing import CliRunner

    from promo_engine.cli import main
    write_jsonl(CLI_EVENTS, tmp_path / "events.jsonl")
    return CliRunner().invoke(main, ["campaigns", "simulate", *map(str, args), "--events",
                                     str(tmp_path / "events.jsonl")]
                              + (["--json"] if as_json else []),
                              env={"PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY",
                                   "SECRET_KEY": "", "PROMO_LOAD_ENTRY_POINTS": "0"})


def test_simulate_uses_the_policy_beside_the_campaigns(tmp_path):
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "cashback.yaml").write_text(CLI_CAMPAIGN)
    (tmp_path / "campaigns" / "risk-policy.yaml").write_text(
        'risk_policy:\n  hold: {cashback_above: "100.00"}\n')
    result = _simulate_cli(tmp_path, tmp_path / "campaigns")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "events": 6, "skipped": 0, "base_points": 2000,
        "campaigns": [{"campaign_id": "big-cashback", "rewards": 3, "users": 3,
                       "cost": "450.00", "points": 0, "budget_exhausted_at": None,
                       "held": 3}],
        "totals": {"rewards": 3, "cost": "450.00", "points": 0}}

    text = _simulate_cli(tmp_path, tmp_path / "campaigns", as_json=False).stdout
    assert text.splitlines()[-2:] == [
        "6 events, 2026-03-03 to 2026-03-03; 0 lines skipped; 2000 base points",
        "3 rewards held for review by the risk policy (counted above as granted)"]

    # Without a policy that holds, the contract's object as it is: no `held`.
    (tmp_path / "campaigns" / "risk-policy.yaml").write_text(
        "risk_policy:\n  per_device_daily: {users: 1}\n")
    result = _simulate_cli(tmp_path, tmp_path / "campaigns")
    assert json.loads(result.stdout)["campaigns"] == [
        {"campaign_id": "big-cashback", "rewards": 2, "users": 2, "cost": "300.00",
         "points": 0, "budget_exhausted_at": None}]  # u4 is d1's second user of the day


def test_simulate_reports_a_bad_policy_at_its_line(tmp_path):
    (tmp_path / "cashback.yaml").write_text(CLI_CAMPAIGN)
    (tmp_path / "risk.yaml").write_text("risk_policy:\n  hold: {cashback_over: \"1.00\"}\n")
    result = _simulate_cli(tmp_path, tmp_path / "cashback.yaml", tmp_path / "risk.yaml")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"{tmp_path / 'risk.yaml'}:2: risk_policy.hold.cashback_over: " \
                            "Unknown field.\n"
