"""Settings from the environment, validated once at start-up with a clear message."""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from promo_engine.core.money import MINOR_DIGITS

SECRET_FILE = ".promo-engine-secret"
MAX_BODY_BYTES = 64 * 1024  # an event, a quote or a stream message: larger gets 413
REDIS_PREFIX_ENV = "PROMO_REDIS_PREFIX"
DEFAULT_REDIS_PREFIX = "{promo}"


class ConfigError(Exception):
    """An environment setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    secret_key: str
    timezone: str
    currency: str
    points_per_unit: Decimal
    # With Redis (see reservations.py, replay_cache.py, broadcast.py, api/rate_limit.py).
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    reservation_ttl_ms: int = 5000
    reservation_grace_ms: int = 5000
    reconcile_seconds: int = 60
    replay_ttl_seconds: int = 86400
    # Per API client (a wallet backend is usually one client, so this caps its whole
    # traffic: set it above your peak); Redis keeps the counts across workers and hosts.
    api_rate_limit: str | None = "5000/second"
    # Failed authentications per remote address, after which its /v1/ requests get 429 until
    # the window passes (api/auth_failures.py); counted in Redis when configured.
    auth_failure_limit: str | None = "50/minute"
    # How many proxies or load balancers stand in front of the workers and add themselves
    # to X-Forwarded-For: the client's address is read that many hops back (0: the peer's).
    trusted_proxies: int = 0
    # The points lifecycle (ledger/lots.py): days a payment's points stay pending, months
    # until a lot expires (0: never), and what one point pays of a payment (0: off).
    points_pending_days: int = 0
    points_expire_months: int = 0
    point_value: Decimal = Decimal("0.01")
    # Webhooks (promo_engine/webhooks/): hours a delivery is retried before it is failed.
    webhook_retry_hours: int = 24
    # Privacy (docs/privacy.md): the only event attribute names accepted (None: any), and
    # the days after which the scheduler purges device ids and other personal details
    # (None: kept). Attribute names are kept sorted, so two workers state the same list.
    allowed_attributes: tuple[str, ...] | None = None
    retention_days: int | None = None

    @property
    def minor_digits(self) -> int:
        return MINOR_DIGITS[self.currency]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 workdir: Path | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        workdir = workdir or Path.cwd()
        return cls(
            database_url=_database_url(env.get("DATABASE_URL") or
                                       f"sqlite:///{workdir / 'promo-engine.db'}"),
            redis_url=_redis_url(env.get("REDIS_URL") or None),
            secret_key=_secret_key(env.get("SECRET_KEY"), workdir),
            timezone=check_timezone(env.get("PROMO_TIMEZONE", "Asia/Shanghai")),
            currency=check_currency(env.get("PROMO_CURRENCY", "CNY")),
            points_per_unit=_points_per_unit(env.get("PROMO_POINTS_PER_UNIT", "1")),
            redis_prefix=redis_prefix_from_env(env.get(REDIS_PREFIX_ENV, DEFAULT_REDIS_PREFIX)),
            reservation_ttl_ms=_whole_number(env, "PROMO_RESERVATION_TTL_MS", 5000, 100, 600_000),
            reservation_grace_ms=_whole_number(env, "PROMO_RESERVATION_GRACE_MS", 5000, 0, 600_000),
            reconcile_seconds=_whole_number(env, "PROMO_RECONCILE_SECONDS", 60, 1, 86_400),
            replay_ttl_seconds=_whole_number(env, "PROMO_REPLAY_TTL_SECONDS", 86_400, 1,
                                             30 * 86_400),
            api_rate_limit=check_rate_limit(env.get("PROMO_API_RATE_LIMIT", "5000/second")),
            auth_failure_limit=check_rate_limit(env.get("PROMO_AUTH_FAILURE_LIMIT", "50/minute"),
                                                "PROMO_AUTH_FAILURE_LIMIT"),
            trusted_proxies=_whole_number(env, "PROMO_TRUSTED_PROXIES", 0, 0, 10),
            points_pending_days=_whole_number(env, "PROMO_POINTS_PENDING_DAYS", 0, 0, 3650),
            points_expire_months=_whole_number(env, "PROMO_POINTS_EXPIRE_MONTHS", 0, 0, 1200),
            point_value=_point_value(env.get("PROMO_POINT_VALUE"),
                                     env.get("PROMO_CURRENCY", "CNY")),
            webhook_retry_hours=_whole_number(env, "PROMO_WEBHOOK_RETRY_HOURS", 24, 1, 720),
            allowed_attributes=check_allowed_attributes(env.get("PROMO_ALLOWED_ATTRIBUTES")),
            retention_days=_optional_whole_number(env, "PROMO_RETENTION_DAYS", 1, 36_500),
        )


def _database_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL: {value!r} is not a database URL "
                          "(e.g. postgresql://user@host/db or sqlite:///promo.db)") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"DATABASE_URL: {backend!r} is not supported; use sqlite or postgresql")
    if backend == "postgresql" and url.drivername == "postgresql":
        # psycopg 3 is the driver we ship; plain postgresql:// would look for psycopg2.
        value = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return value


def _redis_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL: {value!r} must start with redis://, rediss:// or unix://")
    return value


def _secret_key(value: str | None, workdir: Path) -> str:
    if value:
        if len(value) < 16:
            raise ConfigError("SECRET_KEY: must be at least 16 characters")
        return value
    # The embedded default keeps a generated key beside its database, so that stored
    # client secrets stay readable across restarts without any setup.
    path = workdir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(32)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"PROMO_TIMEZONE: {value!r} is not an IANA time zone "
                          "(e.g. Asia/Shanghai)") from None
    return value


def check_currency(value: str) -> str:
    if value not in MINOR_DIGITS:
        raise ConfigError(f"PROMO_CURRENCY: {value!r} is not a supported ISO 4217 code "
                          "(e.g. CNY)")
    return value


def _points_per_unit(value: str) -> Decimal:
    try:
        result = Decimal(value)
    except InvalidOperation:
        result = None
    if result is None or not result.is_finite() or result < 0:
        raise ConfigError(f"PROMO_POINTS_PER_UNIT: {value!r} must be a number >= 0 "
                          "(0 turns base points off)")
    return result


def _point_value(value: str | None, currency: str) -> Decimal:
    """Money per point: a decimal >= 0 with at most the currency's minor digits. Unset,
    0.01, or the currency's minor unit where it has fewer than two digits (1 yen)."""
    digits = MINOR_DIGITS.get(currency, 2)
    if value is None or value == "":
        return Decimal("0.01") if digits >= 2 else Decimal(1).scaleb(-digits)
    try:
        result = Decimal(value)
    except InvalidOperation:
        result = None
    if result is None or not result.is_finite() or result < 0 or \
            -result.as_tuple().exponent > digits or result > 1_000_000:
        raise ConfigError(f"PROMO_POINT_VALUE: {value!r} must be an amount >= 0 with at most "
                          f"{digits} decimal places, e.g. \"0.01\" (\"0\" turns paying "
                          "with points off)")
    return result


