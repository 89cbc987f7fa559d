"""The back-test: an events file replayed against campaigns with the service's own rules, in
memory, writing nothing.

The decisions are the pure engine's (`RulesEngine`, compiled from the campaigns as the
service compiles the open ones), asked with a gate on dicts (`memory_ledger.MemoryGate`) in
place of the ledger's. What the ledger does around them is done here the same way, step for
step: the user's counters before the event (activations, payments, the last payment's time,
the points balance, uses of each campaign ever and per local day), the counts and balance
after it, refunds reversing a payment's rewards in proportion (`ledger/reversal_math.py`,
shared with the ledger) and giving budget back, a full refund freeing the user's counts,
spending points (burns, exchanges, `redeem_points`) and cancels. An event the service would
refuse (a refund of an unknown payment, too few points, ...) is refused here with the
service's message.

Devices' uses (`limits.per_device`) and the risk policy's counters and holds are kept as the
ledger keeps them (`memory_risk.py`); held rewards count as granted, as the service's do
until an admin decides. There is no denylist in a back-test.

Each campaign counts as open over its own [starts_at, ends_at), whatever its status.
"""
from __future__ import annotations

from dataclasses import fields as dataclass_fields
from datetime import datetime
from decimal import Decimal
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from promo_engine.api.requests import canonical_body_hash
from promo_engine.backtest.events_file import EventsFile, FileProblem
from promo_engine.backtest.memory_ledger import (BASE, GRANT, SPENT, CampaignTally, Kept,
                                                 MemoryGate, UserHistory, reward_value)
from promo_engine.backtest.memory_risk import NO_USES, DeviceHistory, MemoryRisk
from promo_engine.backtest.results import CampaignDay, CampaignResult, SimulationResult
from promo_engine.core import money
from promo_engine.core.campaign import Campaign
from promo_engine.core.campaign_type import UserState
from promo_engine.core.engine import RulesEngine
from promo_engine.core.event import ACTIVATION, CANCEL, PAYMENT, REDEMPTION, REFUND, Event
from promo_engine.core.registry import Registry
from promo_engine.core.risk import RiskPolicy
from promo_engine.ledger.outcomes import LedgerError
from promo_engine.ledger.reversal_math import refund_share, reversal_delta

# A UserHistory can stand for the UserState the engine reads when it has every field of it.
_STATE_FIELDS = tuple(f.name for f in dataclass_fields(UserState))
_AS_STATE = set(_STATE_FIELDS) <= set(UserHistory.__slots__)


