"""The portal's Flask extensions, created once and bound in `init_portal`."""
from flask import request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_wtf import CSRFProtect

from promo_engine.api.auth_failures import address_key


def client_address() -> str:
    """The address logins are counted under: the same as for failed API authentications
    (an IPv6 address as its /64, which one host usually has whole)."""
    return address_key(request.remote_addr)


def login_key() -> str:
    """Login attempts are counted per client address and email together."""
    email = (request.form.get("email") or "").strip().lower()[:254]
    return f"{client_address()}|{email}"


csrf = CSRFProtect()
babel = Babel()
limiter = Limiter(key_func=login_key, default_limits=[], strategy="moving-window")


@limiter.request_filter
def _outside_the_portal() -> bool:
    """Only portal logins are limited by this extension. It hooks every request of the app,
    so the signed API (which limits its clients itself, api/rate_limit.py) skips it here
    rather than pay its per-request work on the events hot path."""
    return not request.path.startswith("/portal")
