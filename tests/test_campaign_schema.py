"""The campaign document schema: one rule per test, exact values and messages."""
from __future__ import annotations

import json
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from promo_engine.campaigns.schema import NULL_MESSAGE, load_campaign
from promo_engine.campaigns.schema_errors import CampaignInvalid
from promo_engine.campaigns.spec import canonical_spec, spec_hash
from promo_engine.core import params
from promo_engine.core.campaign import Budget, Campaign, Conditions, Limits, Window
from promo_engine.core.registry import build_registry, get_plugin_manager

UTC = timezone.utc


@pytest.fixture(scope="module")
def registry():
    return build_registry(get_plugin_manager(load_entry_points=False))


def document(**fields):
    base = {
        "id": "spring-dining",
        "type": "holiday_discount",
        "starts_at": "2027-02-05T00:00:00",
        "ends_at": "2027-02-13T00:00:00",
        "params": {"percent": 15, "max_discount": "30.00"},
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not OMIT}


OMIT = object()


def load(registry, doc, *, currency="CNY", default_timezone="Asia/Shanghai") -> Campaign:
    return load_campaign(doc, registry=registry, currency=currency,
                         default_timezone=default_timezone)


def errors(registry, doc, **kwargs) -> dict:
    with pytest.raises(CampaignInvalid) as info:
        load(registry, doc, **kwargs)
    return info.value.messages


# --- the whole document ----------------------------------------------------------------------

def test_minimal_campaign_takes_the_defaults(registry):
    campaign = load(registry, document())
    assert campaign == Campaign(
        id="spring-dining", type="holiday_discount", name="spring-dining",
        timezone="Asia/Shanghai",
        starts_at=datetime(2027, 2, 4, 16, 0, tzinfo=UTC),
        ends_at=datetime(2027, 2, 12, 16, 0, tzinfo=UTC),
        currency="CNY", params={"percent": Decimal("15"), "max_discount": Decimal("30.00")},
        merchants=None, windows=(), conditions=Conditions(), budget=None, limits=Limits(),
        priority=0, exclusive=False)


def test_full_campaign_loads_every_field(registry):
    campaign = load(registry, document(
        name="Spring Festival dining 15% off",
        merchants=["m_100", "m_200"],
        timezone="Asia/Shanghai",
        windows=[{"days": ["sat", "sun"], "from": "11:00", "to": "14:00"}],
        conditions={"min_amount": "50.00", "mcc": ["5812", "5814"],
                    "channels": ["qr", "in_store"],
                    "attributes": {"segment": ["student", "young_pro"]}},
        budget={"amount": "50000.00"},
        limits={"per_user": 3, "per_user_daily": 1, "max_redemptions": 10000},
        priority=100,
        exclusive=True,
    ))
    assert campaign.name == "Spring Festival dining 15% off"
    assert campaign.merchants == frozenset({"m_100", "m_200"})
    assert campaign.windows == (Window(days=frozenset({5, 6}), start=time(11), end=time(14)),)
    assert campaign.conditions == Conditions(
        min_amount=Decimal("50.00"), mcc=frozenset({"5812", "5814"}),
        channels=frozenset({"qr", "in_store"}),
        attributes={"segment": frozenset({"student", "young_pro"})})
    assert campaign.budget == Budget(amount=Decimal("50000.00"))
    assert campaign.limits == Limits(per_user=3, per_user_daily=1, max_redemptions=10000)
    assert (campaign.priority, campaign.exclusive) == (100, True)


def test_unknown_top_level_key_is_an_error(registry):
    assert errors(registry, document(statrs_at="x")) == {"statrs_at": ["Unknown field."]}


@pytest.mark.parametrize("section, value, key", [
    ("windows", [{"from": "11:00", "to": "14:00", "day": ["sat"]}], "day"),
    ("conditions", {"min_amount": "5.00", "merchant": "m_1"}, "merchant"),
    ("budget", {"points": 5, "money": "1.00"}, "money"),
    ("limits", {"per_day": 1}, "per_day"),
])
def test_unknown_key_in_a_section_is_an_error(registry, section, value, key):
    doc = document(**{section: value})
    if section == "budget":
        doc = document(type="points_multiplier", params={"multiplier": 2}, budget=value)
    messages = errors(registry, doc)
    found = messages[section][0] if section == "windows" else messages[section]
    assert found == {key: ["Unknown field."]}


