"""Campaign YAML files: YAML 1.2 reading, every problem as `file:line: message`, no tracebacks."""
from __future__ import annotations

import os
import textwrap
from datetime import datetime, time, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promo_engine.campaigns.files import LoadedCampaign, Problem, load_paths
from promo_engine.campaigns.spec import canonical_spec
from promo_engine.core.campaign import Window
from promo_engine.core.registry import build_registry, get_plugin_manager

REPO = Path(__file__).resolve().parent.parent
UTC = timezone.utc

VALID = """\
id: spring-dining
type: holiday_discount
starts_at: 2027-02-05T00:00:00
ends_at: 2027-02-13T00:00:00
params:
  percent: 15
"""


@pytest.fixture(scope="module")
def registry():
    return build_registry(get_plugin_manager(load_entry_points=False))


@pytest.fixture
def write(tmp_path):
    def write(name: str, text: str | bytes) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text))
        return str(path)
    return write


@pytest.fixture
def load(registry):
    def load(*paths):
        return load_paths(paths, registry=registry, currency="CNY",
                          default_timezone="Asia/Shanghai")
    return load


@pytest.fixture
def problems(load):
    def problems(*paths) -> list[str]:
        result = load(*paths)
        assert not result.campaigns or result.problems, "expected problems"
        return [str(p) for p in result.problems]
    return problems


# --- YAML 1.2, as people mean it -------------------------------------------------------------

def test_on_is_a_string_key_not_true(load, write):
    path = write("bonus.yaml", """\
        id: new-wallet-bonus
        type: first_activation_bonus
        starts_at: 2026-11-01T00:00:00
        ends_at: 2028-01-01T00:00:00
        params:
          on: first_payment
          points: 500
        """)
    [loaded] = load(path).campaigns
    assert loaded.campaign.params == {"on": "first_payment", "points": 500}


def test_no_is_a_string_key_reported_as_unknown(problems, write):
    path = write("a.yaml", VALID + "no: 1\n")
    assert problems(path) == [f"{path}:7: no: Unknown field."]


def test_unquoted_time_of_day_is_a_time_not_a_number(load, write):
    path = write("a.yaml", VALID + "windows:\n  - from: 10:00\n    to: 14:30\n")
    [loaded] = load(path).campaigns
    assert loaded.campaign.windows == (Window(frozenset(range(7)), time(10), time(14, 30)),)


def test_quoted_and_unquoted_datetimes_mean_the_same(load, write):
    unquoted = write("a.yaml", VALID)
    quoted = write("b.yaml", VALID.replace("2027-02-05T00:00:00", '"2027-02-05T00:00:00"')
                   .replace("2027-02-13T00:00:00", "'2027-02-13 00:00'"))
    [a], [b] = load(unquoted).campaigns, load(quoted).campaigns
    assert a.campaign == b.campaign
    assert a.campaign.starts_at == datetime(2027, 2, 4, 16, tzinfo=UTC)


def test_unquoted_datetime_with_offset_is_that_instant(load, write):
    path = write("a.yaml", VALID.replace("2027-02-05T00:00:00", "2027-02-05T00:00:00Z"))
    [loaded] = load(path).campaigns
    assert loaded.campaign.starts_at == datetime(2027, 2, 5, tzinfo=UTC)


def test_unquoted_date_is_local_midnight(load, write):
    path = write("a.yaml", VALID.replace("2027-02-05T00:00:00", "2027-02-05"))
    [loaded] = load(path).campaigns
    assert loaded.campaign.starts_at == datetime(2027, 2, 4, 16, tzinfo=UTC)


def test_merge_keys_share_settings_between_documents(load, write):
    path = write("a.yaml", """\
        id: spring-dining
        type: holiday_discount
        starts_at: 2027-02-05T00:00:00
        ends_at: 2027-02-13T00:00:00
        params: &dining {percent: 15, max_discount: "30.00"}
        conditions:
          <<: {min_amount: "50.00"}
          channels: [qr]
        """)
    [loaded] = load(path).campaigns
    assert loaded.campaign.conditions.min_amount == Decimal("50.00")


def test_other_yaml_version_directive_is_refused(problems, write):
    path = write("a.yaml", "%YAML 1.1\n---\n" + VALID)
    assert problems(path) == [f"{path}:1: only YAML 1.2 is supported: remove this %YAML "
                              "directive"]