class Simulator:
    def __init__(self, campaigns: Iterable[Campaign], registry: Registry, *, currency: str,
                 points_per_unit: Decimal, point_value: Decimal, timezone: str,
                 risk_policy: RiskPolicy | None = None):
        self.currency = currency
        self.minor_digits = money.minor_digits(currency)
        self.zone = ZoneInfo(timezone)
        self.engine = RulesEngine.compile(
            campaigns, registry, currency=currency, points_per_unit=points_per_unit,
            point_value=point_value, minor_digits=self.minor_digits, risk_policy=risk_policy)
        self.gate = MemoryGate(self.minor_digits)
        self.users: dict[str, UserHistory] = {}
        self.devices: dict[str, DeviceHistory] = {}
        # The counters only matter to a policy in force (the ledger writes them anyway).
        self.risk = (MemoryRisk(self.zone, self.minor_digits)
                     if self.engine.risk is not None else None)
        self.kept: dict[str, Kept] = {}  # payments and redemptions later lines name
        self.tallies = {campaign_id: CampaignTally(compiled)
                        for campaign_id, compiled in self.engine.campaigns.items()}
        self.referenced: set[str] = set()
        self.repeatable: set[str] = set()
        self.seen: dict[str, tuple[str, int]] = {}  # repeatable id -> (body hash, line)
        self.events = 0
        self.skipped = 0
        self.base_points = 0
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None

    # -- the file --------------------------------------------------------------------------

    def run(self, events_file: EventsFile, *, skip_invalid: bool = False,
            progress: Callable[[int], None] | None = None,
            on_skip: Callable[[int, str], None] | None = None) -> SimulationResult:
        """Simulate every line; FileProblem at the first line the service would refuse
        (or out of order), unless `skip_invalid`, which counts and skips them (and tells
        `on_skip` the line and why)."""
        index = events_file.index(progress)
        self.referenced, self.repeatable = index.referenced, index.maybe_repeated
        repeatable, record = self.repeatable, self.record
        for number, event, body, problem in events_file.events(progress):
            if problem is None and event.event_id in repeatable:
                problem = self._repeat(event, body, number)
                if problem is False:  # the same body again: the service replays it
                    self.events += 1
                    continue
            if problem is None:
                try:
                    record(event)
                except LedgerError as exc:
                    problem = f"{exc.code}: {exc.message}"
                else:
                    if event.event_id in repeatable:
                        self.seen[event.event_id] = (canonical_body_hash(body), number)
                    continue
            if not skip_invalid:
                raise FileProblem(events_file.path, number, problem)
            self.skipped += 1
            if on_skip is not None:
                on_skip(number, problem)
        return self.result()

    def _repeat(self, event: Event, body: dict, number: int):
        """False for a line repeating an event recorded before with the same body (the
        service answers it as a replay, changing nothing); the conflict's message for one
        with another body; None for an id not seen yet."""
        earlier = self.seen.get(event.event_id)
        if earlier is None:
            return None
        if earlier[0] == canonical_body_hash(body):
            return False
        return (f"idempotency_conflict: event_id {event.event_id} was already used with a "
                f"different body (line {earlier[1]})")

    # -- one event, as the ledger records it -------------------------------------------------

    def record(self, event: Event) -> None:
        """Record the event in memory; LedgerError (nothing changed) where the service
        would refuse it."""
        kind = event.type
        if kind == REFUND:
            self._refund(event)
        elif kind == CANCEL:
            self._cancel(event)
        elif kind == REDEMPTION or event.redeem_points or event.vouchers:
            self._spending(event)
        else:
            self._grants(event)
        self.events += 1
        if self.first_at is None:
            self.first_at = event.occurred_at
        self.last_at = event.occurred_at

    def _user(self, user_id: str) -> UserHistory:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserHistory(user_id)
        return user

    def _state(self, event: Event, user: UserHistory) -> UserState:
        """The engine's view of the user: the user's history itself, which has every
        field of UserState (checked once, see `_AS_STATE`), or else a copy."""
        if _AS_STATE:
            return user
        return UserState(**{name: getattr(user, name) for name in _STATE_FIELDS
                            if hasattr(user, name)})

    def _prepare(self, event: Event, user: UserHistory) -> DeviceHistory | None:
        """Hand the user the event's device uses and risk counters, as the ledger reads
        them under the device's lock; the event's device (None without a device_id)."""
        device_id = event.device_id
        device = None
        if device_id is None:
            user.device_uses = user.device_daily_uses = NO_USES
        else:
            device = self.devices.get(device_id)
            if device is None:
                device = self.devices[device_id] = DeviceHistory()
            user.device_uses, user.device_daily_uses = device.uses, device.daily_uses
        if self.risk is not None:
            user.risk = self.risk.counters(event, device)
        return device

    def _grants(self, event: Event) -> None:
        """A payment, activation or plugin event (`ledger/grants.py`)."""
        user = self._user(event.user_id)
        device = self._prepare(event, user)
        gate = self.gate
        gate.at = event.occurred_at
        decision = self.engine.evaluate(event, self._state(event, user), gate)
        kept = self._keep(event)
        if decision.grants:
            self._book(event, user, decision.grants, kept, device)
        self._count(event, user)

    def _keep(self, event: Event) -> Kept | None:
        """A record of the event's rewards when a later line names it."""
        if event.event_id not in self.referenced or event.type not in (PAYMENT, REDEMPTION):
            return None
        amount = money.to_minor(event.amount, self.currency) if event.amount is not None else 0
        kept = self.kept[event.event_id] = Kept(event.user_id, event.type == PAYMENT, amount,
                                                event.device_id)
        return kept

    @staticmethod
    def _count(event: Event, user: UserHistory) -> None:
        """The user's counters after the event (the ledger's update of the users row)."""
        if event.type == PAYMENT:
            user.payments += 1
            user.last_payment_at = event.occurred_at
        elif event.type == ACTIVATION:
            user.activations += 1

    def _book(self, event: Event, user: UserHistory, grants, kept: Kept | None,
              device: DeviceHistory | None) -> None:
        """The decision's rewards: the balance, the user's and the device's uses of each
        campaign, the risk counters, and the campaign's figures."""
        minor_digits = self.minor_digits
        if self.risk is not None:
            self.risk.count(event, grants, device)
        for grant in grants:
            reward = grant.reward
            is_points, value = reward_value(reward, minor_digits)
            campaign = grant.campaign
            if is_points:
                user.points_balance += value
            if campaign is None:  # base points
                self.base_points += value
                if kept is not None:
                    kept.rewards.append([BASE, None, True, value, None, 0, False])
                continue
            campaign_id, local_day = campaign.id, grant.local_day
            user.campaign_uses[campaign_id] = user.campaign_uses.get(campaign_id, 0) + 1
            daily = user.daily_uses
            if len(daily) > 8:
                user.forget_old_days(event.occurred_at.date())
                daily = user.daily_uses
            key = (campaign_id, local_day)
            daily[key] = daily.get(key, 0) + 1
            if device is not None:
                device.used(campaign_id, local_day, event.occurred_at.date())
            tally = self.tallies[campaign_id]
            tally.granted(user, campaign_id, is_points, value, local_day)
            if grant.held:
                tally.held += 1
            if kept is not None:
                kept.rewards.append([GRANT, campaign_id, is_points, value, local_day, 0,
                                     grant.held])

    # -- refunds and cancels --------------------------------------------------------------

    def _refund(self, event: Event) -> None:
        """`ledger/refunds.py`: reverse the payment's rewards in proportion to what has been
        refunded in all; give the campaigns their budget back; free the user's counts once
        the payment is refunded in full."""
        user = self.users.get(event.user_id)
        kept = self.kept.get(event.original_event_id)
        if user is None or kept is None or not kept.is_payment or \
                kept.user_id != event.user_id:
            raise LedgerError("unknown_payment",
                              f"no payment {event.original_event_id} of user {event.user_id}",
                              field="original_event_id")
        refunded, full, share = refund_share(
            kept.amount_minor, kept.refunded_minor, money.to_minor(event.amount, self.currency),
            self.currency)
        kept.refunded_minor = refunded
        for entry in kept.rewards:
            role, campaign_id, is_points, value, local_day, so_far, held = entry
            delta = reversal_delta(value, share, so_far)
            if delta:
                entry[5] = so_far - delta
                if is_points:
                    user.points_balance -= delta
                if role == BASE:
                    self.base_points -= delta
                elif role == GRANT:
                    self.gate.give_back(campaign_id, delta, 0)
                    whole = value == delta - so_far
                    tally = self.tallies[campaign_id]
                    tally.reversed(user, campaign_id, is_points, delta, event.occurred_at, whole)
                    if whole and held:
                        tally.held -= 1
            if role == GRANT and full:
                self._free(user, campaign_id, local_day, kept.device_id)

    def _free(self, user: UserHistory, campaign_id: str, local_day,
              device_id: str | None) -> None:
        """`refunds.free_limits`: the reward no longer counts against any limit (the
        device's of the event it was granted for included)."""
        self.gate.give_back(campaign_id, 0, 1)
        user.campaign_uses[campaign_id] = user.campaign_uses.get(campaign_id, 0) - 1
        key = (campaign_id, local_day)
        if key in user.daily_uses:
            user.daily_uses[key] -= 1
        if device_id is not None:
            self.devices[device_id].freed(campaign_id, local_day)

    def _cancel(self, event: Event) -> None:
        """`ledger/cancels.py`: a redemption undone whole."""
        user = self.users.get(event.user_id)
        kept = self.kept.get(event.original_event_id)
        if user is None or kept is None or kept.is_payment or \
                kept.user_id != event.user_id:
            raise LedgerError("unknown_redemption",
                              f"no redemption {event.original_event_id} of user {event.user_id}",
                              field="original_event_id")
        if kept.cancelled:
            raise LedgerError("already_cancelled",
                              f"redemption {event.original_event_id} was already cancelled",
                              field="original_event_id")
        kept.cancelled = True
        for role, campaign_id, is_points, value, local_day, _, held in kept.rewards:
            if is_points:
                user.points_balance -= value
            if role == GRANT:
                self._free(user, campaign_id, local_day, kept.device_id)
                self.gate.give_back(campaign_id, value, 0)
                tally = self.tallies[campaign_id]
                tally.reversed(user, campaign_id, is_points, value, event.occurred_at, True)
                if held:
                    tally.held -= 1

    # -- spending points ------------------------------------------------------------------

    def _spending(self, event: Event) -> None:
        """`ledger/spending.py`: a burn, an exchange, or a payment paid partly with points
        (or vouchers, which no file can know the codes of: refused as unknown)."""
        engine = self.engine
        user = self.users.get(event.user_id)
        if user is None:  # kept only once the event is recorded
            user = UserHistory(event.user_id)
        device = self._prepare(event, user)
        state = self._state(event, user)
        exchange, points, field_name = None, 0, "points"
        if event.type == REDEMPTION:
            if event.campaign_id is not None:
                field_name = "campaign_id"
                reason = engine.unavailable_reason(event, state)
                if reason is not None:
                    raise LedgerError("offer_unavailable", reason, field="campaign_id")
                exchange = engine.exchange_campaign(event.campaign_id)
                points = exchange.cost_points
            else:
                points = event.points
        elif event.redeem_points:
            field_name, points = "redeem_points", event.redeem_points
            discount = engine.points_discount(event)
            if discount > event.amount:
                raise LedgerError(
                    "validation_error", f"{event.redeem_points} points pay {discount}, more "
                    f"than the amount {event.amount}", field="redeem_points")
        if points and points > user.points_balance:
            raise LedgerError("insufficient_points",
                              f"{points} points are needed and {max(user.points_balance, 0)} are "
                              "available", field=field_name)
        if event.type == PAYMENT and event.vouchers:
            problems = [f"{code}: no such voucher for this user" for code in event.vouchers]
            raise LedgerError("voucher_unavailable",
                              "a voucher cannot be used on this payment: " + "; ".join(problems),
                              fields={"vouchers": problems})
        grants = ()
        if event.type != REDEMPTION or exchange is not None:
            self.gate.at = event.occurred_at
            grants = engine.evaluate(event, state, self.gate).grants
            if exchange is not None and not grants:
                raise LedgerError("offer_unavailable", self._why_full(exchange),
                                  field="campaign_id")
        self.users[event.user_id] = user
        kept = self._keep(event)
        if points:
            user.points_balance -= points
            if kept is not None:
                kept.rewards.append([SPENT, exchange.id if exchange is not None else None,
                                     True, -points, None, 0, False])
        if grants:
            self._book(event, user, grants, kept, device)
        self._count(event, user)

    def _why_full(self, exchange) -> str:
        """`spending._why_full`: which limit refused the exchange's reward."""
        redemptions = self.gate.redemptions.get(exchange.id, 0)
        if exchange.max_redemptions is not None and redemptions >= exchange.max_redemptions:
            return f"campaign {exchange.id} is out of stock ({exchange.max_redemptions} given)"
        if exchange.budget_limit is not None:
            return f"campaign {exchange.id} has no budget left for this reward"
        return f"campaign {exchange.id} has no stock or budget left"

    # -- the result -----------------------------------------------------------------------

    def result(self) -> SimulationResult:
        campaigns = [self._campaign_result(self.tallies[campaign_id])
                     for campaign_id in sorted(self.tallies)]
        return SimulationResult(
            currency=self.currency, events=self.events, skipped=self.skipped,
            base_points=self.base_points, campaigns=campaigns,
            totals_rewards=sum(c.rewards for c in campaigns),
            totals_cost=money.from_minor(sum(money.to_minor(c.cost, self.currency)
                                             for c in campaigns), self.currency),
            totals_points=sum(c.points for c in campaigns),
            first_day=self.first_at.astimezone(self.zone).date() if self.first_at else None,
            last_day=self.last_at.astimezone(self.zone).date() if self.last_at else None,
            holds=self.engine.risk is not None and self.engine.risk.hold_above is not None)

    def _campaign_result(self, tally: CampaignTally) -> CampaignResult:
        compiled = tally.compiled
        campaign = compiled.campaign
        budget = campaign.budget
        exhausted = self.gate.exhausted_at.get(compiled.id)
        currency = self.currency
        days = [CampaignDay(day=day, rewards=rewards, cost=money.from_minor(cost, currency),
                            points=points)
                for day, (rewards, cost, points) in sorted(tally.days.items())]
        return CampaignResult(
            campaign_id=compiled.id, name=campaign.name, type=campaign.type,
            timezone=campaign.timezone, rewards=tally.rewards, users=tally.users,
            cost=money.from_minor(tally.cost, currency), points=tally.points,
            budget_unit=None if budget is None else budget.unit,
            budget=None if budget is None else (
                budget.points if budget.points is not None else budget.amount),
            max_redemptions=campaign.limits.max_redemptions,
            budget_exhausted_at=None if exhausted is None else exhausted.astimezone(tally.zone),
            days=days, held=tally.held)
