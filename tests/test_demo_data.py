"""`promo-engine demo-data`: a synthetic history the API accepts line by line, the same for
the same seed, with the funnel, refunds, merchants and holidays it promises."""
from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import iso18245
import pytest
from click.testing import CliRunner

from conftest import make_settings
from promo_engine.api.schemas import EventRequestSchema
from promo_engine.backtest import demo_calendar, demo_merchants
from promo_engine.backtest.demo_data import DemoOptions, write_demo_data
from promo_engine.cli import main
from promo_engine.core.event import BUILTIN_EVENT_TYPES, Event
from wallet import new_wallet_client

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "campaigns"


def generate(users: int, days: int, **options) -> bytes:
    out = io.BytesIO()
    write_demo_data(DemoOptions(users=users, days=days, **options), out)
    return out.getvalue()


def bodies(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode("ascii").splitlines()]


def when(body: dict) -> datetime:
    return datetime.fromisoformat(body["occurred_at"])


@pytest.fixture(scope="module")
def history() -> list[dict]:
    """8,000 customers over 60 days from the default start (Double 11 on day 11)."""
    return bodies(generate(8000, 60, seed=11))


def test_the_same_seed_gives_the_same_bytes_and_another_seed_others():
    first = generate(200, 20, seed=5)
    assert first == generate(200, 20, seed=5)
    assert first != generate(200, 20, seed=6)
    # the ids name the options, so two files can be posted to one service
    assert bodies(first)[0]["event_id"] != bodies(generate(200, 20, seed=6))[0]["event_id"]


@pytest.mark.parametrize("zone, currency, start", [
    ("Asia/Shanghai", "CNY", date(2026, 11, 1)),
    ("Europe/Berlin", "EUR", date(2026, 10, 20)),  # summer time ends on 25 October
    ("Asia/Kolkata", "JPY", date(2026, 11, 1)),   # +05:30, and no minor digits
    ("America/New_York", "BHD", date(2027, 3, 10)),  # summer time starts on 14 March
    ("Australia/Lord_Howe", "AUD", date(2026, 9, 28)),  # +10:30, +11:00 from 4 October
])
def test_every_line_is_an_event_the_api_accepts_in_occurred_at_order(zone, currency, start):
    data = generate(150, 12, seed=3, timezone=zone, currency=currency, start=start)
    assert data.endswith(b"\n") and b"\n\n" not in data
    # The API's own schema, with its clock after the history (events may not be ahead of it).
    schema = EventRequestSchema(event_types=BUILTIN_EVENT_TYPES, currency=currency,
                                now=lambda: datetime(2100, 1, 1, tzinfo=timezone.utc))
    events = [schema.load(body) for body in bodies(data)]
    assert len({event.event_id for event in events}) == len(events)
    times = [event.occurred_at for event in events]
    assert times == sorted(times)
    lines = bodies(data)
    assert {when(body).utcoffset() for body in lines} == {
        start_offset(zone, day) for day in (start + timedelta(days=n) for n in range(12))}
    assert {event.type for event in events} == {"activation", "payment", "refund"}
    payment = next(body for body in lines if body["type"] == "payment")
    digits = {"CNY": 2, "EUR": 2, "JPY": 0, "BHD": 3, "AUD": 2}[currency]
    assert len(payment["amount"].partition(".")[2]) == digits
    assert all(body.get("currency", currency) == currency for body in lines)


def start_offset(zone: str, day: date) -> timedelta:
    from zoneinfo import ZoneInfo
    return datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(zone)).utcoffset()


def test_refunds_follow_their_payments_and_never_exceed_them(history):
    payments = {}
    refunded = 0
    for body in history:
        if body["type"] == "payment":
            payments[body["event_id"]] = body
        elif body["type"] == "refund":
            paid = payments[body["original_event_id"]]  # earlier in the file
            assert paid["user_id"] == body["user_id"]
            assert paid["merchant_id"] == body["merchant_id"] and paid["mcc"] == body["mcc"]
            assert Decimal(body["amount"]) <= Decimal(paid["amount"])
            assert when(body).date() > when(paid).date()  # some days later
            refunded += 1
    partial = sum(1 for body in history if body["type"] == "refund"
                  and body["amount"] != payments[body["original_event_id"]]["amount"])
    assert refunded > 500 and 0.25 < partial / refunded < 0.55  # 40% drawn as partial