def _whole_number(env: Mapping[str, str], name: str, default: int, lowest: int, highest: int) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise ConfigError(f"{name}: {text!r} must be a whole number from {lowest} to {highest}")
    return int(text)


def _optional_whole_number(env: Mapping[str, str], name: str, lowest: int,
                           highest: int) -> int | None:
    """A whole number that may be left unset (None: the feature is off)."""
    text = env.get(name)
    if text is None or text.strip() == "":
        return None
    return _whole_number(env, name, 0, lowest, highest)


# The API's rule for attribute names (api/request_fields.py ATTRIBUTE_NAME): a name it
# would refuse anyway cannot be allowed.
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def check_allowed_attributes(value: str | None) -> tuple[str, ...] | None:
    """PROMO_ALLOWED_ATTRIBUTES: comma-separated attribute names, e.g. "segment,tier".
    Unset: any name is accepted. Set to an empty list: no attribute at all is accepted
    only when written as "none" (an empty value is taken as unset)."""
    if value is None or value.strip() == "":
        return None
    if value.strip().lower() == "none":
        return ()
    names = [name.strip() for name in value.split(",")]
    for name in names:
        if not _ATTRIBUTE_NAME.fullmatch(name):
            shown = repr(name) if name else "an empty name"
            raise ConfigError(f"PROMO_ALLOWED_ATTRIBUTES: {shown} is not an attribute name "
                              "(1-64 characters of A-Z a-z 0-9 _ . : -, names separated by "
                              "commas, e.g. segment,tier; none: no attributes)")
    return tuple(sorted(set(names)))


def redis_prefix_from_env(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ConfigError(f"{REDIS_PREFIX_ENV}: {value!r} must be non-empty, without spaces")
    return value


def check_rate_limit(value: str, name: str = "PROMO_API_RATE_LIMIT") -> str | None:
    """A `limits` rate such as "1000/second" or "50 per minute"; "none" turns it off."""
    if value.strip().lower() in ("", "none", "off"):
        return None
    from limits import parse
    try:
        if parse(value).amount < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a rate such as "
                          "1000/second or 50 per minute (none turns it off)") from None
    return value