def test_yaml_1_2_directive_is_accepted(load, write):
    assert len(load(write("a.yaml", "%YAML 1.2\n---\n" + VALID)).campaigns) == 1


# --- documents and what is loaded -------------------------------------------------------------

def test_several_documents_in_one_file(load, write):
    path = write("a.yaml", VALID + "---\n" + VALID.replace("spring-dining", "autumn-dining"))
    result = load(path)
    assert result.problems == []
    assert [(c.campaign.id, c.path, c.line) for c in result.campaigns] == [
        ("spring-dining", path, 1), ("autumn-dining", path, 8)]


def test_loaded_campaign_carries_its_canonical_spec(load, write):
    [loaded] = load(write("a.yaml", VALID)).campaigns
    assert isinstance(loaded, LoadedCampaign)
    assert loaded.spec == {"id": "spring-dining", "type": "holiday_discount",
                           "starts_at": "2027-02-05T00:00:00",
                           "ends_at": "2027-02-13T00:00:00", "params": {"percent": 15},
                           "timezone": "Asia/Shanghai"}
    assert loaded.spec == canonical_spec(loaded.spec, "UTC")


def test_empty_documents_between_separators_are_skipped(load, write):
    result = load(write("a.yaml", "---\n" + VALID + "---\n---\n# nothing\n"))
    assert (len(result.campaigns), result.problems) == (1, [])


def test_folder_reads_every_yaml_file_below_sorted(load, write, tmp_path):
    for name, campaign_id in [("b.yaml", "b"), ("a.yml", "a"), ("sub/c.yaml", "c"),
                              ("notes.txt", "x"), (".hidden.yaml", "h"),
                              (".git/d.yaml", "d")]:
        write(name, VALID.replace("spring-dining", campaign_id))
    result = load(str(tmp_path))
    assert [c.campaign.id for c in result.campaigns] == ["a", "b", "c"]
    assert result.files == [str(tmp_path / "a.yml"), str(tmp_path / "b.yaml"),
                            str(tmp_path / "sub" / "c.yaml")]


def test_file_given_twice_is_read_once(load, write, tmp_path):
    path = write("a.yaml", VALID)
    result = load(path, str(tmp_path))
    assert (len(result.campaigns), result.problems, result.files) == (1, [], [path])


def test_the_shipped_example_campaigns_are_valid(load):
    result = load(str(REPO / "campaigns"))
    assert [str(p) for p in result.problems] == []
    assert sorted(c.campaign.type for c in result.campaigns) == [
        "first_activation_bonus", "first_activation_bonus", "holiday_discount",
        "holiday_discount", "holiday_discount", "points_exchange", "points_exchange",
        "points_multiplier"]
    assert {Path(c.path).name: c.campaign.id for c in result.campaigns} == {
        "new-wallet-bonus.yaml": "new-wallet-bonus", "spring-dining.yaml": "spring-dining",
        "weekend-3x.yaml": "weekend-3x", "points-mall-coffee.yaml": "points-mall-coffee",
        "spring-festival-exchange.yaml": "spring-festival-exchange",
        "welcome-voucher.yaml": "welcome-voucher",
        "win-back-30-days.yaml": "win-back-30-days",
        "first-three-payments.yaml": "first-three-payments"}


# --- every problem at its line ---------------------------------------------------------------

def test_problem_str_is_file_line_message():
    assert str(Problem("campaigns/a.yaml", 7, "no: Unknown field.")) == \
        "campaigns/a.yaml:7: no: Unknown field."


def test_unknown_key_is_reported_at_its_own_line(problems, write):
    path = write("a.yaml", """\
        id: spring-dining
        type: holiday_discount
        statrs_at: 2027-02-05T00:00:00
        starts_at: 2027-02-05T00:00:00
        ends_at: 2027-02-13T00:00:00
        params:
          percent: 15
          bonus: 3
        """)
    assert problems(path) == [f"{path}:3: statrs_at: Unknown field.",
                              f"{path}:8: params.bonus: Unknown field."]


def test_bad_value_is_reported_at_its_key(problems, write):
    path = write("a.yaml", VALID.replace("2027-02-13T00:00:00", "2027-02-01T00:00:00"))
    assert problems(path) == [f"{path}:4: ends_at: must be after starts_at"]


