"""Who is signed in, and starting and ending a session.

Sessions are Flask's signed cookies. Signing in clears the session and starts a new one
with a fresh nonce (rotation: a cookie captured before login is worth nothing after), and
stamps it with the login's `session_epoch`; signing out bumps the epoch, so an old copy of
the cookie is refused too.
"""
from __future__ import annotations

import functools
import secrets
from urllib.parse import urlsplit

from flask import abort, g, redirect, request, session, url_for

from promo_engine.extensions import db

from .models import PortalLogin


def current_user() -> PortalLogin | None:
    if "portal_user" not in g:
        user = None
        login_id = session.get("login_id")
        if isinstance(login_id, int):
            user = db.session.get(PortalLogin, login_id)
            if user is not None and user.session_epoch != session.get("epoch"):
                user = None
        g.portal_user = user
    return g.portal_user


def start_session(user: PortalLogin) -> None:
    lang = session.get("lang")
    session.clear()
    session["login_id"] = user.id
    session["epoch"] = user.session_epoch
    session["nonce"] = secrets.token_urlsafe(16)
    if lang:
        session["lang"] = lang
    session.permanent = True
    g.portal_user = user


def end_session() -> None:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    g.portal_user = None


def safe_next(target: str | None) -> str | None:
    """Only a path inside the portal: never another site."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/portal/") or "\\" in target:
        return None
    return target


def login_required(role: str | None = None):
    """Signed in (else to the login page); with `role`, only that role (else 404)."""
    def decorator(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            user = current_user()
            if user is None:
                nxt = request.full_path if request.method == "GET" else None
                return redirect(url_for("portal.login", next=safe_next(nxt)))
            if role is not None and user.role != role:
                if role == "merchant" and request.method == "GET" and \
                        request.endpoint == "portal.offers":
                    return redirect(url_for("portal.admin_campaigns"))
                abort(404)
            return view(user, *args, **kwargs)
        return wrapped
    return decorator
