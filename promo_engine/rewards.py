"""What campaign types propose and what the engine decides: typed, money in Decimal."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

POINTS = "points"
DISCOUNT = "discount"
CASHBACK = "cashback"
VOUCHER = "voucher"
MONEY_KINDS = frozenset({DISCOUNT, CASHBACK, VOUCHER})


@dataclass(frozen=True, slots=True)
class Reward:
    """One reward: `points` for kind points, otherwise `amount` + `currency`.

    `stacking_group`: at most one reward of a group is granted per event, the one with
    the highest `rank` (points multipliers do not compound).
    """
    kind: str
    campaign_id: str | None
    points: int | None = None
    amount: Decimal | None = None
    currency: str | None = None
    voucher_valid_days: int | None = None
    stacking_group: str | None = None
    rank: Decimal = Decimal(0)

    @property
    def is_money(self) -> bool:
        return self.kind in MONEY_KINDS

    def budget_cost(self, minor_digits: int) -> int:
        """What the reward takes from a budget: points, or money in minor units."""
        if self.is_money:
            return int(self.amount.scaleb(minor_digits))
        return self.points


def points_reward(points: int, campaign_id: str | None = None, **extra) -> Reward:
    return Reward(kind=POINTS, campaign_id=campaign_id, points=points, **extra)


def money_reward(kind: str, amount: Decimal, currency: str, campaign_id: str | None,
                 **extra) -> Reward:
    return Reward(kind=kind, campaign_id=campaign_id, amount=amount, currency=currency, **extra)