def test_null_value_asks_for_a_value_or_no_key(registry):
    assert errors(registry, document(limits=None)) == {"limits": [NULL_MESSAGE]}


def test_every_problem_is_reported_at_once(registry):
    messages = errors(registry, document(id="Spring", priority="high", exclusive="yes"))
    assert set(messages) == {"id", "priority", "exclusive"}


def test_campaign_invalid_str_lists_paths_and_messages(registry):
    with pytest.raises(CampaignInvalid) as info:
        load(registry, document(windows=[{"from": "11:00"}]))
    assert str(info.value) == "windows[0].to: Missing data for required field."


# --- id, type, name, merchants -------------------------------------------------------------

def test_id_is_required(registry):
    assert errors(registry, document(id=OMIT)) == {"id": ["Missing data for required field."]}


@pytest.mark.parametrize("bad_id", ["Spring", "spring_dining", "", "a" * 65, "spring\n",
                                    "spring dining"])
def test_id_must_be_a_lowercase_slug_of_1_to_64(registry, bad_id):
    assert errors(registry, document(id=bad_id)) == {
        "id": ["must be 1 to 64 characters of a-z, 0-9 and - (e.g. spring-dining)"]}


def test_id_of_64_characters_is_accepted(registry):
    assert load(registry, document(id="a" * 64)).id == "a" * 64


def test_type_is_required(registry):
    assert errors(registry, document(type=OMIT)) == {
        "type": ["Missing data for required field."]}


def test_type_must_be_registered(registry):
    assert errors(registry, document(type="mystery_box")) == {"type": [
        "unknown campaign type 'mystery_box'; installed types: first_activation_bonus, "
        "holiday_discount, points_exchange, points_multiplier"]}


def test_name_defaults_to_the_id(registry):
    assert load(registry, document()).name == "spring-dining"


def test_name_longer_than_200_characters_is_rejected(registry):
    assert errors(registry, document(name="x" * 201)) == {
        "name": ["must be 1 to 200 characters"]}


def test_merchants_become_a_set(registry):
    campaign = load(registry, document(merchants=["m_100", "shop.cn:7-a"]))
    assert campaign.merchants == frozenset({"m_100", "shop.cn:7-a"})


def test_empty_merchant_list_is_rejected(registry):
    assert errors(registry, document(merchants=[])) == {"merchants": [
        "must list at least one merchant; remove merchants for every merchant"]}


def test_bad_merchant_id_is_reported_at_its_item(registry):
    assert errors(registry, document(merchants=["m_100", "m 200"])) == {"merchants": {1: [
        "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"]}}


def test_merchant_listed_twice_is_rejected(registry):
    assert errors(registry, document(merchants=["m_1", "m_2", "m_1"])) == {
        "merchants": {2: ["m_1 is listed twice"]}}


# --- time zone and schedule --------------------------------------------------------------

def test_timezone_defaults_to_the_program_timezone(registry):
    campaign = load(registry, document(), default_timezone="Europe/London")
    assert campaign.timezone == "Europe/London"
    assert campaign.starts_at == datetime(2027, 2, 5, 0, 0, tzinfo=UTC)


def test_unknown_timezone_is_rejected(registry):
    assert errors(registry, document(timezone="Mars/Olympus")) == {
        "timezone": ["'Mars/Olympus' is not an IANA time zone (e.g. Asia/Shanghai)"]}


@pytest.mark.parametrize("zone", ["America", "../etc/passwd", "", "x" * 300])
def test_odd_timezone_keys_are_rejected_not_raised(registry, zone):
    assert list(errors(registry, document(timezone=zone))) == ["timezone"]


def test_starts_at_and_ends_at_are_required(registry):
    assert errors(registry, document(starts_at=OMIT, ends_at=OMIT)) == {
        "starts_at": ["Missing data for required field."],
        "ends_at": ["Missing data for required field."]}


