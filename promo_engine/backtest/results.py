"""What a back-test found, as plain data: the simulator fills it in, and the command line's
`--json`, its text output and the HTML report all read it, so the three cannot disagree."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


@dataclass
class CampaignDay:
    """One local day (in the campaign's timezone) with any reward activity."""
    day: date
    rewards: int              # net campaign rewards granted that day (reversals subtract)
    cost: Decimal             # money rewards net, in the program currency
    points: int               # campaign points net


@dataclass
class CampaignResult:
    campaign_id: str
    name: str
    type: str
    timezone: str
    rewards: int
    users: int
    cost: Decimal
    points: int
    budget_unit: str | None   # "money" | "points" | None (no budget)
    budget: Decimal | int | None   # the budget (money as Decimal, points as int)
    max_redemptions: int | None
    budget_exhausted_at: datetime | None   # aware, in the campaign's zone
    days: list[CampaignDay]   # ascending
    held: int = 0             # of `rewards`, those the risk policy held for review


@dataclass
class SimulationResult:
    currency: str
    events: int
    skipped: int
    base_points: int
    campaigns: list[CampaignResult]        # in campaign id order
    totals_rewards: int
    totals_cost: Decimal
    totals_points: int
    first_day: date | None    # of the events (program timezone)
    last_day: date | None
    holds: bool = False       # a risk policy that holds rewards was simulated