def test_missing_required_key_is_reported_at_the_mapping(problems, write):
    path = write("a.yaml", "# spring\n\n" + VALID.replace("id: spring-dining\n", ""))
    assert problems(path) == [f"{path}:3: id: Missing data for required field."]


def test_missing_key_in_a_window_is_reported_at_the_window(problems, write):
    path = write("a.yaml", VALID + textwrap.dedent("""\
        windows:
          - from: "11:00"
            to: "14:00"
          - days: [sat]
            from: "18:00"
        """))
    assert problems(path) == [f"{path}:10: windows[1].to: Missing data for required field."]


def test_window_crossing_midnight_is_reported_at_to(problems, write):
    path = write("a.yaml", VALID + "windows:\n  - from: 22:00\n    to: 02:00\n")
    assert problems(path) == [
        f"{path}:9: windows[0].to: must be after from; windows cannot cross midnight, split "
        'them (e.g. from "22:00" to "00:00" and from "00:00" to "02:00")']


def test_bad_list_item_is_reported_at_the_item(problems, write):
    path = write("a.yaml", VALID + textwrap.dedent("""\
        conditions:
          mcc:
            - "5812"
            - 742
        """))
    assert problems(path) == [f'{path}:10: conditions.mcc[1]: write the code as a quoted '
                              '4-digit string, e.g. "5812"']


def test_flow_list_item_is_reported_at_its_line(problems, write):
    path = write("a.yaml", VALID + "windows:\n  - {days: [sat, sun, sat], from: 10:00, "
                                   "to: 12:00}\n")
    assert problems(path) == [f"{path}:8: windows[0].days[2]: sat is listed twice"]


def test_params_error_is_reported_at_the_param(problems, write):
    path = write("a.yaml", """\
        id: weekend-3x
        type: points_multiplier
        starts_at: 2026-11-01T00:00:00
        ends_at: 2027-07-01T00:00:00
        params:
          multiplier: 1
        """)
    assert problems(path) == [f"{path}:6: params.multiplier: must be greater than 1"]


def test_missing_params_are_reported_at_the_document(problems, write):
    path = write("a.yaml", VALID.replace("type: holiday_discount", "type: points_multiplier")
                 .replace("params:\n  percent: 15\n", ""))
    assert problems(path) == [f"{path}:1: params.multiplier: Missing data for required field."]


def test_schema_level_params_error_is_reported_at_params(problems, write):
    path = write("a.yaml", VALID.replace("  percent: 15\n", "  max_discount: \"3.00\"\n"
                                                          "  amount_off: \"5.00\"\n"))
    assert problems(path) == [f"{path}:6: params.max_discount: max_discount goes with percent"]


def test_budget_unit_mismatch_is_reported_at_the_budget_key(problems, write):
    path = write("a.yaml", """\
        id: weekend-3x
        type: points_multiplier
        starts_at: 2026-11-01T00:00:00
        ends_at: 2027-07-01T00:00:00
        budget:
          amount: "50000.00"
        params: {multiplier: 3}
        """)
    assert problems(path) == [
        f"{path}:6: budget.amount: this campaign grants points: use budget.points"]


def test_budget_without_amount_or_points_is_reported_at_budget(problems, write):
    path = write("a.yaml", VALID + "budget: {}\n")
    assert problems(path) == [f"{path}:7: budget: give exactly one of amount (money) or points"]


def test_problems_in_a_file_are_sorted_by_line(problems, write):
    path = write("a.yaml", """\
        id: Spring
        type: holiday_discount
        starts_at: 2027-02-05T00:00:00
        ends_at: 2027-02-13T00:00:00
        exclusive: yes
        params: {percent: 15}
        priority: high
        """)
    assert problems(path) == [
        f"{path}:1: id: must be 1 to 64 characters of a-z, 0-9 and - (e.g. spring-dining)",
        f"{path}:5: exclusive: must be true or false",
        f"{path}:7: priority: Not a valid integer."]


# --- problems with the file itself ----------------------------------------------------------