def test_local_times_are_converted_to_utc(registry):
    campaign = load(registry, document(timezone="America/New_York",
                                       starts_at="2027-06-01T09:00:00",
                                       ends_at="2027-06-02T09:00:00"))
    assert campaign.starts_at == datetime(2027, 6, 1, 13, 0, tzinfo=UTC)
    assert campaign.ends_at == datetime(2027, 6, 2, 13, 0, tzinfo=UTC)


def test_datetime_objects_and_strings_mean_the_same(registry):
    from_strings = load(registry, document())
    from_datetimes = load(registry, document(starts_at=datetime(2027, 2, 5),
                                             ends_at=datetime(2027, 2, 13)))
    assert from_strings == from_datetimes


def test_a_date_means_local_midnight(registry):
    campaign = load(registry, document(starts_at="2027-02-05",
                                       ends_at=datetime(2027, 2, 13).date()))
    assert campaign.starts_at == datetime(2027, 2, 4, 16, 0, tzinfo=UTC)
    assert campaign.ends_at == datetime(2027, 2, 12, 16, 0, tzinfo=UTC)


def test_an_explicit_offset_is_honoured_as_that_instant(registry):
    campaign = load(registry, document(timezone="Europe/London",
                                       starts_at="2027-02-05T00:00:00+08:00",
                                       ends_at=datetime(2027, 2, 13, tzinfo=UTC)))
    assert campaign.starts_at == datetime(2027, 2, 4, 16, 0, tzinfo=UTC)
    assert campaign.ends_at == datetime(2027, 2, 13, 0, 0, tzinfo=UTC)


def test_ambiguous_local_time_takes_the_first_occurrence(registry):
    # 01:30 happens twice in New York on 2027-11-07: first EDT (-4), then EST (-5).
    campaign = load(registry, document(timezone="America/New_York",
                                       starts_at="2027-11-07T01:30:00",
                                       ends_at="2027-11-08T00:00:00"))
    assert campaign.starts_at == datetime(2027, 11, 7, 5, 30, tzinfo=UTC)


def test_nonexistent_local_time_moves_forward_by_the_gap(registry):
    # 02:30 does not exist in New York on 2027-03-14 (02:00 -> 03:00): it means 03:30 EDT.
    campaign = load(registry, document(timezone="America/New_York",
                                       starts_at="2027-03-14T02:30:00",
                                       ends_at="2027-03-15T00:00:00"))
    assert campaign.starts_at == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    assert campaign.starts_at.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") == \
        "03:30"


@pytest.mark.parametrize("value", ["next tuesday", "2027-13-01T00:00:00", 20270205, True, []])
def test_unreadable_datetime_is_rejected(registry, value):
    assert errors(registry, document(starts_at=value)) == {
        "starts_at": ["must be a date and time such as 2027-02-05T10:00:00"]}


@pytest.mark.parametrize("ends_at", ["2027-02-05T00:00:00", "2027-02-04T23:59:59"])
def test_ends_at_must_be_after_starts_at(registry, ends_at):
    assert errors(registry, document(ends_at=ends_at)) == {
        "ends_at": ["must be after starts_at"]}


def test_ends_at_is_compared_as_an_instant(registry):
    # 08:00 in Shanghai is 00:00 UTC: an end written in UTC at 00:30 is after it.
    campaign = load(registry, document(starts_at="2027-02-05T08:00:00",
                                       ends_at="2027-02-05T00:30:00+00:00"))
    assert campaign.ends_at - campaign.starts_at == timedelta(minutes=30)


def test_out_of_range_datetime_is_rejected(registry):
    assert errors(registry, document(starts_at="0001-01-01T00:00:00")) == {
        "starts_at": ["is out of range"]}


# --- windows ---------------------------------------------------------------------------------

def window(**fields):
    return document(windows=[{"from": "11:00", "to": "14:00", **fields}])


def test_window_without_days_covers_every_day(registry):
    assert load(registry, window()).windows == (
        Window(days=frozenset(range(7)), start=time(11), end=time(14)),)


def test_window_days_are_weekday_numbers(registry):
    assert load(registry, window(days=["mon", "Fri", "sun"])).windows[0].days == \
        frozenset({0, 4, 6})


