"""When a campaign applies: [starts_at, ends_at) as instants, windows in the campaign's
local time (DST included), and per-day limits on the campaign's local calendar day.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from factories import (discount, local, make_engine, make_user, minutes, payment, utc,
                       window)

MICROSECOND = timedelta(microseconds=1)
NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"
SHANGHAI = "Asia/Shanghai"


def applies(campaign, at) -> bool:
    decision = make_engine(campaign).evaluate(payment(at=at), make_user())
    return campaign.id in [g.reward.campaign_id for g in decision.grants]


def minutes_applied(campaign, start, end) -> int:
    engine = make_engine(campaign)
    return sum(1 for at in minutes(start, end)
               if len(engine.evaluate(payment(at=at), make_user()).grants) == 2)


# --- [starts_at, ends_at) ---------------------------------------------------------------

STARTS = utc(2027, 3, 1, 0, 0)
ENDS = utc(2027, 3, 8, 0, 0)


def dated(**overrides):
    return discount("dated", percent=10, starts_at=STARTS, ends_at=ENDS, **overrides)


def test_applies_at_exactly_starts_at():
    assert applies(dated(), STARTS)


def test_does_not_apply_one_microsecond_before_starts_at():
    assert not applies(dated(), STARTS - MICROSECOND)


def test_applies_one_microsecond_before_ends_at():
    assert applies(dated(), ENDS - MICROSECOND)


def test_does_not_apply_at_exactly_ends_at():
    assert not applies(dated(), ENDS)


def test_does_not_apply_after_ends_at():
    assert not applies(dated(), ENDS + timedelta(days=1))


def test_starts_at_is_an_instant_whatever_the_events_offset():
    shanghai_offset = timezone(timedelta(hours=8))
    assert applies(dated(), datetime(2027, 3, 1, 8, 0, tzinfo=shanghai_offset))


def test_just_before_starts_at_in_another_offset_does_not_apply():
    shanghai_offset = timezone(timedelta(hours=8))
    assert not applies(dated(), datetime(2027, 3, 1, 7, 59, 59, 999999, tzinfo=shanghai_offset))


def test_ends_at_is_an_instant_whatever_the_events_offset():
    new_york_offset = timezone(timedelta(hours=-5))
    assert not applies(dated(), datetime(2027, 3, 7, 19, 0, tzinfo=new_york_offset))
    assert applies(dated(), datetime(2027, 3, 7, 18, 59, 59, 999999, tzinfo=new_york_offset))


def test_start_right_after_the_spring_forward_gap_in_new_york():
    # Local 03:00 EDT on 2027-03-14 is the instant after 01:59:59.999999 EST.
    campaign = discount("spring", percent=10, timezone=NEW_YORK,
                        starts_at=local(NEW_YORK, 2027, 3, 14, 3, 0), ends_at=ENDS + timedelta(30))
    assert campaign.starts_at == utc(2027, 3, 14, 7, 0)
    assert not applies(campaign, utc(2027, 3, 14, 6, 59, 59, 999999))
    assert applies(campaign, utc(2027, 3, 14, 7, 0))


def test_end_inside_the_repeated_hour_in_new_york_is_exclusive_to_the_microsecond():
    # ends_at = 01:30 EST (the second 01:30) on 2027-11-07: both first-pass 01:xx EDT
    # and second-pass 01:00-01:29 EST are still inside.
    campaign = discount("fall", percent=10, timezone=NEW_YORK, starts_at=STARTS,
                        ends_at=local(NEW_YORK, 2027, 11, 7, 1, 30, fold=1))
    assert campaign.ends_at == utc(2027, 11, 7, 6, 30)
    assert applies(campaign, utc(2027, 11, 7, 5, 30))  # 01:30 EDT, the first 01:30
    assert applies(campaign, utc(2027, 11, 7, 6, 29, 59, 999999))
    assert not applies(campaign, utc(2027, 11, 7, 6, 30))


# --- windows ---------------------------------------------------------------------------

def lunch(**overrides):
    """Weekends 11:00-14:00 in Shanghai."""
    return discount("lunch", percent=10, windows=[window(["sat", "sun"], "11:00", "14:00")],
                    **overrides)


def test_window_applies_at_its_start():
    assert applies(lunch(), local(SHANGHAI, 2027, 6, 19, 11, 0))  # Saturday


def test_window_does_not_apply_one_microsecond_before_its_start():
    assert not applies(lunch(), local(SHANGHAI, 2027, 6, 19, 10, 59, 59, 999999))


def test_window_applies_one_microsecond_before_its_end():
    assert applies(lunch(), local(SHANGHAI, 2027, 6, 20, 13, 59, 59, 999999))  # Sunday


def test_window_does_not_apply_at_its_end():
    assert not applies(lunch(), local(SHANGHAI, 2027, 6, 20, 14, 0))


def test_window_does_not_apply_on_a_day_it_does_not_list():
    assert not applies(lunch(), local(SHANGHAI, 2027, 6, 18, 12, 0))  # Friday


def test_window_days_are_local_days_not_utc_days():
    # Saturday 01:00 in Shanghai is still Friday in UTC.
    campaign = discount("sat", percent=10, windows=[window(["sat"])])
    assert applies(campaign, utc(2027, 6, 18, 17, 0))


def test_window_day_ends_at_local_midnight_not_utc_midnight():
    # Sunday 00:30 in Shanghai is still Saturday in UTC.
    campaign = discount("sat", percent=10, windows=[window(["sat"])])
    assert not applies(campaign, utc(2027, 6, 19, 16, 30))


def test_window_without_end_runs_to_the_last_microsecond_of_the_day():
    campaign = discount("late", percent=10, windows=[window(["fri"], "23:00", None)])
    assert applies(campaign, local(SHANGHAI, 2027, 6, 18, 23, 59, 59, 999999))


def test_window_without_end_stops_at_midnight():
    campaign = discount("late", percent=10, windows=[window(["fri"], "23:00", None)])
    assert not applies(campaign, local(SHANGHAI, 2027, 6, 19, 0, 0))


def test_window_without_end_covers_from_its_start_to_midnight():
    campaign = discount("late", percent=10, windows=[window(["fri"], "23:00", None)])
    assert minutes_applied(campaign, local(SHANGHAI, 2027, 6, 18, 0, 0),
                           local(SHANGHAI, 2027, 6, 19, 2, 0)) == 60


def test_any_of_several_windows_is_enough():
    campaign = discount("split", percent=10, windows=[window(None, "08:00", "09:00"),
                                                      window(None, "18:00", "19:00")])
    assert applies(campaign, local(SHANGHAI, 2027, 6, 15, 18, 30))
    assert not applies(campaign, local(SHANGHAI, 2027, 6, 15, 12, 0))


def test_campaign_without_windows_applies_at_any_time_of_day():
    campaign = discount("always", percent=10)
    assert minutes_applied(campaign, local(SHANGHAI, 2027, 6, 15, 0, 0),
                           local(SHANGHAI, 2027, 6, 16, 0, 0)) == 24 * 60


def test_window_is_read_in_the_campaigns_timezone():
    # 12:00 in Berlin is 18:00 in Shanghai on 2027-06-15 (CEST, UTC+2).
    campaign = discount("noon", percent=10, timezone=BERLIN,
                        windows=[window(None, "12:00", "13:00")])
    assert applies(campaign, local(BERLIN, 2027, 6, 15, 12, 30))
    assert not applies(campaign, local(SHANGHAI, 2027, 6, 15, 12, 30))


def test_window_must_also_be_inside_the_campaign_dates():
    campaign = discount("lunch", percent=10, windows=[window(None, "11:00", "14:00")],
                        starts_at=STARTS, ends_at=ENDS)
    assert not applies(campaign, local(SHANGHAI, 2027, 3, 8, 12, 0))


# --- DST: New York, 2027-03-14 (02:00 EST -> 03:00 EDT) ------------------------------------

def new_york(start, end, days=("sun",)):
    return discount("ny", percent=10, timezone=NEW_YORK, windows=[window(days, start, end)])


NY_SPRING_DAY = (utc(2027, 3, 14, 5, 0), utc(2027, 3, 15, 4, 0))  # local 00:00 to 24:00 (23 h)
NY_FALL_DAY = (utc(2027, 11, 7, 4, 0), utc(2027, 11, 8, 5, 0))  # local 00:00 to 24:00 (25 h)


def test_new_york_window_inside_the_skipped_hour_never_applies():
    assert minutes_applied(new_york("02:00", "03:00"), *NY_SPRING_DAY) == 0


def test_new_york_window_across_the_skipped_hour_applies_until_the_jump():
    assert applies(new_york("01:00", "03:00"), utc(2027, 3, 14, 6, 59, 59, 999999))  # 01:59 EST


def test_new_york_window_across_the_skipped_hour_ends_at_the_jump():
    assert not applies(new_york("01:00", "03:00"), utc(2027, 3, 14, 7, 0))  # 03:00 EDT


def test_new_york_window_across_the_skipped_hour_lasts_one_real_hour():
    assert minutes_applied(new_york("01:00", "03:00"), *NY_SPRING_DAY) == 60


def test_new_york_window_starting_after_the_gap_applies_from_the_jump():
    assert applies(new_york("03:00", "04:00"), utc(2027, 3, 14, 7, 0))
    assert not applies(new_york("03:00", "04:00"), utc(2027, 3, 14, 6, 59, 59, 999999))


def test_new_york_day_long_window_lasts_23_hours_on_spring_forward_day():
    assert minutes_applied(new_york("00:00", None), *NY_SPRING_DAY) == 23 * 60


# --- DST: New York, 2027-11-07 (02:00 EDT -> 01:00 EST) -------------------------------------

def test_new_york_window_over_the_repeated_hour_applies_to_its_first_pass():
    assert applies(new_york("01:00", "02:00"), utc(2027, 11, 7, 5, 0))  # 01:00 EDT


def test_new_york_window_over_the_repeated_hour_applies_to_its_second_pass():
    assert applies(new_york("01:00", "02:00"), utc(2027, 11, 7, 6, 0))  # 01:00 EST
    assert applies(new_york("01:00", "02:00"), utc(2027, 11, 7, 6, 59, 59, 999999))


def test_new_york_window_over_the_repeated_hour_ends_at_two_standard_time():
    assert not applies(new_york("01:00", "02:00"), utc(2027, 11, 7, 7, 0))  # 02:00 EST


def test_new_york_window_over_the_repeated_hour_starts_at_its_first_pass():
    assert not applies(new_york("01:00", "02:00"), utc(2027, 11, 7, 4, 59, 59, 999999))


def test_new_york_window_over_the_repeated_hour_lasts_two_real_hours():
    assert minutes_applied(new_york("01:00", "02:00"), *NY_FALL_DAY) == 120


def test_new_york_window_after_the_repeated_hour_lasts_one_real_hour():
    assert minutes_applied(new_york("02:00", "03:00"), *NY_FALL_DAY) == 60


def test_new_york_day_long_window_lasts_25_hours_on_fall_back_day():
    assert minutes_applied(new_york("00:00", None), *NY_FALL_DAY) == 25 * 60


# --- DST: Berlin, 2027-03-28 (02:00 CET -> 03:00 CEST) and 2027-10-31 (03:00 CEST -> 02:00 CET)

def berlin(start, end, days=("sun",)):
    return discount("berlin", percent=10, timezone=BERLIN, windows=[window(days, start, end)])


BERLIN_SPRING_DAY = (utc(2027, 3, 27, 23, 0), utc(2027, 3, 28, 22, 0))
BERLIN_FALL_DAY = (utc(2027, 10, 30, 22, 0), utc(2027, 10, 31, 23, 0))


def test_berlin_window_inside_the_skipped_hour_never_applies():
    assert minutes_applied(berlin("02:00", "03:00"), *BERLIN_SPRING_DAY) == 0


def test_berlin_window_across_the_skipped_hour_applies_until_the_jump():
    assert applies(berlin("01:00", "03:00"), utc(2027, 3, 28, 0, 59, 59, 999999))  # 01:59 CET
    assert not applies(berlin("01:00", "03:00"), utc(2027, 3, 28, 1, 0))  # 03:00 CEST


def test_berlin_window_starting_after_the_gap_applies_from_the_jump():
    assert applies(berlin("03:00", "04:00"), utc(2027, 3, 28, 1, 0))
    assert not applies(berlin("03:00", "04:00"), utc(2027, 3, 28, 0, 59, 59, 999999))


def test_berlin_window_across_the_skipped_hour_lasts_one_real_hour():
    assert minutes_applied(berlin("01:00", "03:00"), *BERLIN_SPRING_DAY) == 60


def test_berlin_window_over_the_repeated_hour_applies_to_both_passes():
    campaign = berlin("02:00", "03:00")
    assert applies(campaign, utc(2027, 10, 31, 0, 0))  # 02:00 CEST
    assert applies(campaign, utc(2027, 10, 31, 0, 59, 59, 999999))  # 02:59 CEST
    assert applies(campaign, utc(2027, 10, 31, 1, 0))  # 02:00 CET
    assert applies(campaign, utc(2027, 10, 31, 1, 59, 59, 999999))  # 02:59 CET


def test_berlin_window_over_the_repeated_hour_is_bounded_by_both_edges():
    campaign = berlin("02:00", "03:00")
    assert not applies(campaign, utc(2027, 10, 30, 23, 59, 59, 999999))  # 01:59 CEST
    assert not applies(campaign, utc(2027, 10, 31, 2, 0))  # 03:00 CET


def test_berlin_window_over_the_repeated_hour_lasts_two_real_hours():
    assert minutes_applied(berlin("02:00", "03:00"), *BERLIN_FALL_DAY) == 120


def test_berlin_campaign_ending_at_the_second_two_oclock_is_exclusive():
    campaign = discount("berlin", percent=10, timezone=BERLIN, starts_at=STARTS,
                        ends_at=local(BERLIN, 2027, 10, 31, 2, 0, fold=1))
    assert campaign.ends_at == utc(2027, 10, 31, 1, 0)
    assert applies(campaign, utc(2027, 10, 31, 0, 59, 59, 999999))
    assert not applies(campaign, utc(2027, 10, 31, 1, 0))


# --- local calendar days ------------------------------------------------------------------

def daily(**overrides):
    return discount("daily", percent=10, limits={"per_user_daily": 1}, **overrides)


def test_local_day_of_a_grant_is_the_campaigns_calendar_day():
    # 2027-03-01 16:30 UTC is 2027-03-02 00:30 in Shanghai.
    decision = make_engine(daily()).evaluate(payment(at=utc(2027, 3, 1, 16, 30)), make_user())
    assert decision.grants[1].local_day == date(2027, 3, 2)


def test_local_day_of_a_grant_before_local_midnight_is_the_previous_day():
    decision = make_engine(daily()).evaluate(
        payment(at=utc(2027, 3, 1, 15, 59, 59, 999999)), make_user())
    assert decision.grants[1].local_day == date(2027, 3, 1)


def test_per_user_daily_resets_at_local_midnight_not_utc_midnight():
    user = make_user(daily_uses={("daily", date(2027, 3, 1)): 1})
    decision = make_engine(daily()).evaluate(payment(at=utc(2027, 3, 1, 16, 0)), user)
    assert [g.reward.campaign_id for g in decision.grants] == [None, "daily"]


def test_per_user_daily_still_counts_the_local_day_one_microsecond_before_midnight():
    user = make_user(daily_uses={("daily", date(2027, 3, 1)): 1})
    decision = make_engine(daily()).evaluate(
        payment(at=utc(2027, 3, 1, 15, 59, 59, 999999)), user)
    assert [g.reward.campaign_id for g in decision.grants] == [None]


def test_per_user_daily_counts_the_local_day_across_utc_midnight():
    # 2027-03-02 07:00 Shanghai and 2027-03-01 23:00 UTC are the same local day.
    user = make_user(daily_uses={("daily", date(2027, 3, 2)): 1})
    decision = make_engine(daily()).evaluate(payment(at=utc(2027, 3, 1, 23, 0)), user)
    assert [g.reward.campaign_id for g in decision.grants] == [None]


def test_per_user_daily_after_utc_midnight_is_still_the_same_local_day():
    user = make_user(daily_uses={("daily", date(2027, 3, 2)): 1})
    decision = make_engine(daily()).evaluate(payment(at=utc(2027, 3, 2, 0, 30)), user)
    assert [g.reward.campaign_id for g in decision.grants] == [None]


def test_local_day_follows_each_campaigns_own_timezone():
    # 2027-03-01 20:00 UTC: 2027-03-02 in Shanghai, 2027-03-01 in New York.
    engine = make_engine(discount("cn", percent=10, priority=1),
                         discount("us", percent=5, timezone=NEW_YORK))
    decision = engine.evaluate(payment(at=utc(2027, 3, 1, 20, 0)), make_user())
    assert [(g.reward.campaign_id, g.local_day) for g in decision.grants[1:]] == \
        [("cn", date(2027, 3, 2)), ("us", date(2027, 3, 1))]


def test_both_passes_of_the_repeated_hour_are_one_local_day():
    user = make_user(daily_uses={("daily", date(2027, 11, 7)): 1})
    engine = make_engine(daily(timezone=NEW_YORK))
    for at in (utc(2027, 11, 7, 5, 30), utc(2027, 11, 7, 6, 30)):  # 01:30 EDT, 01:30 EST
        decision = engine.evaluate(payment(at=at), user)
        assert [g.reward.campaign_id for g in decision.grants] == [None]
