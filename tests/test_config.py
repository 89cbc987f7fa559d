"""An invalid environment value stops every command with one clear line and exit status 2."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from click.testing import CliRunner

from promo_engine.cli import main
from promo_engine.config import ConfigError, Settings

ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMO_REDIS_PREFIX", "PROMO_RESERVATION_TTL_MS",
            "PROMO_RESERVATION_GRACE_MS", "PROMO_RECONCILE_SECONDS", "PROMO_REPLAY_TTL_SECONDS",
            "PROMO_API_RATE_LIMIT", "PROMO_AUTH_FAILURE_LIMIT", "PROMO_TRUSTED_PROXIES",
            "PROMO_ALLOWED_ATTRIBUTES", "PROMO_RETENTION_DAYS")

COMMANDS = [
    ["db", "upgrade"],
    ["db", "current"],
    ["clients", "create", "wallet-backend", "--json"],
    ["clients", "list"],
    ["serve", "--port", "0"],
]

INVALID = [
    ("DATABASE_URL", "mysql://root@localhost/promo",
     "DATABASE_URL: 'mysql' is not supported; use sqlite or postgresql"),
    ("DATABASE_URL", "not a url", "DATABASE_URL: 'not a url' is not a database URL"),
    ("REDIS_URL", "localhost:6379",
     "REDIS_URL: 'localhost:6379' must start with redis://, rediss:// or unix://"),
    ("SECRET_KEY", "short", "SECRET_KEY: must be at least 16 characters"),
    ("PROMO_TIMEZONE", "Mars/Olympus_Mons",
     "PROMO_TIMEZONE: 'Mars/Olympus_Mons' is not an IANA time zone"),
    ("PROMO_CURRENCY", "XYZ", "PROMO_CURRENCY: 'XYZ' is not a supported ISO 4217 code"),
    ("PROMO_POINTS_PER_UNIT", "-1", "PROMO_POINTS_PER_UNIT: '-1' must be a number >= 0"),
    ("PROMO_POINTS_PER_UNIT", "NaN", "PROMO_POINTS_PER_UNIT: 'NaN' must be a number >= 0"),
    ("PROMO_POINTS_PER_UNIT", "one", "PROMO_POINTS_PER_UNIT: 'one' must be a number >= 0"),
    ("PROMO_REDIS_PREFIX", "my promo", "PROMO_REDIS_PREFIX: 'my promo' must be non-empty, "
     "without spaces"),
    ("PROMO_RESERVATION_TTL_MS", "50",
     "PROMO_RESERVATION_TTL_MS: '50' must be a whole number from 100 to 600000"),
    ("PROMO_RESERVATION_GRACE_MS", "-1",
     "PROMO_RESERVATION_GRACE_MS: '-1' must be a whole number from 0 to 600000"),
    ("PROMO_RECONCILE_SECONDS", "1.5",
     "PROMO_RECONCILE_SECONDS: '1.5' must be a whole number from 1 to 86400"),
    ("PROMO_REPLAY_TTL_SECONDS", "0",
     "PROMO_REPLAY_TTL_SECONDS: '0' must be a whole number from 1 to 2592000"),
    ("PROMO_API_RATE_LIMIT", "lots",
     "PROMO_API_RATE_LIMIT: 'lots' is not a rate such as 1000/second or 50 per minute"),
    ("PROMO_API_RATE_LIMIT", "0/second",
     "PROMO_API_RATE_LIMIT: '0/second' is not a rate such as 1000/second or 50 per minute"),
    ("PROMO_TRUSTED_PROXIES", "yes",
     "PROMO_TRUSTED_PROXIES: 'yes' must be a whole number from 0 to 10"),
    ("PROMO_AUTH_FAILURE_LIMIT", "fifty",
     "PROMO_AUTH_FAILURE_LIMIT: 'fifty' is not a rate such as 1000/second or 50 per minute"),
    ("PROMO_AUTH_FAILURE_LIMIT", "0 per minute",
     "PROMO_AUTH_FAILURE_LIMIT: '0 per minute' is not a rate such as 1000/second or "
     "50 per minute"),
    ("PROMO_ALLOWED_ATTRIBUTES", "segment, phone number",
     "PROMO_ALLOWED_ATTRIBUTES: 'phone number' is not an attribute name (1-64 characters "
     "of A-Z a-z 0-9 _ . : -, names separated by commas, e.g. segment,tier; none: no "
     "attributes)"),
    ("PROMO_ALLOWED_ATTRIBUTES", "segment,,tier",
     "PROMO_ALLOWED_ATTRIBUTES: an empty name is not an attribute name"),
    ("PROMO_RETENTION_DAYS", "0",
     "PROMO_RETENTION_DAYS: '0' must be a whole number from 1 to 36500"),
    ("PROMO_RETENTION_DAYS", "30d",
     "PROMO_RETENTION_DAYS: '30d' must be a whole number from 1 to 36500"),
]


@pytest.fixture
def valid_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {name: None for name in ENV_VARS}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'promo.db'}",
               SECRET_KEY="test-secret-key-0123456789")
    return env


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]))
@pytest.mark.parametrize("name,value,message", INVALID,
                         ids=[f"{name}={value}" for name, value, _ in INVALID])
def test_invalid_setting_stops_the_command_with_one_line(valid_env, tmp_path, args, name,
                                                          value, message):
    valid_env[name] = value
    result = CliRunner(env=valid_env).invoke(main, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"promo-engine: configuration error: {message}")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.parametrize("name,value,message", INVALID,
                         ids=[f"{name}={value}" for name, value, _ in INVALID])
def test_settings_from_env_refuses_the_invalid_value(tmp_path, name, value, message):
    env = {"SECRET_KEY": "test-secret-key-0123456789", name: value}
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        Settings.from_env(env, workdir=tmp_path)


def test_privacy_settings(tmp_path):
    settings = Settings.from_env({}, workdir=tmp_path)
    assert (settings.allowed_attributes, settings.retention_days) == (None, None)
    settings = Settings.from_env({"PROMO_ALLOWED_ATTRIBUTES": " tier, segment,tier ",
                                  "PROMO_RETENTION_DAYS": "180"}, workdir=tmp_path)
    assert (settings.allowed_attributes, settings.retention_days) == (("segment", "tier"), 180)
    settings = Settings.from_env({"PROMO_ALLOWED_ATTRIBUTES": "none"}, workdir=tmp_path)
    assert settings.allowed_attributes == ()


def test_defaults(tmp_path):
    settings = Settings.from_env({}, workdir=tmp_path)
    assert (settings.database_url, settings.redis_url, settings.timezone, settings.currency,
            settings.points_per_unit) == (f"sqlite:///{tmp_path / 'promo-engine.db'}", None,
                                          "Asia/Shanghai", "CNY", Decimal(1))


def test_default_secret_key_is_generated_once_and_kept(tmp_path):
    first = Settings.from_env({}, workdir=tmp_path).secret_key
    assert len(first) >= 32
    assert Settings.from_env({}, workdir=tmp_path).secret_key == first


def test_plain_postgresql_url_uses_the_psycopg_driver(tmp_path):
    settings = Settings.from_env({"DATABASE_URL": "postgresql://postgres@127.0.0.1/promo",
                                  "SECRET_KEY": "test-secret-key-0123456789"}, workdir=tmp_path)
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1/promo"


def test_redis_hot_path_defaults_and_values(tmp_path):
    defaults = Settings.from_env({}, workdir=tmp_path)
    assert (defaults.redis_prefix, defaults.reservation_ttl_ms, defaults.reservation_grace_ms,
            defaults.reconcile_seconds, defaults.replay_ttl_seconds, defaults.api_rate_limit) == (
        "{promo}", 5000, 5000, 60, 86400, "5000/second")
    chosen = Settings.from_env({"PROMO_REDIS_PREFIX": "{bank-a}", "PROMO_RESERVATION_TTL_MS": "2000",
                                "PROMO_RESERVATION_GRACE_MS": "0", "PROMO_RECONCILE_SECONDS": "30",
                                "PROMO_REPLAY_TTL_SECONDS": "3600",
                                "PROMO_API_RATE_LIMIT": "50 per minute"}, workdir=tmp_path)
    assert (chosen.redis_prefix, chosen.reservation_ttl_ms, chosen.reservation_grace_ms,
            chosen.reconcile_seconds, chosen.replay_ttl_seconds, chosen.api_rate_limit) == (
        "{bank-a}", 2000, 0, 30, 3600, "50 per minute")
    assert Settings.from_env({"PROMO_API_RATE_LIMIT": "none"}, workdir=tmp_path).api_rate_limit is None


def test_auth_failure_limit_default_value_and_off(tmp_path):
    assert Settings.from_env({}, workdir=tmp_path).auth_failure_limit == "50/minute"
    chosen = Settings.from_env({"PROMO_AUTH_FAILURE_LIMIT": "20 per 10 minutes"},
                               workdir=tmp_path)
    assert chosen.auth_failure_limit == "20 per 10 minutes"
    for off in ("none", "off"):
        assert Settings.from_env({"PROMO_AUTH_FAILURE_LIMIT": off},
                                 workdir=tmp_path).auth_failure_limit is None


def test_trusted_proxies_default_and_chosen(tmp_path):
    assert Settings.from_env({}, workdir=tmp_path).trusted_proxies == 0
    assert Settings.from_env({"PROMO_TRUSTED_PROXIES": "2"}, workdir=tmp_path).trusted_proxies == 2


def test_valid_values_are_taken(tmp_path):
    settings = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/2",
                                  "SECRET_KEY": "test-secret-key-0123456789",
                                  "PROMO_TIMEZONE": "Europe/Paris", "PROMO_CURRENCY": "JPY",
                                  "PROMO_POINTS_PER_UNIT": "0.5"}, workdir=tmp_path)
    assert (settings.redis_url, settings.timezone, settings.currency,
            settings.points_per_unit, settings.minor_digits) == (
        "redis://127.0.0.1:6379/2", "Europe/Paris", "JPY", Decimal("0.5"), 0)


def test_the_points_lifecycle_settings(tmp_path):
    settings = Settings.from_env({"SECRET_KEY": "test-secret-key-0123456789",
                                  "PROMO_POINTS_PENDING_DAYS": "7",
                                  "PROMO_POINTS_EXPIRE_MONTHS": "12",
                                  "PROMO_POINT_VALUE": "0.05"}, workdir=tmp_path)
    assert (settings.points_pending_days, settings.points_expire_months,
            settings.point_value) == (7, 12, Decimal("0.05"))
    defaults = Settings.from_env({"SECRET_KEY": "test-secret-key-0123456789"},
                                 workdir=tmp_path)
    assert (defaults.points_pending_days, defaults.points_expire_months,
            defaults.point_value) == (0, 0, Decimal("0.01"))
    # Without cents, a point is worth the currency's smallest unit unless set.
    yen = Settings.from_env({"SECRET_KEY": "test-secret-key-0123456789",
                             "PROMO_CURRENCY": "JPY"}, workdir=tmp_path)
    assert yen.point_value == Decimal(1)
    off = Settings.from_env({"SECRET_KEY": "test-secret-key-0123456789",
                             "PROMO_POINT_VALUE": "0"}, workdir=tmp_path)
    assert off.point_value == 0


@pytest.mark.parametrize("name, value, message", [
    ("PROMO_POINT_VALUE", "0.001", "PROMO_POINT_VALUE: '0.001' must be an amount >= 0 with at "
                                   "most 2 decimal places"),
    ("PROMO_POINT_VALUE", "-1", "PROMO_POINT_VALUE: '-1' must be an amount >= 0"),
    ("PROMO_POINT_VALUE", "abc", "PROMO_POINT_VALUE: 'abc' must be an amount >= 0"),
    ("PROMO_POINT_VALUE", "NaN", "PROMO_POINT_VALUE: 'NaN' must be an amount >= 0"),
    ("PROMO_POINTS_PENDING_DAYS", "-1", "PROMO_POINTS_PENDING_DAYS: '-1' must be a whole "
                                        "number from 0 to 3650"),
    ("PROMO_POINTS_EXPIRE_MONTHS", "1201", "PROMO_POINTS_EXPIRE_MONTHS: '1201' must be a "
                                           "whole number from 0 to 1200"),
])
def test_bad_points_settings_stop_start_up(tmp_path, name, value, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"SECRET_KEY": "test-secret-key-0123456789", name: value},
                          workdir=tmp_path)
    assert str(raised.value).startswith(message)
