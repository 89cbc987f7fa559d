"""Targeting by the user's history (`conditions.user`) and holdouts, in the schema and the
pure engine (contract section 2, "Targeting, holdouts and abuse limits"). Through the API,
on each database and with Redis counters: test_targeting_api.py."""
from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from promo_engine.campaigns.schema import load_campaign
from promo_engine.campaigns.schema_errors import CampaignInvalid
from promo_engine.core.campaign import Conditions, UserConditions
from promo_engine.core.compiled import HELD_OUT, USER_HISTORY_NOT_MATCHED
from promo_engine.core.event import Event
from promo_engine.core.targeting import held_out, history_matches, holdout_bucket

from factories import (DEFAULT_AT, builtin_registry, campaign_ids, discount, make_campaign,
                       make_engine, new_user, payment, utc)

# --- the schema -------------------------------------------------------------------------------

def document(**fields):
    return {"id": "win-back", "type": "holiday_discount", "starts_at": "2027-03-01T00:00:00",
            "ends_at": "2027-09-01T00:00:00", "params": {"amount_off": "15.00"}, **fields}


def load(doc):
    return load_campaign(doc, registry=builtin_registry(), currency="CNY",
                         default_timezone="Asia/Shanghai")


def errors(doc) -> dict:
    with pytest.raises(CampaignInvalid) as info:
        load(doc)
    return info.value.messages


def test_user_conditions_and_holdout_load():
    campaign = load(document(conditions={"min_amount": "50.00", "user": {
        "min_payments": 1, "max_payments": 9, "inactive_days": 30}}, holdout=10))
    assert campaign.conditions.user == UserConditions(min_payments=1, max_payments=9,
                                                      inactive_days=30)
    assert campaign.holdout == 10


def test_defaults_are_no_user_condition_and_no_holdout():
    campaign = load(document())
    assert (campaign.conditions.user, campaign.holdout) == (None, 0)


def test_an_empty_user_mapping_is_no_condition():
    assert load(document(conditions={"user": {}})).conditions == Conditions()


@pytest.mark.parametrize("value", [0, 1_000_000_000])
def test_zero_and_the_largest_count_are_accepted(value):
    user = {"min_payments": value, "max_payments": value, "inactive_days": min(value, 36500)}
    assert load(document(conditions={"user": user})).conditions.user == UserConditions(
        value, value, min(value, 36500))


@pytest.mark.parametrize("name, value, message", [
    ("min_payments", -1, "must be a whole number from 0 to 1000000000"),
    ("max_payments", 1_000_000_001, "must be a whole number from 0 to 1000000000"),
    ("inactive_days", 36501, "must be a whole number from 0 to 36500"),
    ("inactive_days", -1, "must be a whole number from 0 to 36500"),
    ("min_payments", True, "must be a whole number"),
    ("min_payments", "3", "Not a valid integer."),
    ("inactive_days", 2.5, "Not a valid integer."),
])
def test_user_counts_are_whole_numbers_in_range(name, value, message):
    assert errors(document(conditions={"user": {name: value}})) == {
        "conditions": {"user": {name: [message]}}}


def test_max_payments_below_min_payments_is_rejected_at_max_payments():
    assert errors(document(conditions={"user": {"min_payments": 3, "max_payments": 2}})) == {
        "conditions": {"user": {"max_payments": [
            "must be at least min_payments: no user could match"]}}}


def test_max_payments_equal_to_min_payments_is_accepted():
    user = load(document(conditions={"user": {"min_payments": 2, "max_payments": 2}}))
    assert user.conditions.user == UserConditions(min_payments=2, max_payments=2)


def test_unknown_user_key_and_a_list_are_rejected():
    assert errors(document(conditions={"user": {"min_payment": 1}})) == {
        "conditions": {"user": {"min_payment": ["Unknown field."]}}}
    assert errors(document(conditions={"user": [1]})) == {"conditions": {"user": {"_schema": [
        "must be a mapping such as {min_payments: 1, inactive_days: 30}"]}}}
    assert errors(document(conditions={"user": None})) == {"conditions": {"user": [
        "must not be empty: give a value or remove the key"]}}


@pytest.mark.parametrize("value, message", [
    (51, "must be a whole number from 0 to 50"), (-1, "must be a whole number from 0 to 50"),
    (10.0, "Not a valid integer."), ("10", "Not a valid integer."),
    (False, "must be a whole number")])
def test_holdout_is_a_whole_percent_from_0_to_50(value, message):
    assert errors(document(holdout=value)) == {"holdout": [message]}


