"""The merchant portal: a Flask blueprint at /portal/ where merchants draft offers and the
bank approves them. `init_portal(app)` binds its extensions and registers it.

An interface on top, beside the API: it may import promo_engine's service and everything
below it (and the API's error handling and address rules, which it shares).
"""
from __future__ import annotations

import os
from datetime import timedelta

from flask import Blueprint, Flask

from merchant_portal.extensions import babel, csrf, limiter

bp = Blueprint("portal", __name__, url_prefix="/portal", template_folder="templates",
               static_folder="static", static_url_path="/static")


@bp.record_once
def _register_converters(state) -> None:
    """Before the blueprint's routes are added (they name these converters)."""
    from merchant_portal.converters import CONVERTERS
    state.app.url_map.converters.update(CONVERTERS)


DEVELOPMENT_ENVS = ("development", "dev")


def is_development(app: Flask) -> bool:
    return app.debug or os.environ.get("PROMO_ENV", "").lower() in DEVELOPMENT_ENVS


def init_portal(app: Flask) -> None:
    from merchant_portal import i18n
    settings = app.config["PROMO_SETTINGS"]
    # The session cookie is the portal's alone (the API signs requests instead).
    app.config.update(
        SESSION_COOKIE_NAME="promo_portal", SESSION_COOKIE_PATH="/portal",
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config.get("PORTAL_SECURE_COOKIES", not is_development(app)),
        PERMANENT_SESSION_LIFETIME=app.config.get("PORTAL_SESSION_LIFETIME", timedelta(hours=8)))
    # CSRF is checked by the portal blueprint itself (every POST under /portal); the
    # HMAC-signed API has no cookies and so no CSRF to defend against.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # the token lives as long as the session
    app.config.setdefault("RATELIMIT_STORAGE_URI", settings.redis_url or "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # Failed logins, per address and email, and per address across emails (spraying).
    app.config.setdefault("PORTAL_LOGIN_LIMIT", "5 per minute")
    app.config.setdefault("PORTAL_LOGIN_ADDRESS_LIMIT", "20 per 15 minutes")
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES",
                          os.path.join(os.path.dirname(__file__), "translations"))
    from merchant_portal.sessions import PortalSessions
    app.session_interface = PortalSessions()
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=i18n.select_locale)
    # Their routes and handlers register on `bp`.
    from merchant_portal import (admin_events, errors, favicon, holds,  # noqa: F401
                                 program, risk, views)
    app.register_blueprint(bp)
    app.extensions["portal_error_page"] = errors.error_page
