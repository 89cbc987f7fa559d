"""Rewards held for review (`hold.cashback_above`): listed, released and voided
(`promo_engine/ledger/holds.py`, `promo-engine holds`), with and without Redis.

Held rewards come from the real write path: a risk policy holding cashback above 100.00,
and a first-payment cashback of 150.00.
"""
from __future__ import annotations

import getpass
import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from promo_engine.cli import main
from promo_engine.ledger.extensions import db
from promo_engine.ledger.holds import HoldError, held_rewards, release_committed, void_committed
from promo_engine.ledger.models import RewardRecord, UserCampaignUsage, WebhookDelivery
from promo_engine.ledger.risk_models import DeviceCampaignUsage, RewardHold
from promo_engine.ledger.usage import current_usage, ledger_usage
from promo_engine.service import promo_service

from conftest import running_app
from test_portal_support import accounts, admin, flashes, merchant_a  # noqa: F401
from test_webhook_outbox import add_endpoint
from wallet import OPEN_RANGE, new_wallet_client, payment, refund

UTC = timezone.utc
DECIDED = datetime(2026, 12, 6, 3, 30, tzinfo=UTC)  # 11:30 in Shanghai
POLICY_AND_CAMPAIGNS = f"""
id: cash-welcome
name: 150 yuan back on your first payment
type: first_activation_bonus
merchants: [m_100]
{OPEN_RANGE}budget: {{amount: "1000.00"}}
limits: {{max_redemptions: 10, per_device: 1}}
params: {{on: first_payment, cashback: "150.00"}}
---
id: small-cash
name: 20 yuan back on your first payment
type: first_activation_bonus
merchants: [m_small]
{OPEN_RANGE}params: {{on: first_payment, cashback: "20.00"}}
---
id: big-exchange
name: 300 points for 120 yuan back
type: points_exchange
{OPEN_RANGE}params: {{cost_points: 300, cashback: "120.00"}}
---
risk_policy:
  hold: {{cashback_above: "100.00"}}
"""


def install(app, tmp_path):
    from promo_engine.campaigns.files import load_paths
    from promo_engine.campaigns.store import apply_campaigns
    path = tmp_path / "campaigns.yaml"
    path.write_text(POLICY_AND_CAMPAIGNS)
    with app.app_context():
        service = promo_service(app)
        loaded = load_paths([path], registry=service.registry, currency="CNY",
                            default_timezone="Asia/Shanghai")
        assert not loaded.problems, [str(p) for p in loaded.problems]
        apply_campaigns(loaded.campaigns, risk_policy=loaded.risk_policy)
        db.session.commit()
        service.invalidate()


@pytest.fixture
def held(app, tmp_path):
    return make_held(app, tmp_path)


def make_held(app, tmp_path):
    """Two users' first payments of 300.00, each granted a held 150.00 cashback; a webhook
    endpoint wanting every type. Returns (wallet, {user: held reward id})."""
    install(app, tmp_path)
    add_endpoint(app, "we_all")
    wallet = new_wallet_client(app)
    ids = {}
    for user, device in (("u_1", "dev-1"), ("u_2", "dev-2")):
        body = wallet.event(**payment(f"pay-{user}", "300.00", user_id=user,
                                      device_id=device)).get_json()
        [cash] = [r for r in body["rewards"] if r["kind"] == "cashback"]
        assert cash == {"reward_id": cash["reward_id"], "campaign_id": "cash-welcome",
                        "kind": "cashback", "amount": "150.00", "currency": "CNY",
                        "held": True}
        ids[user] = cash["reward_id"]
    return wallet, ids


def messages(app, message_type):
    with app.app_context():
        rows = db.session.scalars(select(WebhookDelivery.payload)
                                  .where(WebhookDelivery.type == message_type)
                                  .order_by(WebhookDelivery.id)).all()
        db.session.rollback()
    return [json.loads(row)["data"] for row in rows]


