"""`promo-engine webhooks ...` (contract: the CLI table and "Webhooks"): endpoints added with
their secret shown once and stored encrypted, listed, removed; deliveries listed and
retried; `webhooks run` and every `promo-engine scheduler` send them until SIGTERM.
"""
from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, insert, select

from promo_engine.cli import main
from promo_engine.ledger import webhook_outbox
from promo_engine.ledger.api_clients import decrypt_secret
from promo_engine.ledger.models import WebhookDelivery, WebhookEndpoint
from promo_engine.ledger.responses import iso

from processes import CLI, service_env, wait_until
from webhook_receiver import Receiver

SECRET_KEY = "test-secret-key-0123456789"
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_WEBHOOK_RETRY_HOURS")
TYPES = ", ".join(webhook_outbox.TYPES)
T0 = datetime(2026, 6, 1, 8, 30, 15, tzinfo=timezone.utc)


@pytest.fixture
def database_url(tmp_path, sqlite_template):
    import shutil
    shutil.copyfile(sqlite_template, tmp_path / "promo.db")
    return f"sqlite:///{tmp_path / 'promo.db'}"


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def run(tmp_path, monkeypatch, database_url):
    """The CLI in-process, with a clean environment, on the test's database."""
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str, **env: str):
        environ = {name: None for name in ENV_VARS}
        environ.update({"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY, **env})
        return CliRunner(env=environ).invoke(main, list(args), catch_exceptions=False)
    return invoke


def endpoint_rows(engine) -> list:
    with engine.connect() as connection:
        return connection.execute(select(WebhookEndpoint.__table__)
                                  .order_by(WebhookEndpoint.created_at)).all()


def add_delivery(engine, endpoint_id: str, **values) -> int:
    row = {"message_id": "msg_1", "endpoint_id": endpoint_id, "type": "reward.granted",
           "payload": "{}", "status": "pending", "attempts": 0, "next_attempt_at": T0,
           "created_at": T0, **values}
    with engine.begin() as connection:
        return connection.execute(insert(WebhookDelivery.__table__).values(**row)
                                  .returning(WebhookDelivery.id)).scalar()


def test_add_prints_the_secret_once_and_stores_it_only_encrypted(run, engine, caplog):
    caplog.set_level(logging.DEBUG)
    result = run("webhooks", "add", "https://wallet.example/hooks?token=t0ps3cret")
    assert result.exit_code == 0
    m = re.fullmatch(r"id: (we_[0-9a-f]{32})\nurl: https://wallet.example/hooks\?token=t0ps3cret"
                     r"\nevents: all\nsecret: (whsec_[A-Za-z0-9+/]{32})\n", result.stdout)
    assert m, result.stdout
    assert result.stderr == ("Store the secret now (receivers verify signatures with it): it "
                             "is kept encrypted and cannot be shown again.\n")
    [row] = endpoint_rows(engine)
    assert (row.id, row.event_types, row.removed_at) == (m[1], None, None)
    assert m[2] not in row.secret_ciphertext
    assert decrypt_secret(row.secret_ciphertext, SECRET_KEY) == m[2]
    assert caplog.records
    for record in caplog.records:  # neither the secret nor the URL (it may hold a token)
        assert m[2] not in record.getMessage() and "t0ps3cret" not in record.getMessage()


def test_add_json_is_exactly_id_url_events_and_secret(run, engine):
    result = run("webhooks", "add", "http://10.0.0.5:8080/in", "--events",
                 "voucher.redeemed, reward.granted,reward.granted", "--json")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert list(printed) == ["id", "url", "events", "secret"]
    assert (printed["url"], printed["events"]) == ("http://10.0.0.5:8080/in",
                                                   ["reward.granted", "voucher.redeemed"])
    assert result.stdout == json.dumps(printed) + "\n"
    assert result.stderr == ""
    [row] = endpoint_rows(engine)
    assert (row.id, row.event_types) == (printed["id"], "reward.granted,voucher.redeemed")
    assert json.loads(run("webhooks", "add", "http://x/", "--json").stdout)["events"] is None


@pytest.mark.parametrize("args, error", [
    (["ftp://wallet.example/hooks"], "the URL must start with http:// or https://"),
    (["wallet.example/hooks"], "the URL must start with http:// or https://"),
    (["https:///hooks"], "the URL has no host"),
    (["https://wallet.example/a b"], "the URL contains spaces or control characters"),
    (["https://wallet.example:70000/"],
     "the URL cannot be read: Port out of range 0-65535"),
    (["https://wallet.example/" + "a" * 1978], "the URL is longer than 2000 characters"),
    (["https://x/", "--events", "reward.granted,reward.earned"],
     f"unknown event type reward.earned; the types are: {TYPES}"),
    (["https://x/", "--events", "b,a"], f"unknown event types a, b; the types are: {TYPES}"),
    (["https://x/", "--events", ""],
     f"the event types are a comma-separated list of: {TYPES}"),
])
def test_add_refuses_a_url_or_types_it_cannot_use_with_exit_2(run, engine, args, error):
    result = run("webhooks", "add", *args)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"promo-engine: webhooks add: {error}\n"
    assert endpoint_rows(engine) == []


def test_list_shows_every_endpoint_never_a_secret(run, engine):
    first = json.loads(run("webhooks", "add", "https://a.example/", "--json").stdout)
    second = json.loads(run("webhooks", "add", "https://b.example/", "--events",
                            "points.expired", "--json").stdout)
    assert run("webhooks", "remove", first["id"]).exit_code == 0
    a, b = endpoint_rows(engine)

    listing = run("webhooks", "list")
    assert listing.stdout == (
        f"{a.id}\thttps://a.example/\tall\tcreated {a.created_at:%Y-%m-%d %H:%M:%S}Z\t"
        f"removed {a.removed_at:%Y-%m-%d %H:%M:%S}Z\n"
        f"{b.id}\thttps://b.example/\tpoints.expired\tcreated "
        f"{b.created_at:%Y-%m-%d %H:%M:%S}Z\tactive\n")
    as_json = json.loads(run("webhooks", "list", "--json").stdout)
    assert as_json == [
        {"id": first["id"], "url": "https://a.example/", "events": None,
         "created_at": iso(a.created_at), "removed_at": iso(a.removed_at)},
        {"id": second["id"], "url": "https://b.example/", "events": ["points.expired"],
         "created_at": iso(b.created_at), "removed_at": None}]
    assert first["secret"] not in listing.stdout + json.dumps(as_json)


def test_remove_drops_the_pending_deliveries(run, engine):
    endpoint_id = json.loads(run("webhooks", "add", "https://a.example/", "--json").stdout)["id"]
    pending = add_delivery(engine, endpoint_id)
    delivered = add_delivery(engine, endpoint_id, status="delivered", delivered_at=T0)

    result = run("webhooks", "remove", endpoint_id)
    assert (result.exit_code, result.stdout) == (0, f"removed {endpoint_id} (1 pending "
                                                    "delivery not sent)\n")
    with engine.connect() as connection:
        assert connection.execute(select(WebhookDelivery.id, WebhookDelivery.status,
                                         WebhookDelivery.last_error)
                                  .order_by(WebhookDelivery.id)).all() == [
            (pending, "failed", "endpoint removed"), (delivered, "delivered", None)]
    again = run("webhooks", "remove", endpoint_id)
    assert (again.exit_code, again.stdout, again.stderr) == (
        1, "", f"promo-engine: no active webhook endpoint {endpoint_id}\n")
    assert run("webhooks", "remove", "we_nope").stderr == \
        "promo-engine: no active webhook endpoint we_nope\n"


def test_deliveries_lists_the_newest_first_with_what_became_of_each(run, engine):
    endpoint_id = json.loads(run("webhooks", "add", "https://a.example/", "--json").stdout)["id"]
    delivered = add_delivery(engine, endpoint_id, message_id="msg_a", status="delivered",
                             attempts=1, last_attempt_at=T0, last_status=204, delivered_at=T0)
    pending = add_delivery(engine, endpoint_id, message_id="msg_b", type="points.expired",
                           attempts=2, last_attempt_at=T0, last_status=503,
                           last_error="HTTP 503: busy",
                           next_attempt_at=T0 + timedelta(seconds=30))
    failed = add_delivery(engine, endpoint_id, message_id="msg_c", status="failed",
                          attempts=9, last_attempt_at=T0, last_error="no answer within 10 s")
    fresh = add_delivery(engine, endpoint_id, message_id="msg_d")

    assert run("webhooks", "deliveries").stdout == (
        f"{fresh}\treward.granted\t{endpoint_id}\tpending\t0 attempts\t"
        "created 2026-06-01 08:30:15Z\tnext attempt 2026-06-01 08:30:15Z\n"
        f"{failed}\treward.granted\t{endpoint_id}\tfailed\t9 attempts\t"
        "created 2026-06-01 08:30:15Z\tlast: no answer within 10 s\n"
        f"{pending}\tpoints.expired\t{endpoint_id}\tpending\t2 attempts\t"
        "created 2026-06-01 08:30:15Z\tnext attempt 2026-06-01 08:30:45Z; last: HTTP 503: busy\n"
        f"{delivered}\treward.granted\t{endpoint_id}\tdelivered\t1 attempt\t"
        "created 2026-06-01 08:30:15Z\tdelivered 2026-06-01 08:30:15Z\n")
    assert run("webhooks", "deliveries", "--failed").stdout == (
        f"{failed}\treward.granted\t{endpoint_id}\tfailed\t9 attempts\t"
        "created 2026-06-01 08:30:15Z\tlast: no answer within 10 s\n")
    assert json.loads(run("webhooks", "deliveries", "--limit", "2", "--json").stdout) == [
        {"id": fresh, "message_id": "msg_d", "endpoint_id": endpoint_id,
         "type": "reward.granted", "status": "pending", "attempts": 0,
         "created_at": "2026-06-01T08:30:15Z", "next_attempt_at": "2026-06-01T08:30:15Z",
         "last_attempt_at": None, "last_status": None, "last_error": None,
         "delivered_at": None},
        {"id": failed, "message_id": "msg_c", "endpoint_id": endpoint_id,
         "type": "reward.granted", "status": "failed", "attempts": 9,
         "created_at": "2026-06-01T08:30:15Z", "next_attempt_at": "2026-06-01T08:30:15Z",
         "last_attempt_at": "2026-06-01T08:30:15Z", "last_status": None,
         "last_error": "no answer within 10 s", "delivered_at": None}]
    assert run("webhooks", "deliveries", "--limit", "0").exit_code == 2


def test_retry_makes_a_failed_delivery_pending_and_due_now(run, engine):
    endpoint_id = json.loads(run("webhooks", "add", "https://a.example/", "--json").stdout)["id"]
    failed = add_delivery(engine, endpoint_id, status="failed", attempts=9)
    delivered = add_delivery(engine, endpoint_id, status="delivered", delivered_at=T0)
    before = datetime.now(timezone.utc)

    result = run("webhooks", "retry", str(failed))
    assert (result.exit_code, result.stdout) == (0, f"delivery {failed} is pending again, "
                                                    "due now\n")
    with engine.connect() as connection:
        row = connection.execute(select(WebhookDelivery.__table__)
                                 .where(WebhookDelivery.id == failed)).one()
    assert (row.status, row.attempts) == ("pending", 9)
    assert before <= row.next_attempt_at.replace(tzinfo=timezone.utc) <= \
        datetime.now(timezone.utc)
    for args, error in (([str(delivered)], f"delivery {delivered} was delivered already"),
                        (["999"], "no delivery 999")):
        refused = run("webhooks", "retry", *args)
        assert (refused.exit_code, refused.stderr) == (1, f"promo-engine: {error}\n")
    run("webhooks", "remove", endpoint_id)
    refused = run("webhooks", "retry", str(failed))
    assert (refused.exit_code, refused.stderr) == (
        1, f"promo-engine: delivery {failed}: its endpoint was removed\n")
    assert run("webhooks", "retry", "abc").exit_code == 2


def test_retry_endpoint_makes_every_failed_delivery_of_it_pending(run, engine):
    endpoint_id = json.loads(run("webhooks", "add", "https://a.example/", "--json").stdout)["id"]
    other = json.loads(run("webhooks", "add", "https://b.example/", "--json").stdout)["id"]
    failed = [add_delivery(engine, endpoint_id, status="failed", attempts=9) for _ in range(2)]
    delivered = add_delivery(engine, endpoint_id, status="delivered", delivered_at=T0)
    elsewhere = add_delivery(engine, other, status="failed", attempts=9)

    result = run("webhooks", "retry", "--endpoint", endpoint_id)
    assert (result.exit_code, result.stdout) == (
        0, f"2 failed deliveries of {endpoint_id} pending again, due now\n")
    with engine.connect() as connection:
        statuses = dict(connection.execute(select(WebhookDelivery.id,
                                                  WebhookDelivery.status)).all())
    assert statuses == {failed[0]: "pending", failed[1]: "pending", delivered: "delivered",
                        elsewhere: "failed"}
    run("webhooks", "remove", endpoint_id)
    refused = run("webhooks", "retry", "--endpoint", endpoint_id)
    assert (refused.exit_code, refused.stderr) == (
        1, f"promo-engine: no active webhook endpoint {endpoint_id}\n")
    for args in ([], [str(elsewhere), "--endpoint", other]):
        refused = run("webhooks", "retry", *args)
        assert (refused.exit_code, refused.stderr) == (
            2, "promo-engine: webhooks retry: give a delivery ID or --endpoint ENDPOINT_ID "
               "(not both)\n")


def test_commands_refuse_a_database_without_the_schema(run, tmp_path):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    for args in (["list"], ["deliveries"], ["add", "https://a.example/"], ["run"]):
        result = run("webhooks", *args, DATABASE_URL=empty)
        assert (result.exit_code, result.stderr) == (
            1, f"promo-engine: the database {empty} is at schema revision none; run "
               "`promo-engine db upgrade` first\n"), args


def test_run_refuses_a_retry_window_it_cannot_use(run):
    result = run("webhooks", "run", PROMO_WEBHOOK_RETRY_HOURS="0")
    assert (result.exit_code, result.stderr) == (
        2, "promo-engine: configuration error: PROMO_WEBHOOK_RETRY_HOURS: '0' must be a "
           "whole number from 1 to 720\n")


@pytest.mark.parametrize("command", [["webhooks", "run"], ["scheduler", "--embedded"]])
def test_webhooks_run_and_every_scheduler_send_until_sigterm(run, database_url, tmp_path,
                                                              command):
    receiver = Receiver().start()
    try:
        added = json.loads(run("webhooks", "add", receiver.url("/in"), "--json").stdout)
        receiver.secrets["/in"] = added["secret"]
        engine = create_engine(database_url)
        message = webhook_outbox.message("campaign.opened", {"campaign_id": "c"}, T0)
        with engine.begin() as connection:
            connection.execute(insert(WebhookDelivery.__table__), webhook_outbox.delivery_rows(
                [webhook_outbox.Endpoint(added["id"], None)], [message],
                datetime.now(timezone.utc)))
        engine.dispose()
        process = subprocess.Popen([CLI, *command], env=service_env(database_url),
                                   cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: receiver.accepted() or process.poll() is not None, 30,
                       "the delivery")
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        receiver.stop()
    assert process.returncode == 0, stderr
    assert receiver.accepted_ids() == {message.id: 1}
    assert receiver.rejected == []
    assert stdout == ""
    if command[0] == "webhooks":
        assert stderr == ("promo-engine: webhooks: dispatcher started\n"
                          "promo-engine: webhooks: dispatcher stopped after 1 delivered, "
                          "0 to retry, 0 failed\n")
    else:
        assert stderr.endswith("promo-engine: scheduler stopped\n"), stderr
        assert "Traceback" not in stderr
