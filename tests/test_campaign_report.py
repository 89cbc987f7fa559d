"""`promo-engine campaigns report ID [--json]`: a small history posted to a service, and
every number of the report worked out by hand here: rewards net of a refund, cost, budget
left, who the holdout hash puts in the control group, the per-user means and the Welch
intervals (with the t quantiles checked by integrating Student's density).
"""
from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal

import pytest
from click.testing import CliRunner

from promo_engine.cli import main
from promo_engine.core.targeting import held_out
from promo_engine.core.uplift import t_quantile, welch_interval
from tests.conftest import running_app
from tests.wallet import install_campaigns, new_wallet_client, payment, refund

CAMPAIGNS = """\
id: june-dining
name: June dining, 5 off
type: holiday_discount
merchants: [m_1]
starts_at: 2026-06-01T00:00:00
ends_at: 2030-01-01T00:00:00
budget: {amount: "100.00"}
holdout: 30
params: {amount_off: "5.00"}
---
id: june-points
name: Double points at m_9
type: points_multiplier
merchants: [m_9]
starts_at: 2026-06-01T00:00:00
ends_at: 2030-01-01T00:00:00
budget: {points: 1000}
params: {multiplier: 2}
"""

# The holdout bucket of each user for june-dining, worked out below with hashlib: the
# first 8 bytes of SHA-256("june-dining:<user>") as a big-endian number, mod 10,000.
# `holdout: 30` holds out buckets 0 to 2999.
BUCKETS = {"u4": 2189, "u5": 1404, "u7": 1795,  # control
           "u1": 7474, "u2": 8152, "u3": 3002, "u6": 8822}  # treatment (u3 just above)
CONTROL = {"u4": ["20.00"], "u5": ["10.00", "30.00"], "u7": ["10.00", "10.00", "10.00"]}
TREATMENT = {"u1": ["50.00", "10.00"], "u2": ["20.00", "20.00", "20.00"],
             "u3": ["10.00", "10.00", "10.00", "10.00"], "u6": ["30.00", "30.00", "40.00"]}


def _history() -> list[dict]:
    bodies, day = [], iter(range(2, 29))
    # Out of the comparison: before starts_at, at another merchant, a user paying only elsewhere.
    bodies.append(payment("early", "99.00", user_id="u4", merchant_id="m_1",
                          at="2026-05-31T23:00:00+08:00"))
    bodies.append(payment("elsewhere", "77.00", user_id="u2", merchant_id="m_2",
                          at="2026-06-01T10:00:00+08:00"))
    bodies.append(payment("outsider", "66.00", user_id="u8", merchant_id="m_2",
                          at="2026-06-01T11:00:00+08:00"))
    for user, amounts in [*CONTROL.items(), *TREATMENT.items()]:
        for index, amount in enumerate(amounts):
            bodies.append(payment(f"{user}-{index}", amount, user_id=user, merchant_id="m_1",
                                  at=f"2026-06-{next(day):02d}T12:00:00+08:00"))
    # u1's 10.00 payment refunded in full (its 5.00 discount reversed: no reward left),
    # u6's 40.00 payment half refunded (2.50 of its 5.00 discount reversed).
    bodies.append(refund("r-u1", "u1-1", "10.00", user_id="u1", merchant_id="m_1",
                         at="2026-06-29T12:00:00+08:00"))
    bodies.append(refund("r-u6", "u6-2", "20.00", user_id="u6", merchant_id="m_1",
                         at="2026-06-29T13:00:00+08:00"))
    # june-points: 100 extra points on 100.00 at m_9, half of them reversed by a refund.
    bodies.append(payment("p9", "100.00", user_id="u1", merchant_id="m_9",
                          at="2026-06-30T12:00:00+08:00"))
    bodies.append(refund("r-p9", "p9", "50.00", user_id="u1", merchant_id="m_9",
                         at="2026-06-30T13:00:00+08:00"))
    return bodies