def test_yaml_syntax_error_is_reported_at_the_marker(problems, write):
    path = write("a.yaml", VALID + "merchants: [m_1, m_2\nlimits: {}\n")
    assert problems(path) == [
        f"{path}:8: invalid YAML: expected ',' or ']', but got ':' (while parsing a flow "
        "sequence at line 7)"]


def test_bad_indentation_is_a_syntax_error(problems, write):
    path = write("a.yaml", VALID + "limits:\n  per_user: 1\n   per_user_daily: 2\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:9: invalid YAML: mapping values are not allowed here")


def test_duplicate_key_is_reported_at_the_second(problems, write):
    path = write("a.yaml", VALID + "params:\n  percent: 20\n")
    assert problems(path) == [
        f'{path}:7: duplicate key "params": each key may appear only once in a mapping']


def test_duplicate_key_spoils_only_its_document(load, write):
    path = write("a.yaml", VALID + "---\nid: x\nid: y\n---\n"
                 + VALID.replace("spring-dining", "autumn-dining"))
    result = load(path)
    assert [str(p) for p in result.problems] == [
        f'{path}:9: duplicate key "id": each key may appear only once in a mapping']
    assert [c.campaign.id for c in result.campaigns] == ["spring-dining", "autumn-dining"]


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "a list"), ("just words\n", "a string"),
                                        ("42\n", "a number")])
def test_document_that_is_not_a_mapping(problems, write, text, kind):
    path = write("a.yaml", VALID + "---\n" + text)
    assert problems(path) == [f"{path}:8: a campaign must be a mapping of fields (key: value "
                              f"lines), not {kind}"]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n"])
def test_file_with_no_campaign(problems, write, text):
    path = write("a.yaml", text)
    assert problems(path) == [f"{path}:1: no campaign in this file (it is empty or only "
                              "comments)"]


def test_missing_path(problems, tmp_path):
    path = str(tmp_path / "nope.yaml")
    assert problems(path) == [f"{path}:1: no such file or folder"]


def test_unreadable_file(problems, tmp_path):
    link = tmp_path / "broken.yaml"
    link.symlink_to(tmp_path / "gone.yaml")
    assert problems(str(tmp_path)) == [
        f"{link}:1: cannot read this file: No such file or directory"]


def test_folder_without_campaign_files(problems, tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    assert problems(str(tmp_path)) == [
        f"{tmp_path}:1: no campaign files (*.yaml, *.yml) in this folder"]


def test_text_that_is_not_utf8(problems, write):
    path = write("a.yaml", VALID.encode() + b"name: caf\xe9\n")
    assert problems(path) == [f"{path}:7: not UTF-8 text (byte 0xe9 cannot be read)"]


def test_control_character_is_reported_at_its_line(problems, write):
    path = write("a.yaml", VALID + "name: a\x07b\n")
    assert problems(path) == [f"{path}:7: invalid YAML: character U+0007 is not allowed"]


def test_duplicate_id_across_files_names_the_first(problems, write):
    first = write("a.yaml", VALID)
    second = write("b.yaml", "# copy\n" + VALID)
    assert problems(first, second) == [
        f'{second}:2: duplicate campaign id "spring-dining": first defined at {first}:1']


def test_duplicate_id_in_one_file(problems, write):
    path = write("a.yaml", VALID + "---\n" + VALID)
    assert problems(path) == [
        f'{path}:8: duplicate campaign id "spring-dining": first defined at {path}:1']


def test_problems_from_several_files_are_all_reported(problems, write):
    good = write("a.yaml", VALID)
    bad = write("b.yaml", VALID.replace("spring-dining", "b").replace("percent: 15",
                                                                       "percent: 101"))
    worse = write("c.yaml", "id: [\n")
    assert problems(good, bad, worse) == [
        f"{bad}:6: params.percent: must be between 0 and 100",
        f"{worse}:2: invalid YAML: expected the node content, but found '<stream end>' (while "
        "parsing a flow node at line 2)"]


# --- never a traceback ----------------------------------------------------------------------

WEIRD_YAML = [
    "id: !!python/object:os.system x\n",
    "id: !custom spring\ntype: !!binary aGVsbG8=\n",
    "params: !!set {a, b}\n",
    "? [complex, key]\n: value\n",
    "1: one\ntrue: yes\nnull: nothing\n",
    "a: &a [*a]\nid: *a\n",
    "base: &b {percent: 15}\nparams: *b\nmerchants: &m [*m]\n",
    "priority: " + "9" * 5000 + "\n",
    "priority: 99999999999999999999999999999999999\nlimits: {per_user: 1e400}\n",
    "budget: {points: .nan}\nparams: {percent: .inf}\n",
    "[" * 5000 + "\n",
    "{a: " * 2000 + "\n",
    "\x00\x01\x02",
    "\ufeff" + VALID,
    "\tid: tab\n",
    "--- |\n  literal\n",
    "*undefined_alias\n",
    "&anchor\n",
    "id: spring-dining\nstarts_at: 2027-02-30T00:00:00\nends_at: 9999-12-31T23:59:59\n",
    "windows: [{from: !!int 600, to: !!float 7.5}]\nconditions: {mcc: [!!str 5812]}\n",
    "conditions: {attributes: {[a]: [1], b: [[1]], c: [{d: 1}]}}\n",
    VALID + "merchants: " + "[" * 200 + "]" * 200 + "\n",
    VALID.replace("percent: 15", "percent: 0x1F\n  max_discount: 0o17"),
]


@pytest.mark.parametrize("text", WEIRD_YAML)
def test_weird_yaml_gives_problems_never_a_traceback(load, write, text):
    result = load(write("weird.yaml", text))
    for problem in result.problems:
        assert problem.line >= 1 and problem.message
    assert result.campaigns or result.problems


def test_binary_file_gives_a_problem(problems, write):
    path = write("a.yaml", bytes(range(256)))  # a newline at 0x0a, so line 2
    assert problems(path) == [f"{path}:2: not UTF-8 text (byte 0x80 cannot be read)"]


yaml_text = st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#%@`,?\n 0123456789.")),
                    max_size=120)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=yaml_text)
