"""Money as Decimal and integer minor units; never float.

Every amount that crosses a boundary (API, YAML, database) goes through here, so the
rounding rule (half-up to the currency's minor unit) lives in one place.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 minor-unit digits for the currencies a wallet is likely to run in. A currency
# missing here cannot be configured, which is better than guessing its exponent.
MINOR_DIGITS: dict[str, int] = {
    "CNY": 2, "HKD": 2, "MOP": 2, "TWD": 2, "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2,
    "SGD": 2, "MYR": 2, "THB": 2, "PHP": 2, "IDR": 2, "INR": 2, "AUD": 2, "NZD": 2,
    "CAD": 2, "BRL": 2, "MXN": 2, "ZAR": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2,
    "CZK": 2, "HUF": 2, "TRY": 2, "AED": 2, "SAR": 2, "ILS": 2, "RUB": 2, "VND": 0,
    "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "UGX": 0, "KWD": 3, "BHD": 3, "OMR": 3,
    "JOD": 3, "TND": 3,
}

MAX_PAYMENT = Decimal("1000000000")


class MoneyError(ValueError):
    """A value that cannot be read as money in the given currency."""


def minor_digits(currency: str) -> int:
    try:
        return MINOR_DIGITS[currency]
    except KeyError:
        raise MoneyError(f"unknown currency {currency!r}") from None


_QUANTA: dict[str, Decimal] = {code: Decimal(1).scaleb(-digits) for code, digits in MINOR_DIGITS.items()}


def quantum(currency: str) -> Decimal:
    """The currency's smallest unit, e.g. Decimal('0.01') (looked up, not computed: hot path)."""
    try:
        return _QUANTA[currency]
    except KeyError:
        raise MoneyError(f"unknown currency {currency!r}") from None


def round_half_up(value: Decimal, currency: str) -> Decimal:
    return value.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """Exact conversion; the amount must already be on the minor-unit grid."""
    scaled = amount.scaleb(minor_digits(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount} has more than {minor_digits(currency)} decimals")
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-minor_digits(currency)).quantize(quantum(currency))


def format_amount(amount: Decimal, currency: str) -> str:
    """Exactly the currency's minor digits, e.g. '15.00' or '-7.50'."""
    return str(amount.quantize(quantum(currency)))


def parse_amount(text: str, currency: str, *, allow_zero: bool = False,
                 maximum: Decimal | None = MAX_PAYMENT) -> Decimal:
    """Read a decimal string as money: no exponent, no more than the minor digits."""
    if not isinstance(text, str):
        raise MoneyError("must be a string such as \"12.50\", not a number")
    stripped = text.strip()
    if stripped != text or not stripped:
        raise MoneyError("must be a decimal string such as \"12.50\"")
    if any(c not in "0123456789.-" for c in stripped):
        raise MoneyError("must be a decimal string such as \"12.50\"")
    try:
        value = Decimal(stripped)
    except InvalidOperation:
        raise MoneyError("must be a decimal string such as \"12.50\"") from None
    if not value.is_finite():
        raise MoneyError("must be a finite decimal")
    digits = minor_digits(currency)
    if -value.as_tuple().exponent > digits:
        raise MoneyError(f"at most {digits} decimal places for {currency}")
    if value < 0 or (value == 0 and not allow_zero):
        raise MoneyError("must be greater than 0")
    if maximum is not None and value > maximum:
        raise MoneyError(f"must be at most {maximum}")
    return value.quantize(quantum(currency))