def test_holdout_of_0_and_50_are_accepted():
    assert [load(document(holdout=n)).holdout for n in (0, 50)] == [0, 50]


def test_errors_are_reported_at_their_lines(tmp_path):
    from promo_engine.campaigns.files import load_paths
    path = tmp_path / "win-back.yaml"
    path.write_text("id: win-back\ntype: holiday_discount\nstarts_at: 2027-03-01T00:00:00\n"
                    "ends_at: 2027-09-01T00:00:00\nconditions:\n  user:\n    min_payments: 4\n"
                    "    max_payments: 1\n    inactive_days: -3\nholdout: 60\n"
                    "params: {amount_off: \"15.00\"}\n")
    result = load_paths([path], registry=builtin_registry(), currency="CNY",
                        default_timezone="Asia/Shanghai")
    assert [str(problem) for problem in result.problems] == [
        f"{path}:9: conditions.user.inactive_days: must be a whole number from 0 to 36500",
        f"{path}:10: holdout: must be a whole number from 0 to 50"]
    path.write_text(path.read_text().replace("inactive_days: -3", "inactive_days: 3")
                    .replace("holdout: 60", "holdout: 5"))
    result = load_paths([path], registry=builtin_registry(), currency="CNY",
                        default_timezone="Asia/Shanghai")
    assert [str(problem) for problem in result.problems] == [
        f"{path}:8: conditions.user.max_payments: must be at least min_payments: no user "
        "could match"]


# --- history: what each condition means ---------------------------------------------------

LAST = utc(2027, 3, 1, 4, 0)  # 12:00 in Shanghai
DAY = timedelta(days=1)


@pytest.mark.parametrize("conditions, payments, last, at, expected", [
    (UserConditions(min_payments=1), 0, None, LAST, False),
    (UserConditions(min_payments=1), 1, LAST, LAST, True),
    (UserConditions(max_payments=0), 0, None, LAST, True),
    (UserConditions(max_payments=0), 1, LAST, LAST, False),
    (UserConditions(max_payments=2), 2, LAST, LAST, True),
    (UserConditions(max_payments=2), 3, LAST, LAST, False),
    # exactly N x 24 hours, not calendar days: one second short does not do
    (UserConditions(inactive_days=30), 1, LAST, LAST + 30 * DAY, True),
    (UserConditions(inactive_days=30), 1, LAST, LAST + 30 * DAY - timedelta(seconds=1), False),
    (UserConditions(inactive_days=30), 1, LAST, LAST + 30 * DAY + timedelta(microseconds=1), True),
    # a user who never paid is never inactive
    (UserConditions(inactive_days=0), 0, None, LAST, False),
    (UserConditions(inactive_days=30), 0, None, LAST + 999 * DAY, False),
    (UserConditions(inactive_days=0), 1, LAST, LAST, True),
    # a late event (before the last payment recorded) does not find the user inactive
    (UserConditions(inactive_days=0), 1, LAST, LAST - timedelta(seconds=1), False),
    (UserConditions(min_payments=1, inactive_days=30), 4, LAST, LAST + 31 * DAY, True),
    (UserConditions(min_payments=5, inactive_days=30), 4, LAST, LAST + 31 * DAY, False),
])
def test_history_matches(conditions, payments, last, at, expected):
    assert history_matches(conditions, payments, last, at) is expected


def test_inactive_days_do_not_depend_on_the_time_zone_of_the_times():
    from zoneinfo import ZoneInfo
    last = LAST.astimezone(ZoneInfo("America/New_York"))
    at = (LAST + 30 * DAY).astimezone(ZoneInfo("Asia/Shanghai"))
    assert history_matches(UserConditions(inactive_days=30), 1, last, at) is True
    assert history_matches(UserConditions(inactive_days=30), 1, last,
                           at - timedelta(seconds=1)) is False


# --- the holdout's hash ---------------------------------------------------------------------

@pytest.mark.parametrize("campaign_id, user_id, bucket", [
    ("win-back-30-days", "u_1", 7604), ("win-back-30-days", "u_4", 160),
    ("win-back-30-days", "alice", 1657), ("win-back-30-days", "bob", 9953),
    ("held", "u_0", 7562), ("held", "u_2", 387), ("held", "u_19", 7358),
    ("win-back-measured", "u_1", 1451),
])
def test_holdout_buckets_are_pinned(campaign_id, user_id, bucket):
    """The assignment must never change between versions: a user held out yesterday is
    held out today, or the control group is no control."""
    assert holdout_bucket(campaign_id, user_id) == bucket


