"""A small posted history for the risk report's tests, every figure worked out by hand.

Asia/Shanghai, CNY. Events are placed minutes before `base` (the report's `now`), one user and
one device 31 days before it (outside the 30-day period and the month). Campaigns:
`welcome` (10.00 cashback on a user's first activation), `dining` (10% off at m_100, m_200
and m_300 from 100.00: `conditions.min_amount`) and `future` (scheduled, min_amount 50.00: no
cluster row).

user  device    events in the period (payments: 10% off when >= 100.00 at m_100/200/300)
h1    dev-farm  activation (10.00); 3 x 101.00 at m_100 (10.10 each), all refunded in full
h2    dev-farm  activation; 3 x 101.00 at m_100, one refunded 50.00, one in full
h3    dev-farm  activation; 2 x 105.00 at m_300 (10.50 each), both refunded
h4    dev-farm  activation; 3 x 104.00 at m_200 (10.40 each)
n1    dev-n1    activation; 17 x 150.00 at m_200 (15.00 each), the first refunded 10.00
n2    dev-pair  activation; 99.99 at m_200, 95.00 and 94.99 at m_100 (no discount), 101.00
      (no device) at m_999 (no campaign)
o1    dev-pair  20.00 at m_999 (no reward)
o1    dev-farm  31 days before: activation and 101.00 at m_100 (both rewarded, outside)
Refunds carry no device.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from wallet import install_campaigns, new_wallet_client, payment, refund
from wallet import activation as bare_activation

ZONE = ZoneInfo("Asia/Shanghai")  # the program's zone

CAMPAIGNS = """
id: welcome
name: Welcome cashback
type: first_activation_bonus
starts_at: 2026-01-01T00:00:00
ends_at: 2030-01-01T00:00:00
params: {on: activation, cashback: "10.00"}
---
id: dining
name: Dining 10% off
type: holiday_discount
merchants: [m_100, m_200, m_300]
starts_at: 2026-01-01T00:00:00
ends_at: 2030-01-01T00:00:00
conditions: {min_amount: "100.00"}
params: {percent: 10}
---
id: future
name: Future 5% off
type: holiday_discount
starts_at: 2029-06-01T00:00:00
ends_at: 2030-01-01T00:00:00
conditions: {min_amount: "50.00"}
params: {percent: 5}
"""

POLICY = """
risk_policy:
  per_user_monthly: {cashback: "20.00"}
"""


def activation(event_id: str, *, user_id: str, at: str, device_id: str) -> dict:
    return {**bare_activation(event_id, user_id=user_id, at=at), "device_id": device_id}


def events(base: datetime) -> list[dict]:
    """The bodies in the order posted; `base` aware (the report's now)."""
    minute = [0]

    def at(days: int = 0) -> str:
        minute[0] += 1
        return (base - timedelta(days=days, minutes=200 - minute[0])).isoformat()

    out = [activation("old-a", user_id="o1", at=at(31), device_id="dev-farm"),
           payment("old-p", "101.00", user_id="o1", at=at(31), device_id="dev-farm")]
    for user in ("h1", "h2", "h3", "h4"):
        out.append(activation(f"a-{user}", user_id=user, at=at(), device_id="dev-farm"))
    for n in range(3):
        out.append(payment(f"p-h1-{n}", "101.00", user_id="h1", at=at(), device_id="dev-farm"))
        out.append(payment(f"p-h2-{n}", "101.00", user_id="h2", at=at(), device_id="dev-farm"))
        out.append(payment(f"p-h4-{n}", "104.00", user_id="h4", merchant_id="m_200", at=at(),
                           device_id="dev-farm"))
    for n in range(2):
        out.append(payment(f"p-h3-{n}", "105.00", user_id="h3", merchant_id="m_300", at=at(),
                           device_id="dev-farm"))
    out.append(activation("a-n1", user_id="n1", at=at(), device_id="dev-n1"))
    for n in range(17):
        out.append(payment(f"p-n1-{n}", "150.00", user_id="n1", merchant_id="m_200", at=at(),
                           device_id="dev-n1"))
    out += [activation("a-n2", user_id="n2", at=at(), device_id="dev-pair"),
            payment("p-n2-0", "99.99", user_id="n2", merchant_id="m_200", at=at(),
                    device_id="dev-pair"),
            payment("p-n2-1", "95.00", user_id="n2", at=at(), device_id="dev-pair"),
            payment("p-n2-2", "94.99", user_id="n2", at=at(), device_id="dev-pair"),
            payment("p-n2-3", "101.00", user_id="n2", merchant_id="m_999", at=at()),
            payment("p-o1", "20.00", user_id="o1", merchant_id="m_999", at=at(),
                    device_id="dev-pair")]
    refunds = [("h1", "p-h1-0", "101.00", "m_100"), ("h1", "p-h1-1", "101.00", "m_100"),
               ("h1", "p-h1-2", "101.00", "m_100"), ("h2", "p-h2-0", "50.00", "m_100"),
               ("h2", "p-h2-1", "101.00", "m_100"), ("h3", "p-h3-0", "105.00", "m_300"),
               ("h3", "p-h3-1", "105.00", "m_300"), ("n1", "p-n1-0", "10.00", "m_200")]
    for user, original, amount, merchant in refunds:
        out.append(refund(f"r-{original}", original, amount, user_id=user, merchant_id=merchant,
                          at=at()))
    return out


def same_month() -> bool:
    """Whether a history placed at now (up to 200 minutes old) and now share a month of the
    program: not in the first 200 minutes of a month."""
    now = datetime.now(ZONE)
    return (now - timedelta(minutes=200)).month == now.month


@pytest.fixture(params=["now", "2026-12-01T00:05:00+08:00"])
def clock(request):
    """The real time, then 5 minutes into a month in the program's zone, where a history placed
    at now falls on the day and in the month before."""
    if request.param == "now":
        yield
    else:
        with time_machine.travel(request.param, tick=True):
            yield


def post_history(app, tmp_path, base: datetime) -> None:
    install_campaigns(app, CAMPAIGNS, tmp_path)
    wallet = new_wallet_client(app)
    for body in events(base):
        response = wallet.event(**body)
        assert response.status_code == 201, (body, response.json)


def install_policy(app, tmp_path) -> None:
    """The risk policy with a monthly cashback cap of 20.00, applied as marketing would."""
    from promo_engine.campaigns.files import load_paths
    from promo_engine.campaigns.store import apply_campaigns
    from promo_engine.service import promo_service
    path = tmp_path / "risk.yaml"
    path.write_text(POLICY)
    with app.app_context():
        service = promo_service(app)
        loaded = load_paths([path], registry=service.registry, currency="CNY",
                            default_timezone="Asia/Shanghai")
        assert not loaded.problems and loaded.risk_policy is not None
        apply_campaigns([], risk_policy=loaded.risk_policy)
        service.invalidate()
