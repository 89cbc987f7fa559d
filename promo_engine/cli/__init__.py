"""The `promo-engine` command line; each command group lives in its own module.

The topmost layer: it may import everything else (it builds the app, runs the server, the
scheduler and the consumer).
"""
from __future__ import annotations

import sys

import click

from promo_engine.config import ConfigError


def first_line(exc: BaseException) -> str:
    """The first line of a database driver's error (psycopg adds hint lines), for a
    one-line message."""
    reason = str(getattr(exc, "orig", None) or exc).strip()
    return reason.splitlines()[0] if reason else type(exc).__name__


class PromoGroup(click.Group):
    """Turns a configuration error into one clear line and exit status 2, no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"promo-engine: configuration error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=PromoGroup)
@click.version_option(package_name="promo-engine")
def main() -> None:
    """promo-engine: merchant rewards and promotions for a bank's wallet."""


from promo_engine.cli import (campaigns, clients, consume, db, demo_data, events,  # noqa: E402,F401
                              portal_accounts, program_report, reconcile, report, risk, scheduler,
                              serve, simulate, users, webhooks)
from promo_engine.cli import denylist, holds  # noqa: E402,F401
