"""What campaign types propose and what the engine decides: typed, money in Decimal."""
from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

POINTS = "points"
DISCOUNT = "discount"
CASHBACK = "cashback"
VOUCHER = "voucher"
MONEY_KINDS = frozenset({DISCOUNT, CASHBACK, VOUCHER})


class Reward(NamedTuple):
    """One reward: `points` for kind points, otherwise `amount` + `currency`.

    `stacking_group`: at most one reward of a group is granted per event, the one with
    the highest `rank` (points multipliers do not compound).

    A voucher carries its terms: `voucher_valid_days` (from when it is granted) and
    `voucher_min_amount` (the payment amount it needs to be used; None: any payment).

    A NamedTuple, not a frozen dataclass: it is built for every reward on the hot path and
    costs a quarter as much to make, while being just as immutable.
    """
    kind: str
    campaign_id: str | None
    points: int | None = None
    amount: Decimal | None = None
    currency: str | None = None
    voucher_valid_days: int | None = None
    stacking_group: str | None = None
    rank: Decimal = Decimal(0)
    voucher_min_amount: Decimal | None = None

    @property
    def is_money(self) -> bool:
        return self.kind in MONEY_KINDS

    def budget_cost(self, minor_digits: int) -> int:
        """What the reward takes from a budget: points, or money in minor units."""
        if self.kind in MONEY_KINDS:
            return int(self.amount.scaleb(minor_digits))
        return self.points


# Skips NamedTuple's keyword handling: these two run for every reward. The tuples below list
# every field in declaration order, so a new field must be added to both.
_new = tuple.__new__
_NO_RANK = Decimal(0)


def points_reward(points: int, campaign_id: str | None = None, *,
                  stacking_group: str | None = None, rank: Decimal = _NO_RANK) -> Reward:
    return _new(Reward, (POINTS, campaign_id, points, None, None, None, stacking_group, rank,
                         None))


def money_reward(kind: str, amount: Decimal, currency: str, campaign_id: str | None, *,
                 voucher_valid_days: int | None = None,
                 voucher_min_amount: Decimal | None = None) -> Reward:
    return _new(Reward, (kind, campaign_id, None, amount, currency, voucher_valid_days, None,
                         _NO_RANK, voucher_min_amount))
