"""Contract: client secrets are never written to logs."""
from __future__ import annotations

import logging

from wallet import WalletClient, new_wallet_client, payment


def test_secret_never_appears_in_any_log_record(app, caplog):
    caplog.set_level(logging.DEBUG)
    wallet = new_wallet_client(app)
    assert wallet.event(**payment("p1", "10.00")).status_code == 201
    forged = WalletClient(app.test_client(), wallet.key_id, wallet.secret[::-1])
    assert forged.event(**payment("p2", "10.00")).status_code == 401
    assert wallet.get("/v1/users/u_1/points").status_code == 200
    assert caplog.records, "nothing was logged, so the test would check nothing"
    for record in caplog.records:
        text = record.getMessage() + " " + repr(record.args) + " " + str(record.exc_text)
        assert wallet.secret not in text, record.name
        assert wallet.secret[::-1] not in text, record.name
