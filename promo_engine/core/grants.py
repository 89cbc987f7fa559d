"""What the engine decides (`Grant`, `Decision`), the `Gate` it asks about shared limits, and
the small steps of a decision both of its paths share (`core/lazy.py` for every event,
`RulesEngine._apply` for explanations), kept in one place so the two cannot drift apart.
"""
from __future__ import annotations

from datetime import date
from typing import NamedTuple, Protocol

from promo_engine.core.campaign import Campaign
from promo_engine.core.compiled import CompiledCampaign
from promo_engine.core.rewards import Reward
from promo_engine.core.risk import CompiledRiskPolicy

new = tuple.__new__  # builds the NamedTuples below without keyword handling (hot path)


class Gate(Protocol):
    def reserve(self, campaign: CompiledCampaign, reward: Reward, local_day: date) -> bool:
        """Take the reward from the campaign's budget and redemptions; False if it does not fit."""


class Grant(NamedTuple):
    reward: Reward
    campaign: Campaign | None  # None for base points
    local_day: date | None  # the event's calendar day in the campaign's timezone
    held: bool = False  # the risk policy holds it for an admin's review (`core/risk.py`)


class Decision(NamedTuple):
    grants: tuple[Grant, ...]
    base_points: int

    @property
    def points(self) -> int:
        return sum(g.reward.points for g in self.grants if g.reward.points is not None)


def by_rank(proposal) -> tuple:
    """Order of a stacking group's members: highest rank first, then priority order."""
    compiled, reward, _ = proposal
    return -reward.rank, compiled.sort_key


def settle_group(members, gate: Gate | None):
    """The member with the highest rank (then priority) whose reward fits, or None."""
    if len(members) > 1:
        members = sorted(members, key=by_rank)
    for member, reward, local_day in members:
        if gate is None or gate.reserve(member, reward, local_day):
            return member, new(Grant, (reward, member.campaign, local_day, False))
    return None


def insert_in_priority_order(granted: list[Grant], compiled: CompiledCampaign,
                             grant: Grant) -> None:
    """`granted` is in priority order but for group winners decided late; a few grants at
    most, so a scan beats sorting."""
    key = compiled.sort_key
    for position, other in enumerate(granted):
        if key < (-other.campaign.priority, other.campaign.id):
            granted.insert(position, grant)
            return
    granted.append(grant)


def mark_held(risk: CompiledRiskPolicy, grants: list[Grant]) -> None:
    """The grants the risk policy holds for review, marked in place."""
    for position, grant in enumerate(grants):
        if grant.campaign is not None and risk.holds(grant.reward):
            grants[position] = grant._replace(held=True)
