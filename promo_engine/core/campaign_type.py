"""The base a campaign-type plugin builds on, and what its evaluator is given.

A type is compiled once per campaign when campaigns are loaded; the evaluator it returns
is a plain callable on the hot path, so pluggy's dispatch never runs per event.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Optional

from marshmallow import Schema

from promo_engine.core.campaign import Campaign
from promo_engine.core.event import Event
from promo_engine.core.rewards import Reward
from promo_engine.core.risk import RiskCounters


@dataclass(frozen=True, slots=True)
class UserState:
    """What the ledger knows of a user before this event (the counts exclude it)."""
    user_id: str
    activations: int = 0
    payments: int = 0  # payments recorded, refunded ones included
    points_balance: int = 0
    # campaign id -> rewards granted and not fully refunded
    campaign_uses: Mapping[str, int] = field(default_factory=dict)
    # (campaign id, local calendar day) -> rewards granted that day
    daily_uses: Mapping[tuple[str, date], int] = field(default_factory=dict)
    # the latest occurred_at of those payments (aware); None: the user never paid
    last_payment_at: datetime | None = None
    # The event's device (`device_id`), as the counts of the user's: campaign id -> its
    # rewards on the device not fully refunded, and (campaign id, local day) -> that day's.
    device_uses: Mapping[str, int] = field(default_factory=dict)
    device_daily_uses: Mapping[tuple[str, date], int] = field(default_factory=dict)
    denied: bool = False  # the user or the event's device is on the denylist
    # What the program's risk policy counts (`core/risk.py`); None: nothing counted yet
    risk: Optional["RiskCounters"] = None


class EvaluationContext(NamedTuple):
    event: Event
    user: UserState
    base_points: int  # what the payment earns before any campaign (0 for other events)


Evaluator = Callable[[EvaluationContext], Optional[Reward]]


class Stacking(NamedTuple):
    """What `CampaignType.stacking` declares: the `stacking_group` and `rank` that every
    reward the campaign's evaluator returns carries."""
    group: str
    rank: Decimal


class CampaignType:
    """Subclass this, set `name` and `params_schema`, and implement `compile`.

    Register an instance from the `promo_campaign_types` hook.
    """
    name: ClassVar[str] = ""
    params_schema: ClassVar[type[Schema]]

    def triggers(self, params: Mapping[str, Any]) -> frozenset[str]:
        """The event types that can earn this campaign's reward."""
        raise NotImplementedError

    def reward_unit(self, params: Mapping[str, Any]) -> str:
        """'points' or 'money': which kind of budget the campaign may carry."""
        raise NotImplementedError

    def compile(self, campaign: Campaign) -> Evaluator:
        """Return the evaluator for one campaign (its params already validated)."""
        raise NotImplementedError

    def cost_points(self, params: Mapping[str, Any]) -> int | None:
        """The points a redemption spends for this campaign's reward, or None (the default).

        A type that returns a number is an exchange: its campaign applies only to a
        `redemption` event that names it by `campaign_id` (and whose type is in
        `triggers()`), never to any other event, and that redemption spends this many of
        the user's points for the reward. Every other rule (window, conditions, limits,
        budget, max_redemptions as its stock) holds for it as for any campaign.
        """
        return None

    def stacking(self, params: Mapping[str, Any]) -> Stacking | None:
        """The stacking group and rank of every reward this campaign gives, known before
        any event, or None (the default): not declared.

        Optional, and only a speed-up. A campaign that declares them is evaluated only when
        its reward could still win its group: the engine tries the group's members from
        the highest rank down and stops at the first that is granted, so a member that a
        higher one beats is never evaluated. Undeclared, the campaign is evaluated at its
        place in priority order, as it always was; the decisions are the same either way.
        A declared campaign whose evaluator returns a reward of another group or rank is
        reported as a failing campaign (see "When a plugin fails") and skipped.
        """
        return None

    def summary(self, params: Mapping[str, Any], currency: str) -> str:
        """One line for people, e.g. '15% off, at most 30.00 CNY'."""
        return self.name

    def localized_summary(self, params: Mapping[str, Any], currency: str,
                          language: str) -> str:
        """`summary` in `language` ('en' or 'zh'): the wallet shows offers in its user's
        language. A type without a translation for it gives its `summary`."""
        return self.summary(params, currency)