def test_about_three_percent_of_payments_are_refunded(history):
    # A refund comes 1 to 30 days after its payment, so only payments at least 30 days
    # before the end have had their whole chance. Of n ~ 30,000 such payments, 3% refunded
    # has a standard deviation of sqrt(0.03 x 0.97 / n) < 0.1 percentage point: the bounds
    # are more than 4 of them away, and still say "about 3%".
    cutoff = when(history[-1]).date() - timedelta(days=30)
    early = {body["event_id"] for body in history
             if body["type"] == "payment" and when(body).date() < cutoff}
    refunds = sum(1 for body in history if body["type"] == "refund"
                  and body["original_event_id"] in early)
    assert len(early) > 25000
    assert 0.026 < refunds / len(early) < 0.034


def test_the_activation_funnel(history):
    # Customers who activated at least 31 days before the end: each was drawn into
    # "never" (22%), "within a day" (43%) or "later" (35%); with ~4,900 of them a share's
    # standard deviation is under 0.8 point, the bounds are 4 points away.
    end = when(history[-1])
    activated = {body["user_id"]: when(body) for body in history
                 if body["type"] == "activation" and when(body) < end - timedelta(days=31)}
    first_payment: dict[str, datetime] = {}
    for body in history:
        if body["type"] == "payment":
            first_payment.setdefault(body["user_id"], when(body))
    assert len(activated) > 2500
    never = sum(1 for user in activated if user not in first_payment) / len(activated)
    soon = sum(1 for user, at in activated.items()
               if user in first_payment and first_payment[user] - at <= timedelta(days=1))
    soon /= len(activated)
    assert 0.18 < never < 0.26
    assert 0.39 < soon < 0.47
    assert 0.31 < 1 - never - soon < 0.39
    assert all(first_payment[user] > at for user, at in activated.items()
               if user in first_payment)


def test_repeat_payers_at_varied_rates_and_churn(history):
    end = when(history[-1]).date()
    payments: dict[str, list[date]] = defaultdict(list)
    for body in history:
        if body["type"] == "payment":
            payments[body["user_id"]].append(when(body).date())
    start = when(history[0]).date()
    early = [days for days in payments.values() if days[0] < start + timedelta(days=10)]
    counts = Counter(min(len(days), 30) for days in early)
    assert len(early) > 1000
    assert counts[1] > 0.03 * len(early)  # once and never again (6% drawn)
    assert counts[30] > 0.15 * len(early)  # thirty times or more in two months (24%)
    gone = sum(1 for days in early if days[-1] < end - timedelta(days=20)) / len(early)
    assert 0.25 < gone < 0.6  # paid early on, nothing in the last 20 days (34%)


def test_merchants_have_valid_iso_18245_codes_and_a_realistic_mix(history):
    payments = [body for body in history if body["type"] == "payment"]
    codes = Counter(body["mcc"] for body in payments)
    for code in codes:
        assert iso18245.get_mcc(code).iso_description, code  # in the ISO list itself
    assert {category.key for category in demo_merchants.CATEGORIES} >= {
        "restaurant", "supermarket", "convenience", "coffee", "commute", "online"}
    # restaurants and fast food (5812, 5814) together are the biggest group, as in a
    # Chinese wallet; phone top-ups (4814) are a small tail
    assert codes.most_common(2)[0][0] in ("5812", "5814")
    assert codes["4814"] < 0.03 * len(payments)
    channels = Counter(body["channel"] for body in payments)
    assert channels.most_common(1)[0][0] == "qr"
    hours = Counter(when(body).hour for body in payments)
    assert hours[12] > 1.5 * hours[10] and hours[12] > 10 * hours[3]  # lunch, not night
    assert hours[18] > hours[16]  # dinner


def test_holiday_keys_name_real_categories():
    keys = {category.key for category in demo_merchants.CATEGORIES}
    for offset in range(400):
        kind = demo_calendar.day_kind(date(2026, 9, 1) + timedelta(days=offset))
        assert set(kind.boosts) <= keys and set(kind.spend) <= keys
    for segment in demo_merchants.SEGMENTS:
        assert set(segment.likes) <= keys


def as_event(body: dict) -> Event:
    """The engine's event of a line (the API's schema accepts every line: tested above;
    building it directly keeps this test fast)."""
    amount = body.get("amount")
    return Event(type=body["type"], user_id=body["user_id"],
                 occurred_at=when(body).astimezone(timezone.utc), event_id=body["event_id"],
                 merchant_id=body.get("merchant_id"), amount=Decimal(amount) if amount else None,
                 currency=body.get("currency"), mcc=body.get("mcc"), channel=body.get("channel"),
                 attributes=body.get("attributes", {}))


