"""What the back-test keeps in memory in place of the ledger's tables: each user's counters,
the campaigns' budgets and redemptions (a gate on dicts, like `ledger/gates.py`'s
DatabaseGate on rows), the rewards of the payments a refund will name, and each campaign's
figures for the result.

Everything here is per user or per campaign; nothing is kept per event except the rewards
of the payments and redemptions that a later line of the file refunds or cancels.
"""
from __future__ import annotations

from datetime import date, datetime

from promo_engine.core.compiled import CompiledCampaign
from promo_engine.core.rewards import POINTS, Reward

# What a kept reward is to a refund (`Kept.rewards` entries):
BASE, SPENT, GRANT = 0, 1, 2  # base points; points a payment or redemption spent; a campaign's


class UserHistory:
    """A user's counters, as the ledger's users, user_campaign_usage and
    user_campaign_daily_usage rows hold them.

    Its attributes are named as `UserState`'s, the engine's view of a user, so that it can
    be handed to the engine as it is rather than copied into a new UserState for every
    event (`Simulator` checks that it has every field, and copies when it has not)."""

    __slots__ = ("user_id", "activations", "payments", "points_balance", "campaign_uses",
                 "daily_uses", "last_payment_at", "counted", "device_uses", "device_daily_uses",
                 "denied", "risk")

    def __init__(self, user_id: str):
        self.user_id = user_id
        self.activations = 0
        self.payments = 0  # refunded ones included
        self.points_balance = 0  # available at once and never expiring (see docs)
        self.campaign_uses: dict[str, int] = {}  # campaign id -> rewards not fully refunded
        self.daily_uses: dict[tuple[str, date], int] = {}  # (campaign id, local day) -> rewards
        self.last_payment_at: datetime | None = None  # occurred_at of the last payment
        # campaign id -> the user's rewards of it not fully reversed (the result's `users`)
        self.counted: dict[str, int] | None = None
        # The event's device and risk counters, set before each event (`Simulator._prepare`):
        # the engine reads them with the user's counters, as the ledger hands them over.
        self.device_uses: dict[str, int] = {}
        self.device_daily_uses: dict[tuple[str, date], int] = {}
        self.denied = False  # the back-test has no denylist
        self.risk = None

    def forget_old_days(self, utc_day: date) -> None:
        """Let go of daily uses no later event can ask for: the ledger reads only the
        local days within a day of an event's UTC date, and events come in order."""
        floor = date.fromordinal(utc_day.toordinal() - 1)
        self.daily_uses = {key: uses for key, uses in self.daily_uses.items()
                           if key[1] >= floor}


class Kept:
    """A payment (or redemption) a later refund (or cancel) names: what the ledger reads
    back from its event and reward rows then."""

    __slots__ = ("user_id", "is_payment", "amount_minor", "refunded_minor", "rewards",
                 "cancelled", "device_id")

    def __init__(self, user_id: str, is_payment: bool, amount_minor: int,
                 device_id: str | None = None):
        self.user_id = user_id
        self.device_id = device_id  # whose uses a full refund or a cancel gives back
        self.is_payment = is_payment  # else a redemption
        self.amount_minor = amount_minor
        self.refunded_minor = 0
        # [role, campaign id or None, is points, value, local day, reversed so far, held]
        self.rewards: list[list] = []
        self.cancelled = False


class MemoryGate:
    """The campaign-wide limits (budget, max_redemptions) as `DatabaseGate` keeps them in
    campaign_usage rows: a reward takes its cost and one redemption only if both fit."""

    def __init__(self, minor_digits: int):
        self.minor_digits = minor_digits
        self.spent: dict[str, int] = {}  # points, or money in minor units
        self.redemptions: dict[str, int] = {}
        self.exhausted_at: dict[str, datetime] = {}  # first event a reward did not fit
        self.at: datetime | None = None  # the occurred_at of the event being evaluated

    def reserve(self, compiled: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        campaign_id = compiled.id
        cost = reward.budget_cost(self.minor_digits)
        spent = self.spent.get(campaign_id, 0)
        redemptions = self.redemptions.get(campaign_id, 0)
        if (compiled.budget_limit is not None and spent + cost > compiled.budget_limit) or \
                (compiled.max_redemptions is not None and
                 redemptions + 1 > compiled.max_redemptions):
            if campaign_id not in self.exhausted_at:
                self.exhausted_at[campaign_id] = self.at
            return False
        self.spent[campaign_id] = spent + cost
        self.redemptions[campaign_id] = redemptions + 1
        return True

    def give_back(self, campaign_id: str, value: int, redemptions: int) -> None:
        """A reversal returns its value to the budget; a full refund (or a cancel) also
        the redemption."""
        self.spent[campaign_id] = self.spent.get(campaign_id, 0) - value
        if redemptions:
            self.redemptions[campaign_id] = self.redemptions.get(campaign_id, 0) - redemptions


class CampaignTally:
    """One campaign's figures so far, net of reversals, in total and per local day."""

    __slots__ = ("compiled", "zone", "rewards", "users", "cost", "points", "days", "held")

    def __init__(self, compiled: CompiledCampaign):
        self.compiled = compiled
        self.zone = compiled.zone
        self.rewards = 0
        self.users = 0
        self.cost = 0  # money rewards, in minor units
        self.points = 0
        self.days: dict[date, list[int]] = {}  # local day -> [rewards, cost, points]
        # rewards the risk policy held for review, of those in `rewards` (net of reversals)
        self.held = 0

    def granted(self, user: UserHistory, campaign_id: str, is_points: bool, value: int,
                day: date) -> None:
        self.rewards += 1
        figures = self.days.get(day)
        if figures is None:
            figures = self.days[day] = [0, 0, 0]
        figures[0] += 1
        if is_points:
            self.points += value
            figures[2] += value
        else:
            self.cost += value
            figures[1] += value
        counted = user.counted
        if counted is None:
            counted = user.counted = {}
        count = counted.get(campaign_id, 0)
        counted[campaign_id] = count + 1
        if not count:
            self.users += 1

    def reversed(self, user: UserHistory, campaign_id: str, is_points: bool, value: int,
                 at: datetime, whole: bool) -> None:
        """`value` of a reward reversed at `at`; `whole`: nothing of the reward is left,
        so it no longer counts (nor its user, if it was the user's last)."""
        day = at.astimezone(self.zone).date()
        figures = self.days.get(day)
        if figures is None:
            figures = self.days[day] = [0, 0, 0]
        if is_points:
            self.points -= value
            figures[2] -= value
        else:
            self.cost -= value
            figures[1] -= value
        if whole:
            self.rewards -= 1
            figures[0] -= 1
            count = user.counted[campaign_id] - 1
            user.counted[campaign_id] = count
            if not count:
                self.users -= 1


def reward_value(reward: Reward, minor_digits: int) -> tuple[bool, int]:
    """(is points, the value as the ledger's row holds it: points or minor units)."""
    if reward.kind == POINTS:
        return True, reward.points
    return False, int(reward.amount.scaleb(minor_digits))