@pytest.fixture
def reported(settings, tmp_path):
    """The history posted to a fresh service; runs `campaigns report` against its database."""
    with running_app(settings) as app:
        install_campaigns(app, CAMPAIGNS, tmp_path)
        wallet = new_wallet_client(app)
        for body in _history():
            response = wallet.post("/v1/events", body)
            assert response.status_code in (200, 201), (body, response.get_json())
        env = {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key,
               "PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY",
               "PROMO_LOAD_ENTRY_POINTS": "0"}

        def run(*args):
            return CliRunner().invoke(main, ["campaigns", "report", *args], env=env)
        yield run


def _bucket(campaign_id: str, user_id: str) -> int:
    digest = hashlib.sha256(f"{campaign_id}:{user_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def test_the_held_out_users_are_exactly_those_the_hash_says():
    assert {user: _bucket("june-dining", user) for user in BUCKETS} == BUCKETS
    assert {user for user, bucket in BUCKETS.items() if bucket < 30 * 100} == set(CONTROL)
    # The engine's, the offers' and the report's function agrees (u3, bucket 3002, is in).
    assert {user for user in BUCKETS if held_out("june-dining", user, 30)} == set(CONTROL)


def _t_density(x: float, df: float) -> float:
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) \
        / math.sqrt(df * math.pi) * (1 + x * x / df) ** (-(df + 1) / 2)


def _simpson(df: float, upper: float, steps: int = 4000) -> float:
    h = upper / steps
    total = _t_density(0, df) + _t_density(upper, df)
    total += sum((4 if i % 2 else 2) * _t_density(i * h, df) for i in range(1, steps))
    return total * h / 3


# Treatment minus control, by hand. Payments per user: treatment 2, 3, 4, 3 (mean 3, sample
# variance (1 + 0 + 1 + 0) / 3 = 2/3), control 1, 2, 3 (mean 2, variance 1).
# se^2 = (2/3)/4 + 1/3 = 1/2; df = (1/2)^2 / ((1/6)^2/3 + (1/3)^2/2) = 0.25 / (7/108) = 27/7.
PAY_DF, PAY_SE = 27 / 7, math.sqrt(0.5)
# Spend per user (yuan, net of refunds): treatment u1 50 + 10 - 10 = 50,
# u2 60, u3 40, u6 30 + 30 + 40 - 20 = 80: mean 57.5, squares of deviations 56.25 + 6.25 +
# 306.25 + 506.25 = 875, variance 875/3; control 20, 40, 30: mean 30, variance 200/2 = 100.
# se^2 = (875/3)/4 + 100/3 = 106.25; df = 106.25^2 / ((875/12)^2/3 + (100/3)^2/2).
SPEND_SE = math.sqrt(106.25)
SPEND_DF = 106.25 ** 2 / ((875 / 12) ** 2 / 3 + (100 / 3) ** 2 / 2)  # 4.8496...
# t quantiles for 97.5% at those df (checked by integrating the density in the test below).
T_PAY, T_SPEND = 2.817474, 2.594747


def test_the_t_quantiles_by_integrating_the_density():
    assert PAY_DF == pytest.approx(3.857142857)
    assert SPEND_DF == pytest.approx(4.849596, abs=1e-6)
    for df, t in [(PAY_DF, T_PAY), (SPEND_DF, T_SPEND)]:
        assert _simpson(df, t) == pytest.approx(0.475, abs=2e-7)  # P(0 < T < t)
        assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-6)
    # Closed forms for 1 and 2 degrees of freedom, and a table value for 10.
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), abs=1e-9)
    assert t_quantile(0.975, 2) == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), abs=1e-9)
    assert t_quantile(0.975, 10) == pytest.approx(2.228139, abs=1e-6)


def test_welch_interval_by_hand():
    interval = welch_interval([2, 3, 4, 3], [1, 2, 3])
    assert interval.difference == 1
    assert interval.df == pytest.approx(27 / 7)
    assert interval.low == pytest.approx(1 - T_PAY * PAY_SE, abs=1e-6)
    assert interval.high == pytest.approx(1 + T_PAY * PAY_SE, abs=1e-6)
    assert welch_interval([5], [1, 2]).low is None  # one user: no variance, no interval
    same = welch_interval([2, 2], [1, 1])
    assert (same.difference, same.low, same.high) == (1, 1, 1)


