"""`promo-engine campaigns simulate PATH... --events FILE`: what campaigns would have granted on
a history of events, with the service's rules, in memory, before they go live.

Needs no database and writes nothing (but the `--html` report). Every problem, in a campaign
file or an events line, is `file:line: message` on standard error with exit status 1, and
then no result is printed: standard output is the result alone (`--json` for CI).
"""
from __future__ import annotations

import json
import os
import sys
from decimal import Decimal

import click

from promo_engine.cli.campaigns import campaigns


@campaigns.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--events", "events_path", required=True, type=click.Path(),
              help="The history: JSON Lines, or CSV (a .csv file), in occurred_at order.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Also write a report with charts to this file.")
@click.option("--lang", "language", type=click.Choice(["en", "zh"]), default="en",
              show_default=True, help="The language of the --html report.")
@click.option("--skip-invalid", is_flag=True,
              help="Count and skip the lines that are not valid events, or out of order, "
                   "instead of stopping at the first.")
def simulate(paths: tuple[str, ...], events_path: str, as_json: bool, html_path: str | None,
             language: str, skip_invalid: bool) -> None:
    """Back-test the campaigns in PATHS on the events of FILE, in memory.

    Each campaign counts as open over its own dates, whatever its status; limits, budgets,
    refunds and first-payment bonuses work as in the service, and so does a risk_policy
    document in PATHS (held rewards count as granted). There is no denylist here.
    """
    from promo_engine.backtest.events_file import FileProblem
    from promo_engine.backtest.report_html import write_report
    from promo_engine.campaigns.files import load_paths
    from promo_engine.core.registry import build_registry

    settings = _settings()
    registry = build_registry()
    loaded = load_paths(paths, registry=registry, currency=settings.currency,
                        default_timezone=settings.timezone)
    if loaded.problems:
        for problem in loaded.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    try:
        _check_readable(events_path)
        result = _run([item.campaign for item in loaded.campaigns], registry, settings,
                      events_path, skip_invalid,
                      None if loaded.risk_policy is None else loaded.risk_policy.policy)
    except FileProblem as problem:
        click.echo(str(problem), err=True)
        sys.exit(1)
    if html_path is not None:
        try:
            write_report(result, html_path, language=language)
        except OSError as exc:
            click.echo(f"promo-engine: cannot write {html_path}: {exc.strerror or exc}",
                       err=True)
            sys.exit(1)
    click.echo(json.dumps(result_json(result), indent=2) if as_json else result_text(result))


def _check_readable(path: str) -> None:
    """An events file that cannot be read is a problem on its line 1, as a missing campaign
    file is for `campaigns validate`."""
    from promo_engine.backtest.events_file import FileProblem
    if os.path.isdir(path):
        raise FileProblem(path, 1, "is a folder, not an events file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise FileProblem(path, 1, f"cannot read it: {exc.strerror or exc}") from None


def _settings():
    """The program's settings from the environment, without the secret key file that the
    full settings would create: a back-test signs and encrypts nothing."""
    from promo_engine.config import Settings
    environ = dict(os.environ)
    if not environ.get("SECRET_KEY"):
        environ["SECRET_KEY"] = "simulate-needs-no-secret-key"
    return Settings.from_env(environ)


def _run(campaign_list, registry, settings, events_path: str, skip_invalid: bool,
         risk_policy=None):
    from promo_engine.backtest.event_lines import LineReader
    from promo_engine.backtest.events_file import EventsFile
    from promo_engine.backtest.simulator import Simulator

    simulator = Simulator(campaign_list, registry, currency=settings.currency,
                          points_per_unit=settings.points_per_unit,
                          point_value=settings.point_value, timezone=settings.timezone,
                          risk_policy=risk_policy)
    reader = LineReader(event_types=registry.event_types, currency=settings.currency,
                        point_value=settings.point_value)
    events_file = EventsFile(events_path, reader)
    bar = _progress_bar(2 * events_file.size)
    try:
        return simulator.run(events_file, skip_invalid=skip_invalid,
                             progress=None if bar is None else _Advance(bar))
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(total: int):
    """A progress bar on standard error when it is a terminal (the file is read twice)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                desc="simulating", file=sys.stderr, leave=False)


class _Advance:
    """Tells the bar every 64 KiB or so, not every line: updating it costs more than a line."""

    def __init__(self, bar):
        self.bar, self.pending = bar, 0

    def __call__(self, size: int) -> None:
        self.pending += size
        if self.pending >= 65536:
            self.bar.update(self.pending)
            self.pending = 0


# -- output ------------------------------------------------------------------------------

def result_json(result) -> dict:
    """The `--json` object, exactly as the contract writes it; with a risk policy that
    holds rewards, each campaign also gives `held` (a documented extension: the key is
    absent otherwise, so the contract's object is unchanged)."""
    def amount(value: Decimal) -> str:
        from promo_engine.core.money import format_amount
        return format_amount(value, result.currency)

    def campaign(c) -> dict:
        figures = {"campaign_id": c.campaign_id, "rewards": c.rewards, "users": c.users,
                   "cost": amount(c.cost), "points": c.points,
                   "budget_exhausted_at": (c.budget_exhausted_at.isoformat()
                                           if c.budget_exhausted_at else None)}
        if result.holds:
            figures["held"] = c.held
        return figures

    return {
        "events": result.events, "skipped": result.skipped, "base_points": result.base_points,
        "campaigns": [campaign(c) for c in result.campaigns],
        "totals": {"rewards": result.totals_rewards, "cost": amount(result.totals_cost),
                   "points": result.totals_points}}


def result_text(result) -> str:
    """A table per campaign (one row each) and the totals, for people."""
    from promo_engine.core.money import format_amount

    def amount(value: Decimal) -> str:
        return format_amount(value, result.currency)

    def budget(c) -> str:
        if c.budget_unit is None:
            left = "-"
        elif c.budget_unit == "points":
            left = f"{c.budget} points"
        else:
            left = f"{amount(c.budget)} {result.currency}"
        if c.max_redemptions is not None:
            left += f", {c.max_redemptions} max"
        return left

    header = ("campaign", "type", "rewards", "users", f"cost ({result.currency})", "points",
              "budget", "budget ran out")
    rows = [(c.campaign_id, c.type, str(c.rewards), str(c.users), amount(c.cost),
             str(c.points), budget(c),
             c.budget_exhausted_at.isoformat(sep=" ") if c.budget_exhausted_at else "-")
            for c in result.campaigns]
    rows.append(("total", "", str(result.totals_rewards), "", amount(result.totals_cost),
                 str(result.totals_points), "", ""))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 4, 5}

    def line(cells) -> str:
        return "  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                         for i, cell in enumerate(cells)).rstrip()

    lines = [line(header), line(["-" * width for width in widths])]
    lines += [line(row) for row in rows[:-1]]
    lines += [line(["-" * width for width in widths]), line(rows[-1]), ""]
    span = (f", {result.first_day} to {result.last_day}" if result.first_day else "")
    lines.append(f"{result.events} events{span}; {result.skipped} lines skipped; "
                 f"{result.base_points} base points")
    if result.holds:
        held = sum(c.held for c in result.campaigns)
        lines.append(f"{held} reward{'' if held == 1 else 's'} held for review by the risk "
                     "policy (counted above as granted)")
    return "\n".join(lines)