def spend_by_day(history) -> dict[date, Decimal]:
    spend: dict[date, Decimal] = defaultdict(Decimal)
    for body in history:
        if body["type"] == "payment":
            spend[when(body).date()] += Decimal(body["amount"])
    return spend


def mean(spend: dict[date, Decimal], first: date, last: date) -> Decimal:
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return sum(spend[day] for day in days) / len(days)


def test_double_11_spends_far_more_than_the_weeks_around_it(history):
    spend = spend_by_day(history)
    peak = spend[date(2026, 11, 11)]
    assert peak > 2 * mean(spend, date(2026, 11, 4), date(2026, 11, 10))
    # the week after has more customers (they keep activating) and still spends less
    assert peak > 2 * mean(spend, date(2026, 11, 12), date(2026, 11, 18))


@pytest.mark.parametrize("start, holiday, after", [
    # Spring Festival 2027: New Year's Eve 5 February to 12 February
    (date(2026, 12, 20), (date(2027, 2, 5), date(2027, 2, 12)),
     (date(2027, 2, 15), date(2027, 2, 22))),
    # National Day golden week, 1-7 October
    (date(2026, 8, 20), (date(2026, 10, 1), date(2026, 10, 7)),
     (date(2026, 10, 8), date(2026, 10, 14))),
])
def test_holiday_weeks_spend_more_than_the_week_after(start, holiday, after):
    # The week after has more active customers (activations go on), so more spending in
    # the holiday is the holiday's doing. The history starts six weeks before, past the
    # launch burst of activations.
    days = (after[1] - start).days + 1
    spend = spend_by_day(bodies(generate(2000, days, seed=4, start=start)))
    assert mean(spend, *holiday) > Decimal("1.3") * mean(spend, *after)


def test_the_example_campaigns_merchants_are_there_and_their_campaigns_fire():
    from promo_engine.campaigns.files import load_paths
    from promo_engine.core.campaign_type import UserState
    from promo_engine.core.engine import RulesEngine
    from promo_engine.core.registry import build_registry

    registry = build_registry()
    loaded = load_paths([EXAMPLES], registry=registry, currency="CNY",
                        default_timezone="Asia/Shanghai")
    assert not loaded.problems
    catalogue = {m.merchant_id: m for m in demo_merchants.catalogue(1500)}
    for loaded_campaign in loaded.campaigns:
        campaign = loaded_campaign.campaign
        for merchant_id in campaign.merchants or ():
            assert merchant_id in catalogue, (campaign.id, merchant_id)
            assert not campaign.conditions.mcc \
                or catalogue[merchant_id].mcc in campaign.conditions.mcc, campaign.id
    # 20 December to 17 February: weekends, New Year, the Spring Festival week
    data = generate(1500, 60, seed=2, start=date(2026, 12, 20))
    engine = RulesEngine.compile([c.campaign for c in loaded.campaigns], registry,
                                 currency="CNY", points_per_unit=Decimal(1))
    seen: dict[str, UserState] = {}
    granted: Counter = Counter()
    for body in bodies(data):
        if body["type"] == "refund":
            continue
        event = as_event(body)
        user = seen.get(event.user_id) or UserState(user_id=event.user_id)
        decision = engine.evaluate(event, user)
        granted.update(grant.campaign.id for grant in decision.grants if grant.campaign)
        seen[event.user_id] = UserState(
            user_id=event.user_id, activations=user.activations + (event.type == "activation"),
            payments=user.payments + (event.type == "payment"))
    # (limits are the back-test's business; here: each payment campaign finds its payments)
    for campaign_id in ("new-wallet-bonus", "weekend-3x", "spring-dining", "welcome-voucher"):
        assert granted[campaign_id] > 20, (campaign_id, granted)


@pytest.fixture
def settings(sqlite_url):
    return make_settings(sqlite_url)