def test_random_text_never_raises(load, tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    result = load(str(path))
    assert all(p.line >= 1 for p in result.problems)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mangled_valid_campaign_never_raises(load, tmp_path, data):
    lines = (VALID + "windows:\n  - days: [sat]\n    from: 10:00\n    to: 14:00\n"
             "budget: {amount: \"10.00\"}\nlimits: {per_user: 1}\n").splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    replacement = data.draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
    lines[index] = data.draw(st.sampled_from([
        replacement, lines[index] + replacement, lines[index].split(":")[0] + ": " + replacement,
        "  " + lines[index]]))
    path = tmp_path / "fuzz.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load(str(path))
    assert all(p.line >= 1 for p in result.problems)
    assert result.campaigns or result.problems


def test_deeply_nested_brackets_are_refused_quickly(problems, write):
    path = write("a.yaml", VALID + "merchants:\n  " + "[" * 2000 + "\n")
    assert problems(path) == [f"{path}:8: invalid YAML: [ and {{ nested more than 50 deep"]


def test_huge_file_is_refused(problems, write):
    path = write("a.yaml", VALID + "# " + "x" * (1024 * 1024) + "\n")
    assert problems(path) == [f"{path}:1: larger than 1024 KiB: not a campaign file"]


def test_deeply_nested_blocks_are_a_problem(problems, write):
    path = write("a.yaml", "".join("  " * level + f"k{level}:\n" for level in range(600)))
    assert problems(path) == [f"{path}:1: invalid YAML: nested too deeply"]


def test_a_single_path_may_be_given_as_a_string(registry, write):
    path = write("a.yaml", VALID)
    result = load_paths(path, registry=registry, currency="CNY", default_timezone="UTC")
    assert [c.campaign.id for c in result.campaigns] == ["spring-dining"]


def test_error_in_a_merged_key_is_reported_where_the_anchor_defines_it(problems, write):
    path = write("a.yaml", """\
        id: spring-dining
        type: holiday_discount
        starts_at: 2027-02-05T00:00:00
        ends_at: 2027-02-13T00:00:00
        x-defaults: &defaults
          percent: 150
        params:
          <<: *defaults
          max_discount: "30.00"
        """)
    assert problems(path) == [f"{path}:5: x-defaults: Unknown field.",
                              f"{path}:6: params.percent: must be between 0 and 100"]


def test_a_pipe_is_not_read(problems, tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert problems(str(tmp_path)) == [f"{fifo}:1: not a regular file"]
