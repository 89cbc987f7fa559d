"""A running service picks up campaigns applied from the command line within seconds."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from wallet import OPEN_RANGE, new_wallet_client, payment


def apply_from_cli(database_url: str, path) -> str:
    env = dict(os.environ, DATABASE_URL=database_url, SECRET_KEY="test-secret-key-0123456789")
    result = subprocess.run([sys.executable, "-m", "promo_engine.cli", "campaigns", "apply", str(path)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_service_sees_applied_campaign_within_seconds(app, tmp_path):
    wallet = new_wallet_client(app)
    before = wallet.event(**payment("p1", "100.00")).get_json()
    assert [r["campaign_id"] for r in before["rewards"]] == [None]

    campaign = tmp_path / "flash.yaml"
    campaign.write_text(f"id: flash-sale\ntype: holiday_discount\n{OPEN_RANGE}"
                        "params: {amount_off: \"5.00\"}\n")
    assert "created flash-sale" in apply_from_cli(app.config["SQLALCHEMY_DATABASE_URI"], campaign)

    deadline = time.monotonic() + 5
    seen_after = None
    n = 2
    while time.monotonic() < deadline:
        body = wallet.event(**payment(f"p{n}", "100.00")).get_json()
        if "flash-sale" in [r["campaign_id"] for r in body["rewards"]]:
            seen_after = time.monotonic()
            break
        n += 1
        time.sleep(0.1)
    assert seen_after is not None, "the applied campaign never reached the running service"

    campaign.write_text(f"id: flash-sale\ntype: holiday_discount\n{OPEN_RANGE}"
                        "params: {amount_off: \"7.00\"}\n")
    assert "updated flash-sale" in apply_from_cli(app.config["SQLALCHEMY_DATABASE_URI"], campaign)
    time.sleep(1.2)
    body = wallet.event(**payment("p_last", "100.00")).get_json()
    assert [(r["campaign_id"], r.get("amount")) for r in body["rewards"]] == [
        (None, None), ("flash-sale", "7.00")]
