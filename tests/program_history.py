"""A small posted history for the program report's tests, every figure worked out by hand.

Asia/Shanghai (UTC+8), CNY. The range is 2026-06-01 (a Monday) to 2026-06-21 (a Sunday):
weeks W1 = Jun 1-7, W2 = Jun 8-14, W3 = Jun 15-21. Two campaigns: `welcome` (10.00 cashback
on a user's first activation) and `dining` (10% off at m_100).

user  activation (first)        first payment            payments in range (m_100: 10% off)
u1    Jun 1 10:00 (again Jun 10) Jun 3 (100.00 m_100)      Jun 3 100.00 -> 10.00, Jun 9 30.00 -> 3.00
u2    Jun 2 23:30 (15:30 UTC)    Jun 20 (18 days later)   Jun 20 200.00 -> 20.00, all refunded Jun 21
u3    Jun 7 23:59:30 (W1)        never
u4    Jun 8 00:00:10 (W2; still  Jun 15 00:00:09: 6 days   Jun 15 40.00 -> 4.00
      Jun 7 in UTC)              23:59:59 later
u5    Jun 10 12:00               Jun 17 12:00:01: 7 days  Jun 17 60.00 at m_999 (no discount)
                                 and 1 s later
u6    Jun 16 09:00               May 20 (before!)         Jun 18 80.00 -> 8.00
u7    May 1 (before the range)   May 2                    Jun 16 50.00 -> 5.00
u8    Jun 21 23:00               never
u9    Jun 22 08:00 (after)       never
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from wallet import OPEN_RANGE, activation, install_campaigns, new_wallet_client, payment, refund

FIRST_DAY, LAST_DAY = date(2026, 6, 1), date(2026, 6, 21)
LATER = datetime(2026, 8, 1, tzinfo=timezone.utc)   # every cohort's 30 days are over

CAMPAIGNS = f"""
id: welcome
name: Welcome cashback
type: first_activation_bonus
{OPEN_RANGE}params: {{on: activation, cashback: "10.00"}}
---
id: dining
name: Dining 10% off
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}params: {{percent: 10}}
"""


def at(text: str) -> str:
    return f"2026-{text}+08:00"


EVENTS = [
    activation("a7", user_id="u7", at=at("05-01T10:00:00")),
    payment("p7a", "20.00", user_id="u7", merchant_id="m_999", at=at("05-02T10:00:00")),
    payment("p6a", "20.00", user_id="u6", merchant_id="m_999", at=at("05-20T10:00:00")),
    activation("a1", user_id="u1", at=at("06-01T10:00:00")),
    activation("a2", user_id="u2", at=at("06-02T23:30:00")),
    payment("p1a", "100.00", user_id="u1", at=at("06-03T12:00:00")),
    activation("a3", user_id="u3", at=at("06-07T23:59:30")),
    activation("a4", user_id="u4", at=at("06-08T00:00:10")),
    payment("p1b", "30.00", user_id="u1", at=at("06-09T12:00:00")),
    activation("a1b", user_id="u1", at=at("06-10T08:00:00")),
    activation("a5", user_id="u5", at=at("06-10T12:00:00")),
    payment("p4", "40.00", user_id="u4", at=at("06-15T00:00:09")),
    activation("a6", user_id="u6", at=at("06-16T09:00:00")),
    payment("p7b", "50.00", user_id="u7", at=at("06-16T12:00:00")),
    payment("p5", "60.00", user_id="u5", merchant_id="m_999", at=at("06-17T12:00:01")),
    payment("p6b", "80.00", user_id="u6", at=at("06-18T12:00:00")),
    payment("p2", "200.00", user_id="u2", at=at("06-20T12:00:00")),
    refund("r2", "p2", "200.00", user_id="u2", at=at("06-21T10:00:00")),
    activation("a8", user_id="u8", at=at("06-21T23:00:00")),
    activation("a9", user_id="u9", at=at("06-22T08:00:00")),
]


def post_history(app, tmp_path) -> None:
    install_campaigns(app, CAMPAIGNS, tmp_path)
    wallet = new_wallet_client(app)
    for body in EVENTS:
        response = wallet.event(**body)
        assert response.status_code == 201, (body, response.json)