def counters(app, campaign="cash-welcome"):
    """(usage as events see it, ledger sums, user uses, device uses) of the campaign."""
    with app.app_context():
        service = promo_service(app)
        seen = current_usage(db.session, [campaign], service.reservations)[campaign]
        summed = ledger_usage([campaign])[campaign]
        users = dict(db.session.execute(select(UserCampaignUsage.user_id, UserCampaignUsage.uses)
                                        .where(UserCampaignUsage.campaign_id == campaign)).all())
        devices = dict(db.session.execute(
            select(DeviceCampaignUsage.device_id, DeviceCampaignUsage.uses)
            .where(DeviceCampaignUsage.campaign_id == campaign)).all())
        db.session.rollback()
    return seen, summed, users, devices


def test_held_rewards_are_listed_longest_waiting_first(app, held):
    _, ids = held
    with app.app_context():
        queue = held_rewards(db.session)
    assert [(h.reward_id, h.user_id, h.campaign_id, h.kind, h.amount_minor, h.currency,
             h.event_id, h.status, h.decided_by, h.note) for h in queue] == [
        (ids["u_1"], "u_1", "cash-welcome", "cashback", 15000, "CNY", "pay-u_1", "held", None,
         ""),
        (ids["u_2"], "u_2", "cash-welcome", "cashback", 15000, "CNY", "pay-u_2", "held", None,
         "")]


def test_a_small_cashback_is_not_held(app, held):
    wallet, _ = held
    body = wallet.event(**payment("pay-small", "50.00", user_id="u_3",
                                  merchant_id="m_small")).get_json()
    [cash] = [r for r in body["rewards"] if r["kind"] == "cashback"]
    assert "held" not in cash
    with app.app_context():
        assert len(held_rewards(db.session)) == 2


def test_release_tells_the_wallet_and_is_audited(app, held):
    _, ids = held
    with app.app_context():
        decided = release_committed(db.session, ids["u_1"], actor="portal:risk@bank.cn",
                                    note="  known customer ", now=DECIDED)
        assert (decided.status, decided.decided_by, decided.decided_at, decided.note) == (
            "released", "portal:risk@bank.cn", DECIDED, "known customer")
        row = db.session.execute(select(RewardHold).join(
            RewardRecord, RewardRecord.id == RewardHold.reward_pk)
            .where(RewardRecord.reward_id == ids["u_1"])).scalar_one()
        assert (row.status, row.decided_by, row.decided_at, row.note) == (
            "released", "portal:risk@bank.cn", DECIDED, "known customer")
        assert [h.reward_id for h in held_rewards(db.session)] == [ids["u_2"]]
        assert [h.status for h in held_rewards(db.session, None)] == ["released", "held"]
    assert messages(app, "reward.released") == [{
        "event_id": "pay-u_1", "user_id": "u_1",
        "reward": {"reward_id": ids["u_1"], "campaign_id": "cash-welcome", "kind": "cashback",
                   "amount": "150.00", "currency": "CNY"}}]
    # A released reward stays granted: its budget and uses are the campaign's.
    assert counters(app)[:3] == ((30000, 2), (30000, 2), {"u_1": 1, "u_2": 1})


@pytest.mark.parametrize("first, then", [("release", "release"), ("release", "void"),
                                         ("void", "release"), ("void", "void")])
def test_only_held_rewards_can_be_decided(app, held, first, then):
    _, ids = held
    act = {"release": lambda: release_committed(db.session, ids["u_1"], actor="alice"),
           "void": lambda: void_committed(db.session, ids["u_1"], actor="alice",
                                          reservations=None)}
    with app.app_context():
        act[first]()
        with pytest.raises(HoldError) as refused:
            act[then]()
        done = "released" if first == "release" else "voided"
        assert str(refused.value) == (
            f"reward {ids['u_1']} was {done} already (by alice); only held rewards can be "
            f"{'released' if then == 'release' else 'voided'}")
        assert refused.value.code == "not_held"
        db.session.rollback()
    assert len(messages(app, f"reward.{done}")) == 1


