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