def _close(text: str, expected: float, unit: str) -> bool:
    """Printed to `unit` (e.g. "0.01"): within one unit of the hand-computed value."""
    return abs(Decimal(text) - Decimal(repr(expected))) <= Decimal(unit)


def test_the_report_json_by_hand(reported):
    result = reported("june-dining", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    uplift = report["holdout"].pop("uplift")
    # 12 discounts of 5.00 given to the treatment group at m_1; u1's refunded payment takes
    # one back in full (not counted), u6's half refund takes 2.50: 11 rewards, 4 users,
    # 60.00 - 5.00 - 2.50 = 52.50; the budget of 100.00 has 47.50 left.
    assert report == {
        "campaign_id": "june-dining", "rewards": 11, "users": 4, "cost": "52.50", "points": 0,
        "budget_left": "47.50",
        "holdout": {"percent": 30,
                    "control": {"users": 3, "payments_per_user": "2.0000",
                                "spend_per_user": "30.00"},
                    "treatment": {"users": 4, "payments_per_user": "3.0000",
                                  "spend_per_user": "57.50"}}}
    assert set(uplift) == {"payments_per_user", "spend_per_user"}
    pay, spend = uplift["payments_per_user"], uplift["spend_per_user"]
    assert set(pay) == set(spend) == {"difference", "low", "high"}
    assert pay["difference"] == "1.0000" and spend["difference"] == "27.50"
    # 1 -/+ 2.817474 x 0.707107 = -0.99225 .. 2.99225 (printed -0.9923, 2.9923);
    # 27.5 -/+ 2.594747 x 10.307764 = 0.754 .. 54.246 (printed 0.75, 54.25).
    assert _close(pay["low"], 1 - T_PAY * PAY_SE, "0.0001") and pay["low"] == "-0.9923"
    assert _close(pay["high"], 1 + T_PAY * PAY_SE, "0.0001") and pay["high"] == "2.9923"
    assert _close(spend["low"], 27.5 - T_SPEND * SPEND_SE, "0.01") and spend["low"] == "0.75"
    assert _close(spend["high"], 27.5 + T_SPEND * SPEND_SE, "0.01") and spend["high"] == "54.25"


def test_points_budget_refund_and_no_holdout(reported):
    result = reported("june-points", "--json")
    assert result.exit_code == 0, result.output
    # 200 points in all on 100.00 at x2: 100 base + 100 from the campaign; the half refund
    # reverses 50 of the campaign's (the reward still counts: not fully reversed).
    assert json.loads(result.output) == {
        "campaign_id": "june-points", "rewards": 1, "users": 1, "cost": "0.00", "points": 50,
        "budget_left": 950, "holdout": None}


def test_the_report_as_tables(reported):
    result = reported("june-dining")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "june-dining: June dining, 5 off (holiday_discount)"
    assert [line.split() for line in lines[2:7]] == [
        ["rewards", "11"], ["users", "4"], ["cost", "52.50", "CNY"], ["points", "0"],
        ["budget", "left", "47.50", "CNY"]]
    assert lines[8] == ("holdout 30%: control (held out) against treatment, at the "
                        "campaign's merchants in its dates; spend in CNY")
    assert lines[9].split() == ["CONTROL", "TREATMENT", "UPLIFT", "[95%", "CI,", "Welch]"]
    assert [line.split(None, 3) for line in lines[10:]] == [["users", "3", "4", "—"],
                     ["payments/user", "2.0000", "3.0000", "1.0000 [-0.9923, 2.9923]"],
                     ["spend/user", "30.00", "57.50", "27.50 [0.75, 54.25]"]]


def test_an_unknown_campaign_is_one_line_and_exit_1(reported):
    result = reported("no-such-campaign")
    assert result.exit_code == 1
    assert result.output == ("promo-engine: no campaign no-such-campaign; "
                             "`promo-engine campaigns list` shows them\n")
