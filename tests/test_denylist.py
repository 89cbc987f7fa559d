"""The denylist (`promo_engine/ledger/denylist.py`, `promo-engine denylist`): changes audited,
bad input refused in one line, and a change in force within 5 s on every worker of a real
server."""
from __future__ import annotations

import getpass
import json
import subprocess
import time
from datetime import datetime, timezone

import pytest
import requests
from click.testing import CliRunner

from promo_engine.api.auth import signed_headers
from promo_engine.cli import main
from promo_engine.ledger import denylist
from promo_engine.ledger.extensions import db

from test_serve import CLI, environ, server  # noqa: F401  (fixtures)
from wallet import OPEN_RANGE, install_campaigns, new_wallet_client, payment

UTC = timezone.utc
ADDED = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
READDED = datetime(2026, 12, 6, 3, 15, 30, tzinfo=UTC)
REMOVED = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
TRIPLE = f"""
id: triple
type: points_multiplier
{OPEN_RANGE}params:
  multiplier: 3
"""


# -- the ledger's side ---------------------------------------------------------------------

def test_changes_are_audited_and_adding_again_updates_the_reason(app):
    with app.app_context():
        session = db.session
        denylist.add(session, "user", "u_1", reason=" many accounts ", actor="cli:alice",
                     now=ADDED)
        denylist.add(session, "device", "dev-9", reason="", actor="portal:risk@bank.cn",
                     now=ADDED)
        session.commit()
        denylist.add(session, "user", "u_1", reason="confirmed by risk", actor="cli:bob",
                     now=READDED)
        session.commit()
        assert [(e.kind, e.value, e.reason, e.added_by, e.added_at)
                for e in denylist.entries(session)] == [
            ("user", "u_1", "confirmed by risk", "cli:bob", READDED),
            ("device", "dev-9", "", "portal:risk@bank.cn", ADDED)]
        denylist.remove(session, "device", "dev-9", actor="cli:alice", now=REMOVED)
        session.commit()
        assert [(e.kind, e.value) for e in denylist.entries(session)] == [("user", "u_1")]
        assert [(c.action, c.kind, c.value, c.reason, c.actor, c.at)
                for c in denylist.history(session)] == [
            ("add", "user", "u_1", "many accounts", "cli:alice", ADDED),
            ("add", "device", "dev-9", "", "portal:risk@bank.cn", ADDED),
            ("add", "user", "u_1", "confirmed by risk", "cli:bob", READDED),
            ("remove", "device", "dev-9", "", "cli:alice", REMOVED)]
        assert [c.value for c in denylist.history(session, limit=1)] == ["dev-9"]


def test_removing_what_is_not_listed_is_an_error_and_changes_nothing(app):
    with app.app_context():
        with pytest.raises(denylist.DenylistError, match=r"^user:u_1 is not on the denylist$"):
            denylist.remove(db.session, "user", "u_1", actor="cli:alice")
        db.session.rollback()
        assert denylist.history(db.session) == []


@pytest.mark.parametrize("spec, message", [
    ("", "'' is not user:ID or device:ID"),
    ("u_1", "'u_1' is not user:ID or device:ID"),
    ("foo:1", "unknown kind 'foo': use user:ID or device:ID"),
    ("user:", "invalid user id '': must be 1-64 characters of A-Z a-z 0-9 _ . : -"),
    ("user:a b", "invalid user id 'a b': must be 1-64 characters of A-Z a-z 0-9 _ . : -"),
    ("user:" + "x" * 65, "invalid user id '" + "x" * 65
     + "': must be 1-64 characters of A-Z a-z 0-9 _ . : -"),
    ("device:é", "invalid device id 'é': must be 1-128 characters of A-Z a-z 0-9 _ . : -"),
    ("device:" + "d" * 129, "invalid device id '" + "d" * 129
     + "': must be 1-128 characters of A-Z a-z 0-9 _ . : -"),
])
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(denylist.DenylistError) as refused:
        denylist.parse_spec(spec)
    assert str(refused.value) == message