@pytest.mark.parametrize("to", ["00:00", "24:00", time(0)])
def test_window_to_midnight_means_end_of_day(registry, to):
    assert load(registry, window(to=to)).windows[0].end is None


def test_window_accepts_time_objects(registry):
    assert load(registry, window(**{"from": time(9, 30), "to": time(17)})).windows[0] == \
        Window(days=frozenset(range(7)), start=time(9, 30), end=time(17))


def test_window_must_not_cross_midnight(registry):
    assert errors(registry, window(**{"from": "22:00", "to": "02:00"})) == {"windows": {0: {
        "to": ['must be after from; windows cannot cross midnight, split them (e.g. from '
               '"22:00" to "00:00" and from "00:00" to "02:00")']}}}


def test_window_to_equal_to_from_is_rejected(registry):
    assert list(errors(registry, window(**{"to": "11:00"}))["windows"][0]) == ["to"]


@pytest.mark.parametrize("value", ["25:00", "11:60", "11", "eleven", 660, "24:00", 11.5])
def test_window_from_must_be_a_time_of_day(registry, value):
    assert errors(registry, window(**{"from": value})) == {"windows": {0: {
        "from": ['must be a time of day "HH:MM", e.g. "11:00"']}}}


def test_window_from_and_to_are_required(registry):
    assert errors(registry, document(windows=[{"days": ["sat"]}])) == {"windows": {0: {
        "from": ["Missing data for required field."],
        "to": ["Missing data for required field."]}}}


def test_window_unknown_day_is_rejected(registry):
    assert errors(registry, window(days=["sat", "funday"])) == {"windows": {0: {"days": {1: [
        "must be one of mon, tue, wed, thu, fri, sat, sun"]}}}}


def test_window_day_listed_twice_is_rejected(registry):
    assert errors(registry, window(days=["sat", "sun", "sat"])) == {"windows": {0: {"days": {
        2: ["sat is listed twice"]}}}}


def test_window_empty_days_is_rejected(registry):
    assert errors(registry, window(days=[])) == {"windows": {0: {"days": [
        "must list at least one day; remove days for every day"]}}}


def test_empty_windows_list_is_rejected(registry):
    assert errors(registry, document(windows=[])) == {"windows": [
        "must list at least one window; remove windows for the whole period"]}


def test_window_that_is_not_a_mapping_is_rejected(registry):
    assert errors(registry, document(windows=["11:00-14:00"])) == {"windows": {0: {"_schema": [
        'must be a mapping such as {from: "11:00", to: "14:00"}']}}}


# --- conditions ------------------------------------------------------------------------------

def test_min_amount_is_money(registry):
    conditions = load(registry, document(conditions={"min_amount": "50"})).conditions
    assert conditions.min_amount == Decimal("50.00")


def test_min_amount_as_a_float_asks_for_a_string(registry):
    assert errors(registry, document(conditions={"min_amount": 50.5})) == {"conditions": {
        "min_amount": ['write money as a quoted string, e.g. "30.00"']}}


def test_mcc_written_as_a_number_is_taken_as_its_text(registry):
    assert load(registry, document(conditions={"mcc": [5812, "5814"]})).conditions.mcc == \
        frozenset({"5812", "5814"})


@pytest.mark.parametrize("code", [742, "742", "58121", "58a2", 5812.0, True])
def test_mcc_that_is_not_4_digits_asks_for_a_quoted_code(registry, code):
    assert errors(registry, document(conditions={"mcc": ["5812", code]})) == {"conditions": {
        "mcc": {1: ['write the code as a quoted 4-digit string, e.g. "5812"']}}}


def test_channels_become_a_set(registry):
    assert load(registry, document(conditions={"channels": ["qr", "online"]})) \
        .conditions.channels == frozenset({"qr", "online"})


def test_empty_channels_are_rejected(registry):
    assert errors(registry, document(conditions={"channels": []})) == {"conditions": {
        "channels": ["must list at least one channel; remove channels for every channel"]}}


def test_attribute_values_are_kept_as_strings(registry):
    conditions = load(registry, document(conditions={"attributes": {
        "segment": ["student"], "vip": [True, False], "tier": [2, "3"]}})).conditions
    assert conditions.attributes == {"segment": frozenset({"student"}),
                                     "vip": frozenset({"true", "false"}),
                                     "tier": frozenset({"2", "3"})}


