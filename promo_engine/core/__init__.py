"""The pure core: events, campaigns, money, rewards, the rules engine, and the campaign-type
API that plugins implement (`campaign_type`, `hookspecs`, `registry`).

It imports no web, database or Redis library, and nothing of promo_engine outside itself,
so the API, quotes, back-tests and plugins all evaluate with the same code. Everything else
in promo_engine may import it. (Enforced by import-linter: see setup.cfg.)
"""
