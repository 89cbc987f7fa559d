"""`promo-engine demo-data`: a synthetic wallet history as JSON Lines, for the quickstart,
back-tests and the portal's charts (the generator is promo_engine/backtest/demo_data.py)."""
from __future__ import annotations

import os
import sys
import tempfile
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import click

from promo_engine.backtest.demo_data import (DEFAULT_SEED, DEFAULT_START, MAX_DAYS, MAX_USERS,
                                             DemoOptions, DemoSummary, write_demo_data)
from promo_engine.cli import main
from promo_engine.config import check_currency, check_timezone

NAME = "promo-engine demo-data"


class OneLineErrors(click.Command):
    """A bad option is one line on standard error and exit status 2, not click's usage
    block: the command is run from scripts, whose logs should say what was wrong."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            _fail(exc.format_message(), status=2)


def _fail(message: str, *, status: int):
    click.echo(f"{NAME}: {message}", err=True)
    sys.exit(status)


@main.command("demo-data", cls=OneLineErrors)
@click.option("--users", type=int, required=True,
              help=f"Customers who activate the wallet over the period (1 to {MAX_USERS:,}).")
@click.option("--days", type=int, required=True,
              help=f"Length of the history in local days (1 to {MAX_DAYS}).")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
              help="Random seed: the same options and seed give the same bytes.")
@click.option("--start", default=DEFAULT_START.isoformat(), show_default=True,
              metavar="YYYY-MM-DD",
              help="First local day. Fixed, never today: the output does not depend on "
                   "when it is made.")
@click.option("--out", default="-", show_default=True, metavar="FILE",
              help="Where to write the JSON Lines; - is standard output.")
def demo_data(users: int, days: int, seed: int, start: str, out: str) -> None:
    """Write a synthetic wallet history as JSON Lines, one POST /v1/events body a line, in
    occurred_at order: activations, payments and refunds of USERS customers over DAYS days
    from --start, at merchants with real ISO 18245 category codes (the example campaigns'
    partners m_100, m_200, m_310, m_420 and m_530 among them).

    Times are in PROMO_TIMEZONE (default Asia/Shanghai) with lunch, dinner and commute
    peaks, busier weekends, the Spring Festival, the golden weeks and Double 11; amounts in
    PROMO_CURRENCY (default CNY). About 22% of customers never pay, 43% pay within a day
    of activating; 3% of payments are refunded. A summary goes to standard error.

    \b
    Example (Double 11, New Year, the Spring Festival of 2027 and March):
      promo-engine demo-data --users 2000 --days 150 --out demo.jsonl
    """
    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        _fail(f"--start must be a date written YYYY-MM-DD, not {start!r}", status=2)
    zone = check_timezone(os.environ.get("PROMO_TIMEZONE", "Asia/Shanghai"))
    currency = check_currency(os.environ.get("PROMO_CURRENCY", "CNY"))
    options = DemoOptions(users=users, days=days, seed=seed, start=first_day, timezone=zone,
                          currency=currency)
    problems = options.problems()
    if problems:
        _fail("; ".join(problems), status=2)
    summary = _write_to_stdout(options) if out == "-" else _write_to_file(options, out)
    click.echo(_describe(options, summary, out), err=True)
    _warn_about_future(options)


def _write_to_file(options: DemoOptions, out: str) -> DemoSummary:
    """Written beside FILE and renamed when complete, so that a run that is stopped never
    leaves half a history under FILE's name."""
    folder = os.path.dirname(os.path.abspath(out))
    try:
        handle, partial = tempfile.mkstemp(prefix=".demo-data-", suffix=".part", dir=folder)
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}", status=1)
    try:
        # mkstemp makes the file private (0600); the history is no secret: the usual mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as stream:
            summary = write_demo_data(options, stream)
        os.replace(partial, out)
    except OSError as exc:
        _remove(partial)
        _fail(f"cannot write {out}: {exc.strerror or exc}", status=1)
    except BaseException:
        _remove(partial)
        raise
    return summary


def _write_to_stdout(options: DemoOptions) -> DemoSummary:
    stream = sys.stdout.buffer
    try:
        summary = write_demo_data(options, stream)
        stream.flush()
    except BrokenPipeError:
        # The reader had enough (`| head`): not an error. Standard output is pointed at
        # /dev/null so that Python's own flush at exit does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    return summary


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _describe(options: DemoOptions, summary: DemoSummary, out: str) -> str:
    where = "standard output" if out == "-" else out
    span = (f"{summary.first_day} to {summary.last_day}" if summary.first_day
            else "no events")
    return (f"{_count(summary.events, 'event')} ({_count(summary.activations, 'activation')}, "
            f"{_count(summary.payments, 'payment')}, {_count(summary.refunds, 'refund')}) of "
            f"{_count(summary.users, 'user')} at {_count(summary.merchants, 'merchant')}, "
            f"{span} ({options.timezone}), written to {where}")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _warn_about_future(options: DemoOptions) -> None:
    """The service refuses events more than 300 s ahead of its clock; say so when the
    history reaches past now (only this note depends on the date, never the output)."""
    last = datetime.combine(options.start + timedelta(days=options.days), time(),
                            ZoneInfo(options.timezone))
    now = datetime.now(timezone.utc)
    if last > now:
        click.echo(f"note: the events after {now.astimezone(last.tzinfo):%Y-%m-%d %H:%M} "
                   "are in the future: a running service refuses them until then (a "
                   "back-test with `campaigns simulate` takes them all)", err=True)
