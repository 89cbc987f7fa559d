"""The portal's icon, /portal/static/favicon.svg, which every page links to; and /favicon.ico,
which browsers and other tools ask for on their own, sent on to it rather than answered 404."""
from __future__ import annotations

from flask import redirect, url_for

from merchant_portal import bp

ICON = "favicon.svg"


@bp.record_once
def _add_favicon_route(state) -> None:
    state.app.add_url_rule("/favicon.ico", "favicon", favicon)


def favicon():
    response = redirect(url_for("portal.static", filename=ICON), code=302)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
