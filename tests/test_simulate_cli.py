"""`promo-engine campaigns simulate`: the result as a table or as the contract's JSON object,
every problem as `file:line: message` on standard error with exit status 1 and no result,
and a progress bar only on a terminal."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promo_engine.cli import main

CAMPAIGNS = """\
id: lunch
name: Lunch 10% off
type: holiday_discount
merchants: [m_1]
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
budget: {amount: "10.00"}
params: {percent: 10}
---
id: welcome
name: Welcome points
type: first_activation_bonus
timezone: Europe/London
starts_at: 2026-03-01T00:00:00
ends_at: 2026-04-01T00:00:00
params: {on: activation, points: 100}
"""

# u1's 8.00 and u2's 3.00 do not both fit the 10.00 budget: u2's is skipped at 13:00. u1's
# payment is then refunded in full, its 8.00 goes back, and u2's next payment gets 3.00.
EVENTS = [
    {"type": "activation", "user_id": "u1", "occurred_at": "2026-03-02T09:00:00+08:00"},
    {"type": "payment", "user_id": "u1", "occurred_at": "2026-03-02T12:00:00+08:00",
     "merchant_id": "m_1", "amount": "80.00", "currency": "CNY"},
    {"type": "payment", "user_id": "u2", "occurred_at": "2026-03-02T13:00:00+08:00",
     "merchant_id": "m_1", "amount": "30.00", "currency": "CNY"},
    {"type": "refund", "user_id": "u1", "occurred_at": "2026-03-03T12:00:00+08:00",
     "merchant_id": "m_1", "amount": "80.00", "currency": "CNY",
     "original_event_id": "line-2"},
    {"type": "payment", "user_id": "u2", "occurred_at": "2026-03-03T13:00:00+08:00",
     "merchant_id": "m_1", "amount": "30.00", "currency": "CNY"},
]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "campaigns.yaml").write_text(CAMPAIGNS)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return tmp_path


def simulate(files, *args, events="events.jsonl"):
    return CliRunner().invoke(main, ["campaigns", "simulate", str(files / "campaigns.yaml"),
                                     "--events", str(files / events), *args],
                              env={"PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY",
                                   "SECRET_KEY": "", "PROMO_LOAD_ENTRY_POINTS": "0"})


def test_json_is_the_contracts_object(files):
    result = simulate(files, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "events": 5, "skipped": 0, "base_points": 60,
        "campaigns": [
            {"campaign_id": "lunch", "rewards": 1, "users": 1, "cost": "3.00", "points": 0,
             "budget_exhausted_at": "2026-03-02T13:00:00+08:00"},
            {"campaign_id": "welcome", "rewards": 1, "users": 1, "cost": "0.00", "points": 100,
             "budget_exhausted_at": None}],
        "totals": {"rewards": 2, "cost": "3.00", "points": 100}}
    assert result.stderr == ""  # no progress bar: standard error is not a terminal


def test_the_text_is_a_table_per_campaign_and_the_totals(files):
    result = simulate(files)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "campaign  type                    rewards  users  cost (CNY)  points  budget     "
        "budget ran out\n"
        "--------  ----------------------  -------  -----  ----------  ------  ---------  "
        "-------------------------\n"
        "lunch     holiday_discount              1      1        3.00       0  10.00 CNY  "
        "2026-03-02 13:00:00+08:00\n"
        "welcome   first_activation_bonus        1      1        0.00     100  -          -\n"
        "--------  ----------------------  -------  -----  ----------  ------  ---------  "
        "-------------------------\n"
        "total                                   2               3.00     100\n"
        "\n"
        "5 events, 2026-03-02 to 2026-03-03; 0 lines skipped; 60 base points\n")
    assert not (files / "promo-engine.db").exists()
    assert not (files / ".promo-engine-secret").exists()


def test_a_bad_line_is_file_line_message_and_no_result(files):
    with open(files / "events.jsonl", "a") as events:
        events.write('{"type": "payment", "user_id": "u3"}\n')
        events.write(json.dumps(dict(EVENTS[1], occurred_at="2026-03-01T00:00:00Z")) + "\n")
    result = simulate(files, "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{files / 'events.jsonl'}:6: amount: is required for payment events; merchant_id: "
        "is required for payment events; occurred_at: Missing data for required field.\n")

    skipped = simulate(files, "--json", "--skip-invalid")
    assert skipped.exit_code == 0
    figures = json.loads(skipped.stdout)
    assert (figures["events"], figures["skipped"]) == (5, 2)


def test_csv_by_its_suffix(files):
    (files / "events.csv").write_text(
        "type,user_id,occurred_at,merchant_id,amount,currency\n"
        "payment,u1,2026-03-02T12:00:00+08:00,m_1,80.00,CNY\n"
        "payment,u1,2026-03-02T11:00:00+08:00,m_1,80.00,CNY\n")
    result = simulate(files, "--json", events="events.csv")
    assert result.exit_code == 1
    assert result.stderr == (
        f"{files / 'events.csv'}:3: occurred_at 2026-03-02T11:00:00+08:00 is before line 2's "
        "(2026-03-02T12:00:00+08:00): events must be in occurred_at order\n")


def test_campaign_problems_are_reported_as_validate_does(files):
    (files / "campaigns.yaml").write_text(CAMPAIGNS.replace("percent: 10", "percent: 101"))
    result = simulate(files, "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    validate = CliRunner().invoke(main, ["campaigns", "validate",
                                         str(files / "campaigns.yaml")])
    assert validate.exit_code == 1
    problem = validate.stdout.splitlines()[0]
    assert problem == (f"{files / 'campaigns.yaml'}:8: params.percent: must be between 0 "
                       "and 100")
    assert result.stderr == problem + "\n"


def test_html_writes_the_report_beside_the_result(files):
    result = simulate(files, "--html", str(files / "report.html"))
    assert result.exit_code == 0, result.output
    assert "lunch" in (files / "report.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in (files / "report.html").read_text(encoding="utf-8")
    assert result.stdout.startswith("campaign  type")


def test_html_lang_zh_writes_the_report_in_chinese(files):
    result = simulate(files, "--html", str(files / "report.html"), "--lang", "zh")
    assert result.exit_code == 0, result.output
    page = (files / "report.html").read_text(encoding="utf-8")
    assert '<html lang="zh' in page and "活动回测报告" in page
    assert simulate(files, "--html", str(files / "r.html"), "--lang", "fr").exit_code == 2


def test_a_progress_bar_only_on_a_terminal(monkeypatch):
    from promo_engine.cli import simulate as command

    class Terminal:
        def __init__(self, tty):
            self.tty, self.text = tty, []

        def isatty(self):
            return self.tty

        def write(self, text):
            self.text.append(text)

        def flush(self):
            pass

    monkeypatch.setattr(command.sys, "stderr", Terminal(False))
    assert command._progress_bar(1000) is None
    terminal = Terminal(True)
    monkeypatch.setattr(command.sys, "stderr", terminal)
    bar = command._progress_bar(1000)
    bar.update(500)
    bar.close()
    assert "simulating" in "".join(terminal.text)


def test_an_events_file_that_cannot_be_read(files):
    missing = simulate(files, "--json", events="missing.jsonl")
    assert (missing.exit_code, missing.stdout) == (1, "")
    assert missing.stderr == (f"{files / 'missing.jsonl'}:1: cannot read it: No such file or "
                              "directory\n")
    (files / "folder").mkdir()
    folder = simulate(files, events="folder")
    assert folder.stderr == f"{files / 'folder'}:1: is a folder, not an events file\n"


def test_a_report_that_cannot_be_written(files):
    result = simulate(files, "--html", str(files / "no" / "such" / "report.html"))
    assert result.exit_code == 1
    assert result.stderr == (f"promo-engine: cannot write {files / 'no' / 'such' / 'report.html'}"
                             ": No such file or directory\n")



def test_the_documented_example_is_what_the_command_prints(tmp_path):
    """docs/backtesting.md shows the example campaigns on the demo history it makes."""
    from pathlib import Path

    from promo_engine.backtest.demo_data import DemoOptions, write_demo_data
    root = Path(__file__).resolve().parent.parent
    with open(tmp_path / "demo.jsonl", "wb") as out:
        write_demo_data(DemoOptions(users=2000, days=150), out)
    command = ["campaigns", "simulate", str(root / "campaigns"), "--events",
               str(tmp_path / "demo.jsonl")]
    env = {"PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY",
           "PROMO_POINTS_PER_UNIT": "1", "PROMO_LOAD_ENTRY_POINTS": "0"}
    result = CliRunner().invoke(main, command, env=env)
    assert result.exit_code == 0, result.output
    docs = (root / "docs" / "backtesting.md").read_text()
    assert "```\n" + result.stdout + "```" in docs
    figures = json.loads(CliRunner().invoke(main, [*command, "--json"], env=env).stdout)
    totals = figures["totals"]
    assert (f'"totals": {{"rewards": {totals["rewards"]}, "cost": "{totals["cost"]}", '
            f'"points": {totals["points"]}}}') in docs
