"""How `RulesEngine.evaluate` decides an event: in priority order, evaluating a campaign's
reward only when it can still be granted.

The decision is exactly the full evaluation's (`RulesEngine._proposals` then `_apply`,
which explanations use because they must know every campaign's reward): the same grants,
the same questions to the gate in the same order. Only evaluators whose reward could not
change it are left uncalled:

* after an exclusive grant, nothing of lower priority is looked at at all;
* a stacking-group member whose type declares its group and rank
  (`CampaignType.stacking`, open to every plugin, the built-in `points_multiplier` among
  them) is only noted where it stands; when its group is settled the members are evaluated
  from the highest rank down, and the first one granted ends it. The full path evaluates
  them all and sorts the rewards by rank, which is the same order, so the same one wins.
  An undeclared member is evaluated at its place, as before.

A declared member is skipped only when a higher-ranked member is actually granted, so a
budget or a risk cap that refuses the winner still reaches the next one. Exclusive group
members are evaluated where they stand: whether they propose anything decides whether the
group is settled there, so that cannot be put off. Groups still open at the end are settled
one by one; with several of them (only third-party groups can make a second one) the order
of the gate's questions between groups depends on every member's reward, so the pending
members are then all evaluated first, as the full path does.

One difference is not in the decision: an evaluator that is not called cannot fail, so
`on_error` hears only of the failures of the campaigns that were evaluated.
"""
from __future__ import annotations

from bisect import bisect_right
from decimal import Decimal

from promo_engine.core.compiled import CompiledCampaign
from promo_engine.core.campaign_type import EvaluationContext, UserState
from promo_engine.core.event import Event
from promo_engine.core.grants import Gate, Grant, new, settle_group
from promo_engine.core.rewards import DISCOUNT, Reward


def checked_reward(compiled: CompiledCampaign, context: EvaluationContext, on_error):
    """The campaign's reward for the event, or None when it gives none or its evaluator
    fails (reported to `on_error`, as is a reward outside the group and rank its type
    declared: the lazy path trusted that declaration)."""
    try:
        reward = compiled.evaluate(context)
    except Exception as exc:  # one broken plugin skips its campaign, never the event
        on_error(compiled.campaign, exc)
        return None
    if reward is not None and compiled.stacking is not None and \
            not _as_declared(compiled, reward, on_error):
        return None
    return reward


def _as_declared(compiled: CompiledCampaign, reward: Reward, on_error) -> bool:
    """Whether the reward has the group and rank its type declared; if not, reported."""
    group, rank = compiled.stacking
    if reward.stacking_group == group and reward.rank == rank:
        return True
    on_error(compiled.campaign, ValueError(
        f"reward of stacking group {reward.stacking_group!r} rank {reward.rank}, not the "
        f"declared {group!r} rank {rank}"))
    return False


def _settle_lazily(members, gate: Gate | None, context, on_error):
    """`settle_group` over members (key, campaign, reward or None, local day) whose reward
    may not be evaluated yet (None): the highest-ranked whose reward exists and fits wins,
    and the ones below it are never evaluated. A key is (-rank, the campaign's sort_key),
    declared or from the reward: unique, so sorting compares keys only."""
    if len(members) > 1:
        members.sort()
    for _, member, reward, local_day in members:
        if reward is None:
            reward = checked_reward(member, context, on_error)
            if reward is None:
                continue
        if gate is None or gate.reserve(member, reward, local_day):
            return member, new(Grant, (reward, member.campaign, local_day, False))
    return None


