"""The portal's session cookie, kept off the answers for static files.

The session is permanent, so Flask re-sends it with every answer to refresh its expiry. A
browser fetches the icon (and may fetch other static files) after the page, carrying the
cookie as it was then; if the customer meanwhile switched language or signed out, that late
answer would put the old session back. Static files never change the session, so their
answers leave the cookie alone.
"""
from __future__ import annotations

from flask import request
from flask.sessions import SecureCookieSessionInterface


class PortalSessions(SecureCookieSessionInterface):
    def should_set_cookie(self, app, session) -> bool:
        if request.endpoint is not None and request.endpoint.rsplit(".", 1)[-1] == "static":
            return False
        return super().should_set_cookie(app, session)