def test_the_bucket_is_the_documented_formula():
    for campaign_id, user_id in [("win-back-30-days", "u_4"), ("c", "用户-1"), ("a-b", "x:y")]:
        digest = hashlib.sha256(f"{campaign_id}:{user_id}".encode()).hexdigest()
        assert holdout_bucket(campaign_id, user_id) == int(digest[:16], 16) % 10_000


def test_held_out_is_bucket_below_percent_times_100():
    # u_4's bucket for win-back-30-days is 160: held out from 2% up
    assert [held_out("win-back-30-days", "u_4", p) for p in (0, 1, 2, 10, 50)] == [
        False, False, True, True, True]
    assert [held_out("win-back-30-days", "alice", p) for p in (16, 17)] == [False, True]


@pytest.mark.parametrize("percent, count", [(0, 0), (1, 99), (10, 985), (25, 2570), (50, 5033)])
def test_about_the_percent_of_10000_users_is_held_out(percent, count):
    users = [f"u_{n}" for n in range(10_000)]
    assert sum(held_out("win-back-30-days", user, percent) for user in users) == count
    assert abs(count - percent * 100) <= 100  # within 1 point of the percent


def test_raising_the_holdout_keeps_those_held_out_before():
    users = [f"u_{n}" for n in range(2_000)]
    ten = {u for u in users if held_out("c", u, 10)}
    twenty = {u for u in users if held_out("c", u, 20)}
    assert ten < twenty


def test_each_campaign_draws_its_own_group():
    users = [f"u_{n}" for n in range(2_000)]
    one = {u for u in users if held_out("one", u, 50)}
    two = {u for u in users if held_out("two", u, 50)}
    # independent halves: each about 1,000, and about a quarter of the users in both
    assert (len(one), len(two), len(one & two)) == (999, 1005, 512)


# --- the engine -------------------------------------------------------------------------------

def user_conditions(**values) -> Conditions:
    return Conditions(user=UserConditions(**values))


def history(payments=0, last=None, user_id="u_1"):
    return new_user(user_id, payments=payments, last_payment_at=last)


def test_a_campaign_applies_only_to_the_users_its_history_conditions_name():
    engine = make_engine(
        discount("never-paid", amount_off="1.00", conditions=user_conditions(max_payments=0)),
        discount("first-three", amount_off="2.00", conditions=user_conditions(max_payments=2)),
        discount("regulars", amount_off="3.00", conditions=user_conditions(min_payments=3)),
        discount("win-back", amount_off="4.00",
                 conditions=user_conditions(min_payments=1, inactive_days=30)))
    at = DEFAULT_AT

    def applied(user):
        return campaign_ids(engine.evaluate(payment("100.00", at=at), user))

    assert applied(history(0)) == [None, "first-three", "never-paid"]
    assert applied(history(2, at - DAY)) == [None, "first-three"]
    assert applied(history(3, at - 30 * DAY + timedelta(seconds=1))) == [None, "regulars"]
    assert applied(history(3, at - 30 * DAY)) == [None, "regulars", "win-back"]


def test_a_user_condition_applies_to_any_event_the_type_rewards():
    from factories import activation, bonus
    engine = make_engine(bonus("welcome-new", points=50,
                               conditions=user_conditions(max_payments=0)))
    assert campaign_ids(engine.evaluate(activation(), history(0))) == ["welcome-new"]
    assert campaign_ids(engine.evaluate(activation(), history(1, LAST))) == []


def held_and_not(campaign_id: str, percent: int, count: int = 40) -> tuple[list, list]:
    users = [f"u_{n}" for n in range(count)]
    return ([u for u in users if held_out(campaign_id, u, percent)],
            [u for u in users if not held_out(campaign_id, u, percent)])


def test_a_held_out_user_gets_nothing_from_the_campaign_and_the_rest_get_it():
    engine = make_engine(discount("held", amount_off="7.00", holdout=50))
    held, treated = held_and_not("held", 50, 20)
    assert held == ["u_2", "u_4", "u_7", "u_8", "u_9", "u_10", "u_11", "u_13", "u_15",
                    "u_16", "u_17"]
    for user_id in held:
        assert campaign_ids(engine.evaluate(payment(user_id=user_id), history(user_id=user_id))) \
            == [None]
    for user_id in treated:
        assert campaign_ids(engine.evaluate(payment(user_id=user_id), history(user_id=user_id))) \
            == [None, "held"]