def test_ids_as_events_carry_them_are_accepted():
    assert denylist.parse_spec("user:bank:u.1-A_9") == ("user", "bank:u.1-A_9")
    assert denylist.parse_spec("device:" + "d" * 128) == ("device", "d" * 128)


def test_a_denied_user_or_device_earns_base_points_only(app, tmp_path):
    """In this process: the directory is told of the change (`invalidate`), as the command
    line's process would be; other processes see it within REFRESH_SECONDS."""
    install_campaigns(app, TRIPLE, tmp_path)
    wallet = new_wallet_client(app)

    def points(event_id, **extra) -> list[int]:
        body = wallet.event(**payment(event_id, "10.00", **extra)).get_json()
        return [r["points"] for r in body["rewards"]]

    assert points("p1", device_id="dev-1") == [10, 20]
    with app.app_context():
        denylist.add(db.session, "user", "u_1", reason="", actor="cli:alice")
        denylist.add(db.session, "device", "dev-9", reason="", actor="cli:alice")
        db.session.commit()
    denylist.directory.invalidate()
    assert points("p2", device_id="dev-1") == [10]
    assert points("p3", user_id="u_2", device_id="dev-9") == [10]
    assert points("p4", user_id="u_2", device_id="dev-1") == [10, 20]
    assert points("p5", user_id="u_2") == [10, 20]
    with app.app_context():
        denylist.remove(db.session, "user", "u_1", actor="cli:alice")
        db.session.commit()
    denylist.directory.invalidate()
    assert points("p6") == [10, 20]


def test_a_change_committed_late_with_an_earlier_id_is_still_seen(app):
    """PostgreSQL hands out ids before commit: the directory compares the number of changes
    too, so a change whose id is below the newest one seen is not missed."""
    from promo_engine.ledger.risk_models import DenylistChange, DenylistEntry
    directory = denylist.DenylistDirectory(refresh_seconds=0)
    with app.app_context():
        db.session.add(DenylistChange(id=10, action="add", kind="user", value="u_10",
                                      actor="x", at=ADDED))
        db.session.commit()
        assert not directory.denied(db.engine, "u_5", None)
        db.session.add(DenylistEntry(kind="user", value="u_5", reason="", added_by="x",
                                     added_at=ADDED))
        db.session.add(DenylistChange(id=5, action="add", kind="user", value="u_5",
                                      actor="x", at=ADDED))
        db.session.commit()
        assert directory.denied(db.engine, "u_5", None)


# -- the command line ----------------------------------------------------------------------

@pytest.fixture
def run(settings, monkeypatch):
    """`promo-engine denylist ...` in this process, run by the operator alice."""
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    env = {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key,
           "PROMO_TIMEZONE": "Asia/Shanghai", "PROMO_CURRENCY": "CNY",
           "PROMO_LOAD_ENTRY_POINTS": "0"}

    def run(*args):
        return CliRunner().invoke(main, ["denylist", *args], env=env)
    return run


