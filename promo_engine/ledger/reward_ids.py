"""The random identifiers handed out with rewards: reward ids (grants and their reversals
alike) and voucher codes."""
from __future__ import annotations

import secrets

VOUCHER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a till


def new_reward_id() -> str:
    return "rw_" + secrets.token_hex(10)


def new_voucher_code() -> str:
    return "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(12))
