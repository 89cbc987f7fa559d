"""The wallet backend API: signed JSON over HTTP under /v1, plus operations endpoints."""
from flask import Blueprint

bp = Blueprint("api", __name__)

# Each module registers its routes and hooks on `bp`.
from . import auth, campaigns, errors, events, ops, openapi  # noqa: E402,F401