def test_attribute_decimal_asks_for_a_quoted_string(registry):
    assert errors(registry, document(conditions={"attributes": {"score": ["4", 4.5]}})) == {
        "conditions": {"attributes": {"score": {1: [
            'write a decimal as a quoted string, e.g. "4.5"']}}}}


def test_attribute_values_must_be_a_list(registry):
    assert errors(registry, document(conditions={"attributes": {"segment": "student"}})) == {
        "conditions": {"attributes": {"segment": [
            "must be a non-empty list of accepted values, e.g. [student]"]}}}


# --- budget, limits, priority, exclusive ------------------------------------------------------

def test_money_budget(registry):
    assert load(registry, document(budget={"amount": "50000.00"})).budget == \
        Budget(amount=Decimal("50000.00"))


def test_points_budget(registry):
    campaign = load(registry, document(type="points_multiplier", params={"multiplier": 3},
                                       budget={"points": 1000000}))
    assert campaign.budget == Budget(points=1000000)


def test_budget_needs_exactly_one_of_amount_or_points(registry):
    assert errors(registry, document(budget={})) == {"budget": {"_schema": [
        "give exactly one of amount (money) or points"]}}
    assert errors(registry, document(budget={"amount": "1.00", "points": 5})) == {"budget": {
        "points": ["give exactly one of amount or points"]}}


def test_points_campaign_with_a_money_budget_says_use_points(registry):
    doc = document(type="points_multiplier", params={"multiplier": 3},
                   budget={"amount": "100.00"})
    assert errors(registry, doc) == {"budget": {"amount": [
        "this campaign grants points: use budget.points"]}}


def test_money_campaign_with_a_points_budget_says_use_amount(registry):
    assert errors(registry, document(budget={"points": 100})) == {"budget": {"points": [
        "this campaign grants money: use budget.amount"]}}


def test_first_activation_bonus_budget_unit_follows_its_reward(registry):
    cashback = document(type="first_activation_bonus", params={"cashback": "10.00"},
                        budget={"points": 100})
    assert errors(registry, cashback) == {"budget": {"points": [
        "this campaign grants money: use budget.amount"]}}
    points = document(type="first_activation_bonus", params={"points": 500},
                      budget={"points": 100})
    assert load(registry, points).budget == Budget(points=100)


@pytest.mark.parametrize("value", [0, -1, True, "3", 2.0, 10**30])
def test_limits_are_whole_numbers_of_at_least_1(registry, value):
    assert list(errors(registry, document(limits={"per_user": value}))["limits"]) == ["per_user"]


def test_limit_of_zero_says_the_range(registry):
    assert errors(registry, document(limits={"max_redemptions": 0})) == {"limits": {
        "max_redemptions": ["must be a whole number from 1 to 1000000000"]}}


def test_priority_must_be_a_whole_number(registry):
    assert load(registry, document(priority=-5)).priority == -5
    assert errors(registry, document(priority="100")) == {"priority": ["Not a valid integer."]}


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "on"])
def test_exclusive_must_be_true_or_false(registry, value):
    assert errors(registry, document(exclusive=value)) == {"exclusive": ["must be true or false"]}


# --- params, validated by each type's plugin ------------------------------------------------

@pytest.mark.parametrize("type_, bad_params, expected", [
    ("holiday_discount", {"percent": 150}, {"percent": ["must be between 0 and 100"]}),
    ("holiday_discount", {"percent": 10, "amount_off": "5.00"},
     {"percent": ["give exactly one of percent or amount_off"]}),
    ("holiday_discount", {"amount_off": "5.00", "max_discount": "3.00"},
     {"max_discount": ["max_discount goes with percent"]}),
    ("holiday_discount", {"percent": 10, "bonus": 1}, {"bonus": ["Unknown field."]}),
    ("points_multiplier", {"multiplier": 1}, {"multiplier": ["must be greater than 1"]}),
    ("points_multiplier", {"multiplier": "2.555"},
     {"multiplier": ["at most 2 decimal places"]}),
    ("first_activation_bonus", {},
     {"points": ["give exactly one of points, cashback or voucher"]}),
    ("first_activation_bonus", {"on": "signup", "points": 5},
     {"on": ["Must be one of: activation, first_payment."]}),
    ("first_activation_bonus", {"voucher": {"amount": "10.00", "valid_days": 0}},
     {"voucher": {"valid_days": ["Must be greater than or equal to 1 and less than or "
                                 "equal to 3650."]}}),
])
def test_params_errors_come_from_the_types_schema(registry, type_, bad_params, expected):
    assert errors(registry, document(type=type_, params=bad_params)) == {"params": expected}


