"""The program's risk policy: caps across all campaigns on what one user or one device may
earn in a day, on how many users one device may earn for, on the cashback one user may
receive in a month (money leaving the bank: an AML control), and cashback held for review
above a value.

Pure: the counters come in with the user's state and the decision goes out. The ledger
keeps the counters exact under the user's and the device's locks; the back-test keeps them
in memory. Days and months are the program's (PROMO_TIMEZONE), whatever a campaign's zone.

Only campaign rewards count: base points are neither counted nor refused. A refund does not
lower the counters: rewarded and refunded is how reward hunters work.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal

from promo_engine.core.rewards import CASHBACK, MONEY_KINDS


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """The policy as marketing or risk writes it (`campaigns/risk_policy.py` reads it);
    every rule is optional."""
    user_daily_rewarded_events: int | None = None
    user_daily_reward_amount: Decimal | None = None  # money in campaign rewards
    device_daily_rewarded_events: int | None = None
    device_daily_reward_amount: Decimal | None = None
    device_daily_users: int | None = None  # distinct users rewarded on one device
    user_monthly_cashback: Decimal | None = None
    hold_cashback_above: Decimal | None = None  # a cashback reward above this is held

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)


@dataclass(frozen=True, slots=True)
class RiskCounters:
    """What was counted before this event: the user's and its device's day and the user's
    month, in the program's timezone. Money in minor units of the program's currency."""
    user_day_events: int = 0
    user_day_minor: int = 0
    user_month_cashback_minor: int = 0
    device_day_events: int = 0
    device_day_minor: int = 0
    device_day_users: int = 0
    device_knows_user: bool = False  # the user was rewarded on the device today already


NO_COUNTS = RiskCounters()


def risk_day(occurred_at: datetime, zone: tzinfo) -> date:
    """The day the counters of an event belong to."""
    return occurred_at.astimezone(zone).date()


def risk_month(day: date) -> date:
    """The month of a day, as its first day."""
    return day.replace(day=1)


def usage_of(grants, minor_digits: int) -> tuple[int, int] | None:
    """(money in campaign rewards, of which cashback), both in minor units, of a decision's
    grants; None when no campaign rewarded the event (nothing to count)."""
    rewarded = False
    money = cashback = 0
    for grant in grants:
        if grant.campaign is None:
            continue
        rewarded = True
        reward = grant.reward
        if reward.kind in MONEY_KINDS:
            minor = int(reward.amount.scaleb(minor_digits))
            money += minor
            if reward.kind == CASHBACK:
                cashback += minor
    return (money, cashback) if rewarded else None


class CompiledRiskPolicy:
    """The policy in minor units, with the questions the engine asks of it."""

    __slots__ = ("policy", "minor_digits", "user_events", "user_minor", "device_events",
                 "device_minor", "device_users", "month_cashback_minor", "hold_above")

    def __init__(self, policy: RiskPolicy, minor_digits: int):
        def minor(amount):
            return None if amount is None else int(amount.scaleb(minor_digits))
        self.policy = policy
        self.minor_digits = minor_digits
        self.user_events = policy.user_daily_rewarded_events
        self.user_minor = minor(policy.user_daily_reward_amount)
        self.device_events = policy.device_daily_rewarded_events
        self.device_minor = minor(policy.device_daily_reward_amount)
        self.device_users = policy.device_daily_users
        self.month_cashback_minor = minor(policy.user_monthly_cashback)
        self.hold_above = policy.hold_cashback_above

    def refusal(self, counters: RiskCounters, has_device: bool) -> str | None:
        """Why the event may earn no campaign reward at all, or None."""
        if self.user_events is not None and counters.user_day_events >= self.user_events:
            return (f"the user's rewarded events today reached the risk policy's "
                    f"{self.user_events}")
        if has_device:
            if self.device_events is not None and counters.device_day_events >= self.device_events:
                return (f"the device's rewarded events today reached the risk policy's "
                        f"{self.device_events}")
            if self.device_users is not None and not counters.device_knows_user and \
                    counters.device_day_users >= self.device_users:
                return (f"the device's rewarded users today reached the risk policy's "
                        f"{self.device_users}")
        return None

    def gate(self, inner, counters: RiskCounters, has_device: bool) -> "RiskGate | None":
        """A gate that refuses a money reward the policy's money caps have no room for
        before asking `inner`; None when the policy caps no money."""
        user_left = (None if self.user_minor is None
                     else self.user_minor - counters.user_day_minor)
        device_left = (None if self.device_minor is None or not has_device
                       else self.device_minor - counters.device_day_minor)
        cashback_left = (None if self.month_cashback_minor is None
                         else self.month_cashback_minor - counters.user_month_cashback_minor)
        if user_left is None and device_left is None and cashback_left is None:
            return None
        return RiskGate(inner, self.minor_digits, user_left, device_left, cashback_left)

    def holds(self, reward) -> bool:
        """Whether a granted reward waits for an admin's review instead of being paid."""
        return self.hold_above is not None and reward.kind == CASHBACK and \
            reward.amount > self.hold_above


class RiskGate:
    """Wraps the ledger's gate (or none): a money reward must first fit what the policy's
    money caps leave for the user, its device and, for cashback, the user's month. Like
    every limit, a reward that does not fit is skipped, not cut down."""

    __slots__ = ("inner", "minor_digits", "user_left", "device_left", "cashback_left")

    def __init__(self, inner, minor_digits: int, user_left, device_left, cashback_left):
        self.inner = inner
        self.minor_digits = minor_digits
        self.user_left = user_left
        self.device_left = device_left
        self.cashback_left = cashback_left

    def reserve(self, campaign, reward, local_day) -> bool:
        if reward.kind not in MONEY_KINDS:
            return self.inner is None or self.inner.reserve(campaign, reward, local_day)
        cost = int(reward.amount.scaleb(self.minor_digits))
        cashback = reward.kind == CASHBACK
        if (self.user_left is not None and cost > self.user_left) or \
                (self.device_left is not None and cost > self.device_left) or \
                (cashback and self.cashback_left is not None and cost > self.cashback_left):
            return False
        if self.inner is not None and not self.inner.reserve(campaign, reward, local_day):
            return False
        if self.user_left is not None:
            self.user_left -= cost
        if self.device_left is not None:
            self.device_left -= cost
        if cashback and self.cashback_left is not None:
            self.cashback_left -= cost
        return True
