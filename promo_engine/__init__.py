"""promo-engine: merchant rewards and promotions for a bank's digital wallet.

The packages, top to bottom (a package imports only those below it; setup.cfg's
import-linter contracts enforce it):

- `cli`, `consumer`, `api`: the interfaces (the command line, the Redis Stream consumer,
  the signed HTTP API); `app` builds the Flask app, `wsgi` serves it, `client` calls it.
- `service`: the engine of the open campaigns kept current, and the ledger it records into.
- `campaigns`: the YAML schema and files, the store, status transitions, the scheduler.
- `ledger`: models, the event write path, storage set-up, migrations.
- `coordination`: what processes share through Redis (reservations, replays, broadcasts,
  leases).
- `core`: events, campaigns, money, rewards, the rules engine and the plugin API, pure.
- `plugins`: the built-in campaign types, written against the core like any plugin.
"""
import sys

from promo_engine.core import campaign_type, event, hookspecs, money, params, registry, rewards
from promo_engine.core.campaign_type import CampaignType
from promo_engine.core.hookspecs import hookimpl

__all__ = ["CampaignType", "hookimpl"]
__version__ = "0.1.0"

# Plugins import these modules by the names they had before the core became a package
# (`from promo_engine.campaign_type import CampaignType`): the same modules answer to both.
for _module in (campaign_type, event, hookspecs, money, params, registry, rewards):
    sys.modules.setdefault(f"{__name__}.{_module.__name__.rpartition('.')[2]}", _module)
del _module
