"""Every hook promo-engine calls. Hooks are called with keyword arguments only."""
import pluggy

PROJECT = "promo_engine"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def promo_campaign_types():
    """Return a list of `CampaignType` instances this plugin provides.

    What a type may declare beside its evaluator (`triggers`, `reward_unit`, `cost_points`,
    `stacking`: the stacking group and rank of its rewards, so the engine evaluates lazily
    a member that a higher one beats) is the `CampaignType` contract in
    `core/campaign_type.py`, documented in docs/plugins.md; the built-in types use nothing
    else."""


@hookspec
def promo_event_types():
    """Return a list of extra event type names the API should accept (besides the built-ins)."""


@hookspec
def promo_campaign_opened(campaign, at):
    """The scheduler opened `campaign` (a `Campaign`) at `at` (aware UTC); once, after commit."""


@hookspec
def promo_campaign_closed(campaign, at):
    """The scheduler closed `campaign` (a `Campaign`) at `at` (aware UTC); once, after commit."""