def test_a_held_out_exclusive_campaign_does_not_block_lower_ones():
    """Held out is skipped like a campaign whose conditions fail: the control group gets
    what it would have had without the campaign."""
    engine = make_engine(
        discount("held", amount_off="7.00", holdout=50, priority=10, exclusive=True),
        discount("everyday", amount_off="1.00"))
    held, treated = "u_2", "u_0"
    assert held_and_not("held", 50, 3) == ([held], ["u_0", "u_1"])
    assert campaign_ids(engine.evaluate(payment(user_id=held), history(user_id=held))) == [
        None, "everyday"]
    assert campaign_ids(engine.evaluate(payment(user_id=treated), history(user_id=treated))) \
        == [None, "held"]


def test_a_held_out_user_takes_nothing_from_the_budget():
    from factories import BudgetGate
    engine = make_engine(discount("held", amount_off="7.00", holdout=50,
                                  budget={"amount": "7.00"}))
    gate = BudgetGate()
    assert campaign_ids(engine.evaluate(payment(user_id="u_2"), history(user_id="u_2"),
                                        gate)) == [None]
    assert campaign_ids(engine.evaluate(payment(user_id="u_0"), history(user_id="u_0"),
                                        gate)) == [None, "held"]


def test_holdout_0_changes_nothing():
    plain = make_engine(discount("d", amount_off="7.00", limits={"per_user": 5}))
    zero = make_engine(discount("d", amount_off="7.00", limits={"per_user": 5}, holdout=0))
    assert zero.campaigns["d"].targeted is False
    for n in range(200):
        event, user = payment(user_id=f"u_{n}"), history(user_id=f"u_{n}")
        assert zero.evaluate(event, user) == plain.evaluate(event, user)


def test_only_targeted_campaigns_are_checked_for_the_user():
    engine = make_engine(discount("plain", amount_off="1.00"),
                         discount("limited", amount_off="1.00", limits={"per_user": 1}),
                         discount("history", amount_off="1.00",
                                  conditions=user_conditions(max_payments=0)),
                         discount("held", amount_off="1.00", holdout=5))
    assert [(c.id, c.user_checked, c.targeted) for c in engine.campaigns.values()] == [
        ("plain", False, False), ("limited", True, False), ("history", True, True),
        ("held", True, True)]


# --- why an exchange does not apply ---------------------------------------------------------

def exchange(**overrides):
    return make_campaign("mall", "points_exchange", {"cost_points": 10, "cashback": "1.00"},
                         **overrides)


def redemption(user_id="u_1", at=DEFAULT_AT):
    return Event(type="redemption", user_id=user_id, occurred_at=at, event_id="evt_r",
                 campaign_id="mall")


def test_unavailable_reason_names_the_users_history():
    engine = make_engine(exchange(conditions=user_conditions(min_payments=1)))
    assert engine.unavailable_reason(redemption(), history(0)) == USER_HISTORY_NOT_MATCHED
    assert USER_HISTORY_NOT_MATCHED == \
        "the user's history does not match the campaign's conditions"
    assert engine.unavailable_reason(redemption(), history(1, LAST)) is None


def test_unavailable_reason_names_the_holdout():
    engine = make_engine(exchange(holdout=50))
    # bucket("mall", u) decides; u_0 and u_1 fall on either side of 5,000
    held, treated = held_and_not("mall", 50, 2)
    assert (held, treated) == (["u_1"], ["u_0"])
    assert engine.unavailable_reason(redemption("u_1"), history(user_id="u_1")) == HELD_OUT
    assert HELD_OUT == "the user is held out of this campaign (its control group)"
    assert engine.unavailable_reason(redemption("u_0"), history(user_id="u_0")) is None


def test_the_compiled_campaign_explains_payments_too():
    engine = make_engine(discount("first", amount_off="1.00",
                                  conditions=user_conditions(max_payments=0), holdout=50))
    compiled = engine.campaigns["first"]
    from promo_engine.core.campaign_type import EvaluationContext

    def why(user):
        return compiled.unavailable_reason(EvaluationContext(payment(user_id=user.user_id),
                                                             user, 100))
    assert [u for u in ("u_0", "u_1", "u_2") if compiled.holds_out(u)] == ["u_1"]
    assert why(history(1, LAST, "u_1")) == USER_HISTORY_NOT_MATCHED  # history is asked first
    assert why(history(0, None, "u_1")) == HELD_OUT
    assert why(history(0, None, "u_0")) is None
