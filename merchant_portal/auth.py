"""Who is signed in, and starting and ending a session.

Sessions are Flask's signed cookies. Signing in clears the session and starts a new one
with a fresh nonce (rotation: a cookie captured before login is worth nothing after), and
stamps it with the login's `session_epoch`; signing out bumps the epoch, so an old copy of
the cookie is refused too.
"""
from __future__ import annotations

import functools
import re
import secrets
from urllib.parse import unquote

from flask import abort, g, redirect, request, session, url_for

from merchant_portal.models import PortalLogin
from promo_engine.ledger.extensions import db


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
    g.portal_session_started = True


def end_session() -> None:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    g.portal_user = None


def forget_failed_sign_in(response):
    """A request that signed someone in and then failed (5xx) must not hand out the new
    session: the client was never told it succeeded."""
    if response.status_code >= 500 and g.get("portal_session_started"):
        end_session()
    return response


# RFC 3986's characters of a path and query: no space, control character, backslash,
# quote or non-ASCII letter that a browser or a header could read differently.
URL_CHARACTERS = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{1,2000}")
PORTAL_PATH = "/portal/"


def safe_next(target: str | None) -> str | None:
    """Only a clean path inside the portal: never another site (`//host`, `/\\host`, a
    scheme), a way out of /portal/ (`..`), nor a header break (CR, LF)."""
    if not isinstance(target, str) or not target.startswith(PORTAL_PATH) \
            or not URL_CHARACTERS.fullmatch(target) or "//" in target:
        return None
    # Browsers read %2e%2e as `..`, and servers or proxies on the way may decode more:
    # judge the decoded path too.
    path = unquote(target.split("?", 1)[0])
    if "//" in path or "\\" in path or any(not char.isprintable() or char.isspace()
                                            for char in path):
        return None
    if any(segment in (".", "..") for segment in path.split("/")):
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