def decide(candidates, event: Event, user: UserState, base: int, gate: Gate | None,
           payable: Decimal | None, on_error) -> list[Grant]:
    """The campaign grants for the event in priority order (base points aside): the rules
    of `RulesEngine._apply` (see there), asked as the candidates come."""
    granted: list[Grant] = []
    blocked_below = None  # priority of an exclusive campaign that applied
    settled: set[str] = set()
    # Group members waiting for the end: (key, group, campaign, reward or None, local day)
    pending = []
    first_group = None  # the group of the first of them
    mixed = False  # whether another group waits too
    keys = []  # the sort_key of each grant in `granted`, to insert group winners in order
    context = None  # built for the first campaign admitted
    occurred_at, amount = event.occurred_at, event.amount
    local_by_zone: dict = {}  # zone -> the event's local (weekday, time, day)
    for compiled in candidates:
        if blocked_below is not None and compiled.priority < blocked_below:
            break  # in priority order: nothing below an exclusive grant can apply
        # `compiled.admitted`'s questions, inlined (this loop runs for every candidate of
        # every event); tests/test_engine_lazy.py holds the two to the same decisions.
        if not (compiled.starts_at <= occurred_at < compiled.ends_at):
            continue
        if compiled.has_conditions:
            if compiled.min_amount is not None and \
                    (amount is None or amount < compiled.min_amount):
                continue
            if compiled.mcc is not None and event.mcc not in compiled.mcc:
                continue
            if compiled.channels is not None and event.channel not in compiled.channels:
                continue
            if compiled.attributes and not compiled.attributes_hold(event):
                continue
        local = local_by_zone.get(compiled.zone)
        if local is None:
            at = occurred_at.astimezone(compiled.zone)
            local = local_by_zone[compiled.zone] = (at.weekday(), at.time(), at.date())
        weekday, time_of_day, local_day = local
        if compiled.window_spans:
            for days, start, end in compiled.window_spans:
                if weekday in days and start <= time_of_day and \
                        (end is None or time_of_day < end):
                    break
            else:
                continue
        if compiled.user_checked:
            if compiled.per_user is not None and \
                    user.campaign_uses.get(compiled.id, 0) >= compiled.per_user:
                continue
            if compiled.per_user_daily is not None and \
                    user.daily_uses.get((compiled.id, local_day), 0) >= compiled.per_user_daily:
                continue
            if event.device_id is not None and \
                    (compiled.per_device is not None or compiled.per_device_daily is not None) \
                    and compiled.device_limit_reached(user, local_day):
                continue
            if compiled.targeted and not compiled.targets(user, occurred_at):
                continue
        if context is None:
            context = EvaluationContext(event=event, user=user, base_points=base)
        stacking = compiled.stacking
        if stacking is not None and not compiled.exclusive:
            group = stacking[0]
            if group not in settled:  # evaluated when its group is settled
                pending.append((compiled.stacking_key, group, compiled, None, local_day))
                if first_group is None:
                    first_group = group
                elif group != first_group:
                    mixed = True
            continue
        try:  # checked_reward, inlined
            reward = compiled.evaluate(context)
        except Exception as exc:  # one broken plugin skips its campaign, never the event
            on_error(compiled.campaign, exc)
            continue
        if reward is None:
            continue
        if stacking is not None and not _as_declared(compiled, reward, on_error):
            continue
        group = reward.stacking_group
        if group is not None:
            if group in settled:
                continue
            key = (-reward.rank, compiled.sort_key)
            if not compiled.exclusive:
                pending.append((key, group, compiled, reward, local_day))
                if first_group is None:
                    first_group = group
                elif group != first_group:
                    mixed = True
                continue
            members = [p[:1] + p[2:] for p in pending if p[1] == group]
            members.append((key, compiled, reward, local_day))
            winner = _settle_lazily(members, gate, context, on_error)
            if winner is not None:  # else the group is still open to lower members
                settled.add(group)
                _insert(granted, keys, *winner)
                if winner[0].exclusive:
                    blocked_below = winner[0].priority
            continue
        if reward.kind == DISCOUNT:
            # Stacked discounts never take the payment below zero.
            if payable <= 0:
                continue
            if reward.amount > payable:
                reward = reward._replace(amount=payable)
            if gate is not None and not gate.reserve(compiled, reward, local_day):
                continue
            payable -= reward.amount
        elif gate is not None and not gate.reserve(compiled, reward, local_day):
            continue
        granted.append(new(Grant, (reward, compiled.campaign, local_day, False)))
        keys.append(compiled.sort_key)
        if compiled.exclusive:
            blocked_below = compiled.priority
    if not pending:
        return granted
    if mixed:
        _settle_groups(pending, settled, gate, context, on_error, granted, keys)
    elif first_group not in settled:
        # Every pending member is above any exclusive grant (they came before the break).
        winner = _settle_lazily([p[:1] + p[2:] for p in pending], gate, context, on_error)
        if winner is not None:
            _insert(granted, keys, *winner)
    return granted


def _insert(granted: list[Grant], keys: list, compiled: CompiledCampaign, grant: Grant) -> None:
    """A group winner into `granted`, kept in priority order (keys are unique)."""
    position = bisect_right(keys, compiled.sort_key)
    keys.insert(position, compiled.sort_key)
    granted.insert(position, grant)


def _settle_groups(pending, settled: set[str], gate: Gate | None, context, on_error,
                   granted: list[Grant], keys: list) -> None:
    """Several groups still open at the end. The full path settles them in the order of
    their first proposal, which only the rewards tell: evaluate every member, then settle
    as it does."""
    evaluated = []
    for _, group, compiled, reward, local_day in pending:
        if group in settled:
            continue
        if reward is None:
            reward = checked_reward(compiled, context, on_error)
        if reward is not None:
            evaluated.append((compiled, reward, local_day))
    for proposal in evaluated:
        group = proposal[1].stacking_group
        if group in settled:
            continue
        settled.add(group)
        winner = settle_group([p for p in evaluated if p[1].stacking_group == group], gate)
        if winner is not None:
            _insert(granted, keys, *winner)


__all__ = ["checked_reward", "decide"]