def test_the_command_line_adds_lists_and_removes(app, run):
    assert run("list").output == "the denylist is empty\n"
    done = run("add", "user:u_1", "--reason", "12 accounts on one phone")
    assert (done.exit_code, done.output) == (0, "added user:u_1 (12 accounts on one phone)\n")
    done = run("add", "device:dev-9")
    assert (done.exit_code, done.output) == (0, "added device:dev-9\n")
    listed = json.loads(run("list", "--json").output)
    assert [{k: v for k, v in e.items() if k != "added_at"} for e in listed] == [
        {"kind": "device", "id": "dev-9", "reason": "", "added_by": "cli:alice"},
        {"kind": "user", "id": "u_1", "reason": "12 accounts on one phone",
         "added_by": "cli:alice"}]
    assert all(e["added_at"].endswith("+08:00") for e in listed)
    table = run("list").output.splitlines()
    assert table[0] == "times in Asia/Shanghai"
    assert table[1].split() == ["WHO", "REASON", "ADDED", "BY"]
    assert table[2].split()[:2] == ["device:dev-9", "—"] and table[2].endswith("  cli:alice")
    assert table[3].startswith("user:u_1      12 accounts on one phone  ")
    assert table[3].endswith("  cli:alice")

    done = run("remove", "device:dev-9")
    assert (done.exit_code, done.output) == (0, "removed device:dev-9\n")
    again = run("remove", "device:dev-9")
    assert (again.exit_code, again.output) == (
        1, "promo-engine: denylist remove: device:dev-9 is not on the denylist\n")
    history = json.loads(run("history", "--json").output)
    assert [(c["action"], c["kind"], c["id"], c["actor"], c["reason"]) for c in history] == [
        ("add", "user", "u_1", "cli:alice", "12 accounts on one phone"),
        ("add", "device", "dev-9", "cli:alice", ""),
        ("remove", "device", "dev-9", "cli:alice", "")]
    lines = run("history").output.splitlines()
    assert lines[1].split() == ["AT", "CHANGE", "WHO", "BY", "REASON"]
    assert lines[4].split()[2:] == ["remove", "device:dev-9", "cli:alice", "—"]


@pytest.mark.parametrize("args, message", [
    (["add", "foo:1"], "unknown kind 'foo': use user:ID or device:ID"),
    (["add", ""], "'' is not user:ID or device:ID"),
    (["remove", "user:a/b"],
     "invalid user id 'a/b': must be 1-64 characters of A-Z a-z 0-9 _ . : -"),
])
def test_a_bad_spec_is_one_line_and_exit_2(app, run, args, message):
    done = run(*args)
    assert (done.exit_code, done.output) == (
        2, f"promo-engine: denylist {args[0]}: {message}\n")


# -- a real server, two workers -----------------------------------------------------------

EFFECT_SECONDS = 5


@pytest.mark.slow
def test_a_change_is_in_force_within_5_s_on_every_worker(server, environ, tmp_path):
    """Each worker has read the denylist before the change (their in-memory copies are
    warm); from 5 s after the command returned, every answer, on new connections that both
    workers take, follows it."""
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "triple.yaml").write_text(TRIPLE)

    def cli(*args: str) -> str:
        done = subprocess.run([CLI, *args], env=environ, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    cli("campaigns", "apply", str(tmp_path / "campaigns"))
    client = json.loads(cli("clients", "create", "wallet-backend", "--json"))
    sent = [0]

    def points(user_id: str, device_id: str) -> list[int]:
        sent[0] += 1
        raw = json.dumps(payment(f"p{sent[0]}", "10.00", user_id=user_id,
                                 device_id=device_id)).encode()
        headers = signed_headers(client["key_id"], client["secret"], "POST", "/v1/events", raw)
        headers["Content-Type"] = "application/json"
        with requests.Session() as fresh:  # a new connection: either worker may take it
            answer = fresh.post(server["base"] + "/v1/events", data=raw, headers=headers,
                                timeout=10)
        assert answer.status_code == 201, answer.text
        return [r["points"] for r in answer.json()["rewards"]]

    def after_change(*args: str) -> float:
        cli("denylist", *args)
        return time.monotonic()

    def answers(n: int = 16) -> list[list[int]]:
        return [points(user, device) for user, device in
                [("u_1", "dev-1"), ("u_2", "dev-2")] * (n // 2)]

    # The campaigns reach the workers within a few seconds of being applied.
    deadline = time.monotonic() + 15
    while points("u_0", "dev-0") != [10, 20]:
        assert time.monotonic() < deadline, "the campaign never applied"
        time.sleep(0.5)
    assert answers() == [[10, 20]] * 16  # both workers, denylist read

    for args, expected in [
            (["add", "user:u_1", "--reason", "test"], [[10], [10, 20]] * 8),
            (["remove", "user:u_1"], [[10, 20]] * 16),
            (["add", "device:dev-2"], [[10, 20], [10]] * 8)]:
        changed = after_change(*args)
        time.sleep(max(0.0, changed + EFFECT_SECONDS - time.monotonic()))
        assert answers() == expected, args
