"""The portal's Flask extensions, created once and bound in `init_portal`."""
from flask import request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_wtf import CSRFProtect


def login_key() -> str:
    """Login attempts are counted per client address and email together."""
    email = (request.form.get("email") or "").strip().lower()[:254]
    return f"{request.remote_addr or '-'}|{email}"


csrf = CSRFProtect()
babel = Babel()
limiter = Limiter(key_func=login_key, default_limits=[], strategy="moving-window")


@limiter.request_filter
def _outside_the_portal() -> bool:
    """Only portal logins are limited by this extension. It hooks every request of the app,
    so the signed API (which limits its clients itself, api/rate_limit.py) skips it here
    rather than pay its per-request work on the events hot path."""
    return not request.path.startswith("/portal")
