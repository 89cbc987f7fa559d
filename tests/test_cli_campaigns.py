"""`promo-engine campaigns validate|apply` as operators script it."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from promo_engine.campaigns.lifecycle import status_at
from promo_engine.cli import main

REPO_CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"


# The shipped campaigns the apply and prune tests below work on (the others are validated
# with them by test_validate_the_shipped_campaigns).
WORKED_ON = ("new-wallet-bonus.yaml", "spring-dining.yaml", "weekend-3x.yaml")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A copy of three shipped campaigns, in a working directory of the test's own."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "campaigns").mkdir()
    for name in WORKED_ON:
        shutil.copy(REPO_CAMPAIGNS / name, tmp_path / "campaigns" / name)
    return tmp_path / "campaigns"


@pytest.fixture
def env(tmp_path):
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'promo.db'}",
            "SECRET_KEY": "test-secret-key-0123456789", "PROMO_TIMEZONE": "Asia/Shanghai",
            "PROMO_CURRENCY": "CNY", "PROMO_LOAD_ENTRY_POINTS": "0"}


@pytest.fixture
def run(env):
    def run(*args, **extra_env):
        return CliRunner().invoke(main, ["campaigns", *map(str, args)], env={**env, **extra_env})
    return run


def rows(database_url) -> dict[str, tuple]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {row[0]: tuple(row[1:]) for row in conn.execute(
                text("SELECT id, status, name FROM campaigns ORDER BY id"))}
    finally:
        engine.dispose()


def revision(database_url) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT campaigns_revision FROM program_state")).scalar()
    finally:
        engine.dispose()


def rename(path: Path, new_name: str) -> None:
    content = path.read_text()
    start = content.index("\nname: ") + 1
    end = content.index("\n", start)
    path.write_text(content[:start] + f"name: {new_name}" + content[end:])


# --- validate --------------------------------------------------------------------------------

def test_validate_the_shipped_campaigns(run, folder):
    result = run("validate", REPO_CAMPAIGNS)
    assert (result.exit_code, result.stdout) == (0, "8 campaigns in 8 files are valid\n")
    result = run("validate", folder)
    assert (result.exit_code, result.stdout) == (0, "3 campaigns in 3 files are valid\n")


def test_validate_one_file_speaks_in_the_singular(run, folder):
    result = run("validate", folder / "spring-dining.yaml")
    assert (result.exit_code, result.stdout) == (0, "1 campaign in 1 file is valid\n")


def test_validate_prints_every_problem_and_exits_1(run, folder):
    (folder / "spring-dining.yaml").write_text(
        (folder / "spring-dining.yaml").read_text().replace("percent: 15", "percent: 150"))
    (folder / "extra.yaml").write_text((folder / "weekend-3x.yaml").read_text()
                                       .replace("from: \"00:00\"", "form: \"00:00\""))
    result = run("validate", folder)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f'{folder}/extra.yaml:11: windows[0].from: Missing data for required field.',
        f'{folder}/extra.yaml:12: windows[0].form: Unknown field.',
        f'{folder}/spring-dining.yaml:32: params.percent: must be between 0 and 100',
        f'{folder}/weekend-3x.yaml:4: duplicate campaign id "weekend-3x": first defined at '
        f'{folder}/extra.yaml:4',
    ]
    assert result.stderr == "4 problems in 3 files\n"


def test_validate_needs_no_database_and_writes_nothing(run, folder, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("validate", folder, DATABASE_URL="not a url at all", SECRET_KEY="")
    assert result.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before == ["campaigns"]


def test_validate_uses_the_program_timezone(run, folder):
    result = run("validate", folder, PROMO_TIMEZONE="Mars/Olympus")
    assert result.exit_code == 2
    assert "PROMO_TIMEZONE: 'Mars/Olympus' is not an IANA time zone" in result.stderr


def test_validate_without_a_path_is_a_usage_error(run):
    result = run("validate")
    assert result.exit_code == 2
    assert "Missing argument 'PATHS...'" in result.stderr


# --- apply -----------------------------------------------------------------------------------

def test_apply_creates_the_campaigns(run, folder, env):
    result = run("apply", folder)
    assert result.exit_code == 0, result.output
    assert result.stdout == ("created new-wallet-bonus\ncreated spring-dining\n"
                             "created weekend-3x\n3 created, 0 updated, 0 unchanged\n")
    now = datetime.now(timezone.utc)
    shanghai = timedelta(hours=8)
    assert rows(env["DATABASE_URL"]) == {
        "new-wallet-bonus": (status_at(datetime(2026, 11, 1, tzinfo=timezone.utc) - shanghai,
                                       datetime(2028, 1, 1, tzinfo=timezone.utc) - shanghai,
                                       now), "500 points for activating your wallet"),
        "spring-dining": (status_at(datetime(2027, 2, 5, tzinfo=timezone.utc) - shanghai,
                                    datetime(2027, 2, 13, tzinfo=timezone.utc) - shanghai,
                                    now), "Spring Festival dining 15% off"),
        "weekend-3x": (status_at(datetime(2026, 11, 1, tzinfo=timezone.utc) - shanghai,
                                 datetime(2027, 7, 1, tzinfo=timezone.utc) - shanghai,
                                 now), "Weekend triple points at partner merchants"),
    }


def test_applying_the_same_files_twice_changes_nothing(run, folder, env):
    run("apply", folder)
    result = run("apply", folder)
    assert result.exit_code == 0
    assert result.stdout == ("unchanged new-wallet-bonus\nunchanged spring-dining\n"
                             "unchanged weekend-3x\n0 created, 0 updated, 3 unchanged\n")
    assert revision(env["DATABASE_URL"]) == 1


def test_apply_updates_a_changed_campaign(run, folder, env):
    run("apply", folder)
    rename(folder / "spring-dining.yaml", "Spring Festival dining 20% off")
    result = run("apply", folder)
    assert result.stdout == ("unchanged new-wallet-bonus\nupdated spring-dining\n"
                             "unchanged weekend-3x\n0 created, 1 updated, 2 unchanged\n")
    assert rows(env["DATABASE_URL"])["spring-dining"][1] == "Spring Festival dining 20% off"
    assert revision(env["DATABASE_URL"]) == 2


def test_apply_prune_retires_campaigns_no_longer_in_the_files(run, folder, env):
    run("apply", folder)
    (folder / "weekend-3x.yaml").unlink()
    result = run("apply", "--prune", folder)
    assert result.stdout == ("unchanged new-wallet-bonus\nunchanged spring-dining\n"
                             "retired weekend-3x\n0 created, 0 updated, 2 unchanged, "
                             "1 retired\n")
    assert rows(env["DATABASE_URL"])["weekend-3x"][0] == "retired"


def test_apply_dry_run_on_a_new_database_writes_nothing(run, folder, tmp_path):
    result = run("apply", "--dry-run", "--prune", folder)
    assert result.exit_code == 0
    assert result.stdout == ("created new-wallet-bonus\ncreated spring-dining\n"
                             "created weekend-3x\n3 created, 0 updated, 0 unchanged, 0 retired\n"
                             "dry run: nothing was written\n")
    assert not (tmp_path / "promo.db").exists()


def test_apply_dry_run_shows_changes_without_making_them(run, folder, env):
    run("apply", folder)
    rename(folder / "spring-dining.yaml", "Renamed")
    (folder / "weekend-3x.yaml").unlink()
    result = run("apply", "--dry-run", "--prune", folder)
    assert result.stdout == ("unchanged new-wallet-bonus\nupdated spring-dining\n"
                             "retired weekend-3x\n0 created, 1 updated, 1 unchanged, "
                             "1 retired\ndry run: nothing was written\n")
    assert rows(env["DATABASE_URL"])["spring-dining"][1] == "Spring Festival dining 15% off"
    assert rows(env["DATABASE_URL"])["weekend-3x"][0] != "retired"
    assert revision(env["DATABASE_URL"]) == 1


def test_apply_with_a_bad_file_writes_nothing(run, folder, tmp_path):
    (folder / "broken.yaml").write_text("id: broken\ntype: holiday_discount\n")
    result = run("apply", folder)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{folder}/broken.yaml:1: starts_at: Missing data for required field.",
        f"{folder}/broken.yaml:1: ends_at: Missing data for required field.",
        f"{folder}/broken.yaml:1: params.percent: give exactly one of percent or amount_off",
    ]
    assert result.stderr == "3 problems in 1 file\nnothing was applied\n"
    assert not (tmp_path / "promo.db").exists()


def test_apply_reports_an_unreachable_database_without_a_traceback(run, folder):
    result = run("apply", folder, DATABASE_URL="postgresql://nobody@127.0.0.1:9/none")
    assert result.exit_code == 1
    assert result.stderr.startswith("promo-engine: database error: ")
    assert result.stderr.endswith("; nothing was applied\n")
    assert "Traceback" not in result.output


# --- PostgreSQL: all or nothing ---------------------------------------------------------------

def test_apply_on_postgresql_is_all_or_nothing(run, folder, postgres_url):
    url = postgres_url
    assert run("apply", folder, DATABASE_URL=url).exit_code == 0
    assert revision(url) == 1

    # A bad file: nothing is written, not even the good changes beside it.
    rename(folder / "spring-dining.yaml", "Renamed")
    (folder / "broken.yaml").write_text("id: broken\n")
    result = run("apply", folder, DATABASE_URL=url)
    assert result.exit_code == 1
    (folder / "broken.yaml").unlink()

    # A conflict found inside the transaction: the update before it is rolled back.
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE campaigns SET source = 'portal' WHERE id = 'weekend-3x'"))
    engine.dispose()
    result = run("apply", folder, DATABASE_URL=url)
    assert result.exit_code == 1
    assert result.stderr == ("promo-engine: campaign weekend-3x is managed in the portal, not "
                             "in YAML files; give the YAML campaign another id; nothing was "
                             "applied\n")
    assert rows(url)["spring-dining"][1] == "Spring Festival dining 15% off"
    assert revision(url) == 1
