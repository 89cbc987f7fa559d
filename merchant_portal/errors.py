"""The portal's error pages: HTML, in the portal's layout (the API's are JSON)."""
from __future__ import annotations

from flask import render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError

from merchant_portal import bp

TITLES = {
    400: _l("The request could not be understood."),
    403: _l("You cannot do that."),
    404: _l("There is nothing here."),
    405: _l("That is not allowed here."),
    429: _l("Too many attempts. Wait a few minutes and try again."),
    500: _l("Something went wrong on our side. Please try again."),
    503: _l("The service is briefly unavailable. Please try again."),
}


def _page(code: int, message: str):
    return render_template("error.html", code=code, message=message), code


def error_page(code: int):
    """The page for an error no portal view handled (the API's handlers call it for portal
    URLs): an unknown URL, a failed backing service, a bug."""
    title = TITLES.get(code) or (TITLES[500] if code >= 500 else TITLES[400])
    return _page(code, str(title))


@bp.errorhandler(CSRFError)
def csrf_error(exc):
    return _page(400, _("The form had expired or was not sent from this site. "
                        "Reload the page and try again."))


for _code in TITLES:
    def _handler(exc, code=_code):
        return _page(code, str(TITLES[code]))
    bp.register_error_handler(_code, _handler)