def test_an_unknown_or_never_held_reward_is_refused(app, held):
    wallet, _ = held
    [points] = [r["reward_id"] for r in wallet.event(**payment(
        "pay-3", "10.00", user_id="u_1")).get_json()["rewards"]]
    with app.app_context():
        for reward_id in ("rw_00000000000000000000", points):
            with pytest.raises(HoldError, match=f"^no held reward {reward_id}$"):
                release_committed(db.session, reward_id, actor="alice")
            db.session.rollback()


def test_void_gives_everything_back(counters_settings, tmp_path):
    """Budget, redemption, the user's and the device's uses: exactly as before the reward,
    with campaign counters in the database and in Redis; and the ledger agrees."""
    with running_app(counters_settings) as app:
        wallet, ids = make_held(app, tmp_path)
        assert counters(app) == ((30000, 2), (30000, 2), {"u_1": 1, "u_2": 1},
                                 {"dev-1": 1, "dev-2": 1})
        with app.app_context():
            decided, reversal = void_committed(
                db.session, ids["u_1"], actor="cli:alice", note="same device as 40 others",
                reservations=promo_service(app).reservations, now=DECIDED)
            assert (decided.status, decided.decided_by, decided.note) == (
                "voided", "cli:alice", "same device as 40 others")
            rows = db.session.execute(select(RewardRecord.amount_minor, RewardRecord.reason,
                                             RewardRecord.event_pk)
                                      .where(RewardRecord.campaign_id == "cash-welcome")
                                      .order_by(RewardRecord.id)).all()
            assert [(amount, reason) for amount, reason, _ in rows] == [
                (15000, None), (15000, None), (-15000, None)]
            assert rows[2].event_pk == rows[0].event_pk
        assert reversal == {"reward_id": reversal["reward_id"], "campaign_id": "cash-welcome",
                            "kind": "cashback", "amount": "-150.00", "currency": "CNY",
                            "reverses": ids["u_1"]}
        assert messages(app, "reward.voided") == [
            {"event_id": "pay-u_1", "user_id": "u_1", "reward": reversal}]
        assert counters(app) == ((15000, 1), (15000, 1), {"u_1": 0, "u_2": 1},
                                 {"dev-1": 0, "dev-2": 1})

        # A refund of the payment afterwards leaves the voided reward alone: nothing is
        # reversed or freed twice.
        body = wallet.event(**refund("ref-1", "pay-u_1", "300.00", user_id="u_1")).get_json()
        assert [r["kind"] for r in body["rewards"]] == ["points"]
        assert counters(app) == ((15000, 1), (15000, 1), {"u_1": 0, "u_2": 1},
                                 {"dev-1": 0, "dev-2": 1})


def test_an_exchanges_held_reward_is_cancelled_not_voided(app, held):
    """Points paid for it: a void would keep them, so the redemption is cancelled instead."""
    wallet, _ = held
    body = wallet.event(event_id="mall-1", type="redemption", user_id="u_1",
                        occurred_at="2026-06-16T10:00:00+08:00",
                        campaign_id="big-exchange").get_json()
    [cash] = [r["reward_id"] for r in body["rewards"] if r.get("held")]
    with app.app_context():
        with pytest.raises(HoldError) as refused:
            void_committed(db.session, cash, actor="alice", reservations=None)
        assert (refused.value.code, str(refused.value)) == (
            "exchange", f"reward {cash} was bought with points: cancel its redemption mall-1 "
                        "instead (a cancel event)")
        db.session.rollback()
        assert [h.status for h in held_rewards(db.session, None)] == ["held"] * 3


