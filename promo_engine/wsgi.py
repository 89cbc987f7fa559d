"""The WSGI application configured from the environment: `gunicorn 'promo_engine.wsgi:app'`.

It does not migrate the schema: run `promo-engine db upgrade` before starting the server.
"""
from __future__ import annotations

import sys

from promo_engine.app import create_app
from promo_engine.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"promo-engine: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