def test_a_generated_history_posted_to_the_service_is_all_accepted(app, tmp_path):
    """Every line as the wallet backend would send it, with the example campaigns open:
    201 each (40 customers over 1-14 November 2026: weekends, Double 11, refunds)."""
    from wallet import install_campaigns
    examples = "\n---\n".join(path.read_text() for path in sorted(EXAMPLES.glob("*.yaml")))
    install_campaigns(app, examples, tmp_path)
    wallet = new_wallet_client(app)
    lines = generate(40, 14, seed=5).decode("ascii").splitlines()
    campaigns: Counter = Counter()
    reversals = 0
    for line in lines:
        response = wallet.post("/v1/events", line.encode("ascii"))
        assert response.status_code == 201, (line, response.get_json())
        rewards = response.get_json()["rewards"]
        campaigns.update(reward["campaign_id"] for reward in rewards if reward["campaign_id"])
        reversals += sum(1 for reward in rewards if "reverses" in reward)
    kinds = Counter(json.loads(line)["type"] for line in lines)
    assert kinds == {"activation": 40, "payment": 203, "refund": 5}
    assert reversals > 0
    assert campaigns["new-wallet-bonus"] == 40


def test_the_command_writes_the_file_and_says_what_it_wrote(tmp_path):
    out = tmp_path / "demo.jsonl"
    result = CliRunner().invoke(main, ["demo-data", "--users", "50", "--days", "7", "--seed",
                                       "9", "--out", str(out)],
                                env={"PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY"})
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == generate(50, 7, seed=9)
    assert result.stdout == ""
    summary = result.stderr.splitlines()[0]
    lines = out.read_bytes().count(b"\n")
    assert summary.startswith(f"{lines:,} events (50 activations, ")
    assert "of 50 users at 80 merchants, 2026-11-01 to 2026-11-07 (Asia/Shanghai)" in summary
    assert [p.name for p in tmp_path.iterdir()] == ["demo.jsonl"]  # no partial file left

    printed = CliRunner().invoke(main, ["demo-data", "--users", "50", "--days", "7",
                                        "--seed", "9"])
    assert printed.exit_code == 0 and printed.stdout_bytes == out.read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--users", "0", "--days", "3"], "--users must be from 1 to 10,000,000, not 0"),
    (["--users", "5", "--days", "0"], "--days must be from 1 to 3660, not 0"),
    (["--users", "5", "--days", "3", "--seed", "-1"], "--seed must be 0 or more, not -1"),
    (["--users", "5", "--days", "3", "--start", "1 Nov"],
     "--start must be a date written YYYY-MM-DD, not '1 Nov'"),
    (["--users", "many", "--days", "3"], "Invalid value for '--users': 'many' is not a "
                                         "valid integer."),
    (["--days", "3"], "Missing option '--users'."),
])
def test_bad_options_get_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(main, ["demo-data", *args])
    assert result.exit_code == 2
    assert result.stderr == f"promo-engine demo-data: {message}\n"
    assert result.stdout == ""


def test_an_unwritable_file_is_one_line_and_exit_1(tmp_path):
    target = tmp_path / "missing" / "demo.jsonl"
    result = CliRunner().invoke(main, ["demo-data", "--users", "5", "--days", "3", "--out",
                                       str(target)])
    assert result.exit_code == 1
    assert result.stderr == (f"promo-engine demo-data: cannot write {target}: "
                             "No such file or directory\n")


def test_help_states_the_fixed_defaults():
    result = CliRunner().invoke(main, ["demo-data", "--help"])
    text = " ".join(result.stdout.split())
    assert "[default: 2026-11-01]" in text and "[default: 1]" in text
    assert "does not depend on when it is made" in text


def test_the_docs_show_what_the_command_writes():
    import re
    doc = (ROOT / "docs" / "backtesting.md").read_text()
    command = re.search(r"<!-- demo-data-example -->\n```sh\n(.*?)\n", doc).group(1)
    assert command == "promo-engine demo-data --users 2000 --days 150 --out demo.jsonl"
    shown = re.search(r"<!-- demo-data-lines -->\n```json\n(.*?)```", doc, re.S).group(1)
    options = DemoOptions(users=2000, days=150)
    out = io.BytesIO()
    summary = write_demo_data(options, out)
    lines = out.getvalue().decode("ascii").splitlines()
    refund = next(line for line in lines if '"refund"' in line)
    assert shown.splitlines() == lines[:5] + [refund]
    assert (f"{summary.events:,} events ({summary.activations:,} activations, "
            f"{summary.payments:,} payments, {summary.refunds:,} refunds) of 2,000 users at "
            f"100 merchants, 2026-11-01 to 2027-03-30 (Asia/Shanghai), written to "
            "demo.jsonl") in doc