def test_void_after_a_partial_refund_reverses_what_is_left(app, held):
    wallet, ids = held
    body = wallet.event(**refund("ref-1", "pay-u_1", "100.00", user_id="u_1")).get_json()
    assert [r.get("amount") for r in body["rewards"] if r["kind"] == "cashback"] == ["-50.00"]
    with app.app_context():
        _, reversal = void_committed(db.session, ids["u_1"], actor="alice", reservations=None)
    assert reversal["amount"] == "-100.00"
    assert counters(app) == ((15000, 1), (15000, 1), {"u_1": 0, "u_2": 1},
                             {"dev-1": 0, "dev-2": 1})


def test_a_full_refund_closes_the_hold_as_reversed(app, held):
    """Nothing is left to release or void: the hold is closed, and a decision refused."""
    wallet, ids = held
    wallet.event(**refund("ref-1", "pay-u_1", "300.00", user_id="u_1"))
    assert counters(app) == ((15000, 1), (15000, 1), {"u_1": 0, "u_2": 1},
                             {"dev-1": 0, "dev-2": 1})
    with app.app_context():
        [closed] = [h for h in held_rewards(db.session, None) if h.reward_id == ids["u_1"]]
        assert (closed.status, closed.decided_by) == ("reversed", "refund:ref-1")
        assert [h.reward_id for h in held_rewards(db.session)] == [ids["u_2"]]
        for decide in (lambda: void_committed(db.session, ids["u_1"], actor="alice",
                                              reservations=None),
                       lambda: release_committed(db.session, ids["u_1"], actor="alice")):
            with pytest.raises(HoldError) as refused:
                decide()
            assert refused.value.code == "not_held"
            db.session.rollback()
    assert messages(app, "reward.voided") == messages(app, "reward.released") == []
    assert counters(app) == ((15000, 1), (15000, 1), {"u_1": 0, "u_2": 1},
                             {"dev-1": 0, "dev-2": 1})


def test_a_cancel_closes_the_hold_of_an_exchange(app, held):
    wallet, _ = held
    body = wallet.event(event_id="mall-1", type="redemption", user_id="u_1",
                        occurred_at="2026-06-16T10:00:00+08:00",
                        campaign_id="big-exchange").get_json()
    [cash] = [r["reward_id"] for r in body["rewards"] if r.get("held")]
    answer = wallet.event(event_id="mall-1-cancel", type="cancel", user_id="u_1",
                          occurred_at="2026-06-16T10:05:00+08:00", original_event_id="mall-1")
    assert answer.status_code == 201, answer.get_json()
    with app.app_context():
        [closed] = [h for h in held_rewards(db.session, None) if h.reward_id == cash]
        assert (closed.status, closed.decided_by) == ("reversed", "cancel:mall-1-cancel")
        db.session.rollback()


# -- the command line ---------------------------------------------------------------------

@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    env = {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key,
           "PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY",
           "PROMO_LOAD_ENTRY_POINTS": "0"}

    def run(*args):
        return CliRunner().invoke(main, ["holds", *args], env=env)
    return run


def test_the_command_line_lists_releases_and_voids(app, held, run):
    _, ids = held
    listed = run("list", "--json")
    assert listed.exit_code == 0, listed.output
    queue = json.loads(listed.output)
    assert [(h["reward_id"], h["user_id"], h["campaign_id"], h["amount"], h["currency"],
             h["event_id"], h["status"]) for h in queue] == [
        (ids["u_1"], "u_1", "cash-welcome", "150.00", "CNY", "pay-u_1", "held"),
        (ids["u_2"], "u_2", "cash-welcome", "150.00", "CNY", "pay-u_2", "held")]
    assert all(h["held_at"].endswith("+08:00") for h in queue)
    table = run("list").output.splitlines()
    assert table[0] == "times in Asia/Shanghai"
    assert table[1].split() == ["REWARD", "USER", "CAMPAIGN", "AMOUNT", "HELD", "AT", "EVENT"]
    assert table[2].split()[:5] == [ids["u_1"], "u_1", "cash-welcome", "150.00", "CNY"]

    done = run("release", ids["u_1"], "--note", "known customer")
    assert (done.exit_code, done.output) == (0, f"released {ids['u_1']}\n")
    done = run("void", ids["u_2"])
    assert (done.exit_code, done.output) == (0, f"voided {ids['u_2']} (reversed -150.00 CNY)\n")
    assert run("list").output == "no rewards waiting for a decision\n"
    every = json.loads(run("list", "--all", "--json").output)
    assert [(h["status"], h["decided_by"], h["note"]) for h in every] == [
        ("released", "cli:alice", "known customer"), ("voided", "cli:alice", "")]

    again = run("void", ids["u_1"])
    assert again.exit_code == 1
    assert again.output == (f"promo-engine: holds void: reward {ids['u_1']} was released "
                            "already (by cli:alice); only held rewards can be voided\n")
    unknown = run("release", "rw_nope")
    assert (unknown.exit_code, unknown.output) == (
        1, "promo-engine: holds release: no held reward rw_nope\n")