def test_omitted_params_are_checked_as_empty(registry):
    assert errors(registry, document(type="points_multiplier", params=OMIT)) == {
        "params": {"multiplier": ["Missing data for required field."]}}


def test_params_of_an_unknown_type_are_not_checked(registry):
    assert errors(registry, document(type="mystery_box", params={"anything": 1})) == {
        "type": ["unknown campaign type 'mystery_box'; installed types: "
                 "first_activation_bonus, holiday_discount, points_exchange, points_multiplier"]}


def test_params_money_uses_the_program_currency(registry):
    doc = document(params={"amount_off": "30.50"})
    assert errors(registry, doc, currency="JPY") == {"params": {"amount_off": [
        "at most 0 decimal places for JPY"]}}
    assert load(registry, document(params={"amount_off": "30"}), currency="JPY") \
        .params == {"amount_off": Decimal("30")}
    assert params.CURRENCY.get() == "CNY"  # reset after the load


def test_first_activation_bonus_on_first_payment(registry):
    campaign = load(registry, document(type="first_activation_bonus",
                                       params={"on": "first_payment", "cashback": "10.00"}))
    assert campaign.params == {"on": "first_payment", "cashback": Decimal("10.00")}


# --- canonical spec and hash ------------------------------------------------------------------

def full_document():
    return document(
        timezone=OMIT, merchants=["m_100"],
        starts_at=datetime(2027, 2, 5), ends_at=datetime(2027, 2, 13).date(),
        windows=[{"days": ["sat"], "from": time(11), "to": "00:00"}],
        conditions={"min_amount": "50.00", "mcc": [5812], "attributes": {"vip": [True]}},
        budget={"amount": "100.00"}, limits={"per_user": 1}, priority=3, exclusive=True,
        params={"percent": 12.5, "max_discount": "30.00"})


def test_canonical_spec_is_json_with_timezone_filled_in():
    spec = canonical_spec(full_document(), "Asia/Shanghai")
    assert json.loads(json.dumps(spec)) == spec
    assert spec["timezone"] == "Asia/Shanghai"
    assert spec["starts_at"] == "2027-02-05T00:00:00"
    assert spec["ends_at"] == "2027-02-13"
    assert spec["windows"] == [{"days": ["sat"], "from": "11:00", "to": "00:00"}]


def test_canonical_spec_loads_as_the_same_campaign(registry):
    doc = full_document()
    spec = canonical_spec(doc, "Asia/Shanghai")
    # Loaded later under another default timezone, the stored spec still means the same.
    assert load(registry, spec, default_timezone="UTC") == load(registry, doc)


def test_canonical_spec_keeps_an_explicit_offset(registry):
    doc = document(starts_at=datetime(2027, 2, 5, tzinfo=timezone(timedelta(hours=9))))
    spec = canonical_spec(doc, "Asia/Shanghai")
    assert spec["starts_at"] == "2027-02-05T00:00:00+09:00"
    assert load(registry, spec) == load(registry, doc)


def test_canonical_spec_refuses_values_json_cannot_hold():
    with pytest.raises(TypeError, match="bytes"):
        canonical_spec(document(params={"blob": b"x"}), "UTC")


def test_spec_hash_ignores_key_order_and_sees_every_change():
    spec = canonical_spec(document(), "Asia/Shanghai")
    reordered = dict(reversed(list(spec.items())))
    assert spec_hash(reordered) == spec_hash(spec)
    assert len(spec_hash(spec)) == 64
    assert spec_hash({**spec, "priority": 1}) != spec_hash(spec)
