"""`promo-engine report program`: the tables, `--json`, `--csv FILE` and bad options, on the
hand-checked history of `program_history.py` (SQLite)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import make_settings, running_app
from program_history import post_history
from promo_engine.cli import main


@pytest.fixture
def env(tmp_path):
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'promo.db'}",
            "SECRET_KEY": "test-secret-key-0123456789", "PROMO_TIMEZONE": "Asia/Shanghai",
            "PROMO_CURRENCY": "CNY", "PROMO_LOAD_ENTRY_POINTS": "0"}


@pytest.fixture
def posted(env, tmp_path):
    with running_app(make_settings(env["DATABASE_URL"])) as app:
        post_history(app, tmp_path)
    return env


def run(env, *args):
    return CliRunner().invoke(main, ["report", "program", *args], env=env)


RANGE = ("--from", "2026-06-01", "--to", "2026-06-21")


def test_json_shape(posted):
    result = run(posted, *RANGE, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert sorted(data) == ["activations_per_day", "as_of", "campaigns", "cohorts", "currency",
                            "from", "timezone", "to", "weekly_active_payers"]
    assert (data["timezone"], data["currency"], data["from"], data["to"]) == (
        "Asia/Shanghai", "CNY", "2026-06-01", "2026-06-21")
    assert len(data["activations_per_day"]) == 21
    assert sum(d["activations"] for d in data["activations_per_day"]) == 7
    assert [c["users"] for c in data["cohorts"]] == [3, 2, 2]
    assert [c["share_30_days"] for c in data["cohorts"]] == ["0.6667", "1.0000", "0.5000"]
    assert [w["payers"] for w in data["weekly_active_payers"]] == [1, 1, 5]
    assert data["campaigns"] == [
        {"campaign_id": "dining", "name": "Dining 10% off", "cost": "30.00", "points": 0,
         "users": 4, "activated_users": 3, "first_paying_users": 2,
         "cost_per_activated_user": "10.00", "cost_per_first_paying_user": "15.00"},
        {"campaign_id": "welcome", "name": "Welcome cashback", "cost": "70.00", "points": 0,
         "users": 7, "activated_users": 7, "first_paying_users": 4,
         "cost_per_activated_user": "10.00", "cost_per_first_paying_user": "17.50"}]


def test_tables_and_csv_file(posted, tmp_path):
    path = tmp_path / "program.csv"
    result = run(posted, *RANGE, "--csv", str(path))
    assert result.exit_code == 0, result.output
    assert "Program report 2026-06-01 to 2026-06-21 (Asia/Shanghai, costs in CNY)" in result.output
    assert "Activations: 7" in result.output
    assert "2026-06-01  3      33.3%   66.7%" in result.output
    assert "welcome   70.00  0       7      7          10.00          4             17.50" \
        in result.output
    text = path.read_text(encoding="utf-8")
    assert text.startswith("activations_per_day\n")  # universal newlines: \r\n read as \n
    assert "dining,Dining 10% off,30.00,0,4,3,2,10.00,15.00\n" in text


def test_default_range_is_12_weeks(posted):
    data = json.loads(run(posted, "--json").output)
    assert len(data["cohorts"]) == 12 and data["cohorts"][0]["week"] == data["from"]


@pytest.mark.parametrize("args, message", [
    (("--from", "2026-13-01"), "Invalid value for --from: '2026-13-01' is not a date"),
    (("--from", "2026-06-02", "--to", "2026-06-01"),
     "--to 2026-06-01 is before --from 2026-06-02"),
])
def test_bad_options(posted, args, message):
    result = run(posted, *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_no_database_yet(env):
    result = run(env)
    assert result.exit_code == 1
    assert "promo-engine: the database has no schema yet (promo-engine db upgrade)" in result.output