# -- the portal's queue ---------------------------------------------------------------------

def test_the_portal_queue_releases_and_voids_after_confirming(app, held, admin):
    _, ids = held
    page = admin.get("/portal/admin/holds")
    assert page.status_code == 200
    assert 'href="/portal/admin/holds"' in page.text  # in the admin navigation
    for user in ("u_1", "u_2"):
        row = page.text.split(f'data-reward-id="{ids[user]}"')[1].split("</tr>")[0]
        assert f"<code>{user}</code>" in row and "150 yuan back on your first payment" in row
        assert "CN¥150.00" in row
        # the event, on the admin events page
        assert f'/portal/admin/events?event_id=pay-{user}&amp;user_id={user}' in row
        assert f'action="/portal/admin/holds/{ids[user]}/release"' in row
        assert f'action="/portal/admin/holds/{ids[user]}/void"' in row
    # Without the form's CSRF token nothing is decided.
    assert admin.post(f"/portal/admin/holds/{ids['u_1']}/release", csrf=False).status_code == 400

    done = admin.post(f"/portal/admin/holds/{ids['u_1']}/release", {"note": "called her"})
    assert done.status_code == 303 and done.headers["Location"] == "/portal/admin/holds"
    page = admin.get("/portal/admin/holds")
    assert flashes(page) == [f"Released: the wallet is told to pay reward {ids['u_1']}."]
    done = admin.post(f"/portal/admin/holds/{ids['u_2']}/void")
    page = admin.get("/portal/admin/holds")
    assert flashes(page) == [f"Voided: reward {ids['u_2']} is reversed and its budget is back "
                             "with the campaign."]
    assert 'id="no-holds"' in page.text
    decided = page.text.split('id="decided"')[1]
    assert decided.index(ids["u_2"]) < decided.index(ids["u_1"])  # the latest first
    assert "portal:marketing@bank.cn" in decided and "called her" in decided
    with app.app_context():
        assert [(h.status, h.decided_by, h.note) for h in held_rewards(db.session, None)] == [
            ("released", "portal:marketing@bank.cn", "called her"),
            ("voided", "portal:marketing@bank.cn", "")]
    assert counters(app)[:3] == ((15000, 1), (15000, 1), {"u_1": 1, "u_2": 0})

    again = admin.post(f"/portal/admin/holds/{ids['u_2']}/release")
    assert again.status_code == 303
    assert flashes(admin.get("/portal/admin/holds")) == [
        "That reward was decided already; nothing was changed."]
    assert len(messages(app, "reward.released")) == 1


def test_the_queue_in_chinese(app, held, admin):
    admin.get("/portal/lang/zh")
    page = admin.get("/portal/admin/holds")
    assert "待审核奖励" in page.text and "¥150.00" in page.text and "确认作废" in page.text


def test_merchants_cannot_see_or_decide_holds(app, held, merchant_a):
    _, ids = held
    assert merchant_a.get("/portal/admin/holds").status_code == 404
    assert merchant_a.post(f"/portal/admin/holds/{ids['u_1']}/void").status_code == 404
    with app.app_context():
        assert [h.status for h in held_rewards(db.session, None)] == ["held", "held"]


