"""The random identifiers handed out with rewards: reward ids (grants and their reversals
alike) and voucher codes.

A voucher code is a bearer secret of sorts: whoever types it at a till spends the voucher
(the owner check stops other wallets, not a cashier reading it aloud). So every character
comes from `secrets` (unguessable from the codes before it), and the alphabet leaves out
the characters people confuse when they read, type or hear a code:

- 0 and O, 1 and I and L: the classic look-alikes, in print and in handwriting;
- 2 and Z, 5 and S, 8 and B: close enough in many fonts (receipts, small screens) and when
  written by hand.

That leaves 25 symbols (20 letters, 5 digits). Upper case only: codes are compared exactly
(the API takes A-Z and 0-9). The default 12 characters hold 12 x log2(25), about 55.7
bits: 10,000 codes collide with a chance of about 1 in 10^9, and guessing one of a
million live codes takes about 5 x 10^10 tries. Fewer than 10 is refused (the contract's
minimum, and what the API accepts).
"""
from __future__ import annotations

import secrets

VOUCHER_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
VOUCHER_CODE_LENGTH = 12
MIN_VOUCHER_CODE_LENGTH = 10


def new_reward_id() -> str:
    return "rw_" + secrets.token_hex(10)


def new_voucher_code(length: int = VOUCHER_CODE_LENGTH) -> str:
    if length < MIN_VOUCHER_CODE_LENGTH:
        raise ValueError(f"a voucher code has at least {MIN_VOUCHER_CODE_LENGTH} characters")
    return "".join(secrets.choice(VOUCHER_ALPHABET) for _ in range(length))
