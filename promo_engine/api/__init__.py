"""The wallet backend API: signed JSON over HTTP under /v1, plus operations endpoints, and
the path from a JSON body to the ledger that the stream consumer shares (`recording`).

An interface on top: it may import the service and everything below it.
"""
from flask import Blueprint

bp = Blueprint("api", __name__)

# Each module registers its routes and hooks on `bp`.
from promo_engine.api import (auth, campaigns, errors, events, offers, openapi,  # noqa: E402,F401
                              ops, wallet_reads)