# -- concurrency ----------------------------------------------------------------------------

def test_concurrent_decisions_of_one_reward_make_exactly_one(app, held):
    """Eight admins decide the same reward at once: one decision is made, the others are
    refused as decided already, and the wallet hears of it once."""
    import threading
    _, ids = held
    outcomes, start = [], threading.Barrier(8)

    def decide(n: int) -> None:
        with app.app_context():
            start.wait()
            try:
                if n % 2:
                    release_committed(db.session, ids["u_1"], actor=f"admin-{n}")
                else:
                    void_committed(db.session, ids["u_1"], actor=f"admin-{n}",
                                   reservations=None)
                outcomes.append(("done", n))
            except HoldError as exc:
                outcomes.append((exc.code, n))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [(_, winner)] = [o for o in outcomes if o[0] == "done"]
    assert sorted(code for code, _ in outcomes) == ["done"] + ["not_held"] * 7
    status = "released" if winner % 2 else "voided"
    with app.app_context():
        [decided] = [h for h in held_rewards(db.session, None) if h.reward_id == ids["u_1"]]
        db.session.rollback()
    assert (decided.status, decided.decided_by) == (status, f"admin-{winner}")
    assert len(messages(app, "reward.released")) + len(messages(app, "reward.voided")) == 1
    expected = (30000, 2) if status == "released" else (15000, 1)
    assert counters(app)[:2] == (expected, expected)


def test_a_void_racing_a_full_refund_gives_back_exactly_once(app, held):
    """The refund and the void take the user's lock in turn; whichever goes first, the
    cashback is reversed exactly once and its limits freed exactly once."""
    import threading
    wallet, ids = held
    start = threading.Barrier(2)
    answers = []

    def void() -> None:
        with app.app_context():
            start.wait()
            try:
                void_committed(db.session, ids["u_1"], actor="alice", reservations=None)
            except HoldError as refused:  # the refund went first and closed the hold
                assert refused.code == "not_held"
            db.session.remove()

    def refund_it() -> None:
        start.wait()
        answers.append(wallet.event(**refund("ref-1", "pay-u_1", "300.00", user_id="u_1")))

    threads = [threading.Thread(target=void), threading.Thread(target=refund_it)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers[0].status_code == 201, answers[0].get_json()
    with app.app_context():
        total = db.session.execute(
            select(db.func.sum(RewardRecord.amount_minor))
            .where(RewardRecord.user_id == "u_1", RewardRecord.kind == "cashback")).scalar()
        db.session.rollback()
    assert int(total) == 0
    assert counters(app) == ((15000, 1), (15000, 1), {"u_1": 0, "u_2": 1},
                             {"dev-1": 0, "dev-2": 1})


def test_endpoints_can_ask_for_the_decisions_only(app, held, settings, monkeypatch):
    """`webhooks add --events reward.released,reward.voided`: an endpoint hearing only of
    decisions gets exactly those."""
    env = {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key,
           "PROMO_LOAD_ENTRY_POINTS": "0"}
    added = CliRunner().invoke(main, ["webhooks", "add", "https://wallet.example/decisions",
                                      "--events", "reward.released,reward.voided", "--json"],
                               env=env)
    assert added.exit_code == 0, added.output
    endpoint = json.loads(added.output.splitlines()[0])
    assert endpoint["events"] == ["reward.released", "reward.voided"]
    from promo_engine.ledger.webhook_outbox import directory
    directory.invalidate()
    _, ids = held
    with app.app_context():
        release_committed(db.session, ids["u_1"], actor="alice")
        void_committed(db.session, ids["u_2"], actor="alice", reservations=None)
        types = db.session.scalars(select(WebhookDelivery.type).where(
            WebhookDelivery.endpoint_id == endpoint["id"]).order_by(WebhookDelivery.id)).all()
        db.session.rollback()
    assert types == ["reward.released", "reward.voided"]
