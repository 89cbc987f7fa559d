"""The rules core imports neither Flask nor SQLAlchemy: the API, quotes and back-tests
share it, and nothing about persistence may leak into evaluation."""
from __future__ import annotations

import subprocess
import sys

CORE_MODULES = ["promo_engine.core.engine", "promo_engine.core.campaign_views",
                "promo_engine.core.campaign", "promo_engine.core.campaign_type",
                "promo_engine.core.event", "promo_engine.core.rewards", "promo_engine.core.money",
                "promo_engine.core.params", "promo_engine.core.registry",
                "promo_engine.core.hookspecs", "promo_engine.plugins.first_activation_bonus",
                "promo_engine.plugins.holiday_discount", "promo_engine.plugins.points_multiplier",
                "promo_engine.plugins.points_exchange", "promo_engine.core.compiled"]


def test_core_modules_import_no_web_or_database_framework():
    code = ("import sys\n"
            + "".join(f"import {name}\n" for name in CORE_MODULES)
            + "from promo_engine.core.registry import build_registry\nbuild_registry()\n"
            "leaked = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('flask', 'sqlalchemy', 'flask_sqlalchemy', 'werkzeug', 'redis', 'psycopg'))\n"
            "print(','.join(leaked))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={"PROMO_LOAD_ENTRY_POINTS": "0", "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
