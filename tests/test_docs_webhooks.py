"""docs/webhooks.md shows what a receiver really gets, and its receivers really verify.

Every ```json example on the page is compared with a real message of its type, written to the
outbox by the same changes in a running service: events, an exchange and its cancel, a
voucher used, a refund, campaigns opening and closing on schedule, a budget threshold and
the points sweep. The same keys at every level and the same values, except what is random
or the clock's: each message id, reward id and voucher code the page shows stands for one
the service wrote at the same place (the same one everywhere it appears on the page), and
each time on the page for one time of the service (the same one wherever the page repeats
it, and another one where the page shows another).

The page's Python and Node receivers are run as written against requests signed as the
dispatcher signs them (`signing.signed_headers`): each accepts the genuine request and
refuses a tampered body. The Node one needs the `standardwebhooks` npm package: it is
installed from tests/node_webhooks/package-lock.json into tests/node_webhooks/node_modules
(not committed) the first time, and reused after.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from promo_engine.ledger import webhook_outbox
from promo_engine.ledger.extensions import db
from promo_engine.ledger.holds import release_committed, void_committed
from promo_engine.ledger.models import WebhookDelivery
from promo_engine.webhooks.retry_schedule import RETRY_DELAYS
from promo_engine.webhooks.signing import new_secret, signed_headers

from conftest import make_settings, running_app
from test_webhook_outbox import add_endpoint
from wallet import new_wallet_client

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "webhooks.md"
NODE_DIR = Path(__file__).resolve().parent / "node_webhooks"

HEADING = re.compile(r"^(#{1,6}) +(.+?) *$", re.M)
CODE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
RANDOM = re.compile(r"^(msg_[0-9a-f]{16,}|rw_[0-9a-f]{20}|[A-Z0-9]{12})$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# The changes behind the page's examples. The campaigns are the repository's examples
# (campaigns/), cut down to what the examples need: spring-dining's budget is small enough
# for one lunch to reach 80% of it.
CAMPAIGNS = """
id: new-wallet-bonus
name: 500 points for activating your wallet
type: first_activation_bonus
starts_at: 2026-11-01T00:00:00
ends_at: 2028-01-01T00:00:00
params: {on: activation, points: 500}
---
id: weekend-3x
name: Weekend triple points at partner merchants
type: points_multiplier
merchants: [m_100, m_200]
starts_at: 2026-11-01T00:00:00
ends_at: 2027-07-01T00:00:00
windows: [{days: [sat, sun], from: "00:00", to: "00:00"}]
params: {multiplier: 3}
---
id: welcome-voucher
name: 20 yuan off your next 100 - welcome voucher
type: first_activation_bonus
merchants: [m_100, m_200]
starts_at: 2026-11-01T00:00:00
ends_at: 2028-01-01T00:00:00
params: {on: first_payment, voucher: {amount: "20.00", valid_days: 14, min_amount: "100.00"}}
---
id: points-mall-coffee
name: Points mall - 10 yuan coffee voucher
type: points_exchange
starts_at: 2026-11-01T00:00:00
ends_at: 2027-12-01T00:00:00
params: {cost_points: 800, voucher: {amount: "10.00", valid_days: 30, min_amount: "25.00"}}
---
id: spring-dining
name: Spring Festival dining 15% off
type: holiday_discount
merchants: [m_100, m_200]
starts_at: 2027-02-05T00:00:00
ends_at: 2027-02-13T00:00:00
budget: {amount: "30.00"}
params: {percent: 15, max_discount: "30.00"}
---
id: first-pay-cashback
name: 150 yuan back on your first payment at m_300
type: first_activation_bonus
merchants: [m_300]
starts_at: 2026-11-01T00:00:00
ends_at: 2028-01-01T00:00:00
params: {on: first_payment, cashback: "150.00"}
---
risk_policy:
  hold: {cashback_above: "100.00"}
"""
APPLIED = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
SPRING_OPENS = datetime(2027, 2, 4, 16, 0, tzinfo=timezone.utc)  # 5 Feb, 00:00 +08:00
SPRING_CLOSES = datetime(2027, 2, 12, 16, 0, tzinfo=timezone.utc)  # 13 Feb, 00:00 +08:00
RELEASED = datetime(2026, 12, 10, 6, 30, tzinfo=timezone.utc)
VOIDED = datetime(2026, 12, 10, 6, 45, tzinfo=timezone.utc)
SWEPT = datetime(2027, 12, 4, 16, 0, 7, tzinfo=timezone.utc)  # just after 5 Dec, 00:00 +08:00


def payment(event_id, at, amount, merchant_id="m_100", **extra):
    return dict(event_id=event_id, type="payment", user_id="alice", occurred_at=at,
                merchant_id=merchant_id, amount=amount, currency="CNY", **extra)


# -- the page --------------------------------------------------------------------------------

def doc_text() -> str:
    return DOC.read_text()


def headings(text: str) -> list[tuple[int, int, str]]:
    """(offset, level, title) of every heading outside code blocks."""
    fenced = [(m.start(), m.end()) for m in CODE.finditer(text)]
    return [(m.start(), len(m[1]), m[2]) for m in HEADING.finditer(text)
            if not any(start <= m.start() < end for start, end in fenced)]


def heading_before(text: str, offset: int) -> str:
    return [title for start, _, title in headings(text) if start < offset][-1]


def line_of(text: str, offset: int) -> int:
    return text[:offset].count("\n") + 1


def examples() -> list[tuple[int, str, dict]]:
    """(line, the heading it is under, body) of every ```json block of the page."""
    text = doc_text()
    return [(line_of(text, m.start()), heading_before(text, m.start()), json.loads(m[2]))
            for m in CODE.finditer(text) if m[1] == "json"]


def snippet(language: str, heading: str) -> tuple[int, str]:
    """(line, code) of the one ```language block in the section under `heading`."""
    text = doc_text()
    found = [(line_of(text, m.start()), m[2]) for m in CODE.finditer(text)
             if m[1] == language and heading_before(text, m.start()) == heading]
    assert len(found) == 1, f"docs/webhooks.md: one ```{language} block under {heading!r}"
    return found[0]


def type_heading(title: str) -> str | None:
    """The message type a heading such as "### `reward.granted`" is about, else None."""
    m = re.fullmatch(r"`([a-z_.]+)`", title)
    return m[1] if m and m[1] in webhook_outbox.TYPES else None


def test_every_type_has_a_section_with_examples():
    text = doc_text()
    sections = [type_heading(title) for _, _, title in headings(text)]
    assert sorted(t for t in sections if t) == sorted(webhook_outbox.TYPES)
    for line, heading, body in examples():
        assert type_heading(heading) == body["type"], (f"docs/webhooks.md:{line}", heading)
    assert {body["type"] for _, _, body in examples()} == set(webhook_outbox.TYPES)


def test_the_retry_delays_are_the_ones_used():
    """The page lists the delays between attempts as the dispatcher has them."""
    text = " ".join(doc_text().split())
    m = re.search(r"The delays between attempts are ([^.]*?), then every ([^.]*?)[.,]", text)
    assert m, "docs/webhooks.md: 'The delays between attempts are ..., then every ...'"
    units = {"s": 1, "min": 60, "h": 3600}
    listed = [int(n) * units[u] for n, u in re.findall(r"(\d+) (s|min|h)\b", m[1] + " " + m[2])]
    assert tuple(listed) == RETRY_DELAYS


# -- (a) the examples are real messages -------------------------------------------------------

def matches(shown, actual, bound: dict, where: str) -> None:
    if isinstance(shown, dict):
        assert isinstance(actual, dict) and set(shown) == set(actual), (where, shown, actual)
        for key in shown:
            matches(shown[key], actual[key], bound, f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list) and len(shown) == len(actual), (where, shown, actual)
        for index, (s, a) in enumerate(zip(shown, actual)):
            matches(s, a, bound, f"{where}[{index}]")
    elif isinstance(shown, str) and RANDOM.fullmatch(shown):
        assert isinstance(actual, str) and RANDOM.fullmatch(actual), (where, shown, actual)
        assert kind(shown) == kind(actual), (where, shown, actual)
        assert bound.setdefault(shown, actual) == actual, (where, "stands for two", shown)
        assert [s for s, a in bound.items() if a == actual] == [shown], (
            where, "two shown for one", actual)
    elif isinstance(shown, str) and TIMESTAMP.fullmatch(shown):
        assert isinstance(actual, str) and TIMESTAMP.fullmatch(actual), (where, shown, actual)
        assert bound.setdefault(("time", shown), ("time", actual)) == ("time", actual), (
            where, "the page shows one time where the service has two", shown)
        assert [s for s, a in bound.items() if a == ("time", actual)] == [("time", shown)], (
            where, "the page shows two times where the service has one", actual)
    else:
        assert type(shown) is type(actual) and shown == actual, (where, shown, actual)


def kind(value: str) -> str:
    """msg, rw, or code."""
    return value.split("_", 1)[0] if "_" in value else "code"


def written_messages(app) -> list[dict]:
    """Every message the outbox wrote for the endpoint wanting all types, in order."""
    with app.app_context():
        rows = db.session.execute(select(WebhookDelivery.payload)
                                  .where(WebhookDelivery.endpoint_id == "we_all")
                                  .order_by(WebhookDelivery.id)).scalars().all()
        db.session.rollback()
    return [json.loads(payload) for payload in rows]


def run_the_examples_changes(app, tmp_path) -> None:
    from promo_engine.campaigns.files import load_paths
    from promo_engine.campaigns.lifecycle import advance_schedule
    from promo_engine.campaigns.store import apply_campaigns
    from promo_engine.ledger.lot_expiry import sweep_points
    service = app.extensions["promo"]
    clock = [APPLIED]
    service.clock = lambda: clock[0]
    add_endpoint(app, "we_all")
    path = tmp_path / "campaigns.yaml"
    path.write_text(CAMPAIGNS)
    with app.app_context():
        loaded = load_paths([path], registry=service.registry, currency="CNY",
                            default_timezone="Asia/Shanghai")
        assert not loaded.problems, [str(p) for p in loaded.problems]
        apply_campaigns(loaded.campaigns, now=APPLIED, risk_policy=loaded.risk_policy)
        db.session.commit()
        service.invalidate()
    wallet = new_wallet_client(app)

    def send(**body) -> dict:
        clock[0] = datetime.fromisoformat(body["occurred_at"]) + timedelta(seconds=1)
        response = wallet.event(**body)
        assert response.status_code == 201, (body["event_id"], response.get_json())
        return response.get_json()

    def move_campaigns(now: datetime) -> None:
        with app.app_context():
            assert len(advance_schedule(db.session, now, campaign_ids=["spring-dining"])) == 1
            db.session.commit()
            service.invalidate()

    send(event_id="act-0001", type="activation", user_id="alice",
         occurred_at="2026-12-05T09:00:00+08:00")
    rewards = send(**payment("pay-0001", "2026-12-05T12:10:00+08:00", "128.50"))["rewards"]
    [voucher] = [r["voucher"]["code"] for r in rewards if r["kind"] == "voucher"]
    send(**payment("pay-0002", "2026-12-07T19:30:00+08:00", "150.00", vouchers=[voucher]))
    send(event_id="mall-0001", type="redemption", user_id="alice",
         occurred_at="2026-12-08T10:05:00+08:00", campaign_id="points-mall-coffee")
    send(event_id="cancel-0001", type="cancel", user_id="alice",
         occurred_at="2026-12-08T10:20:00+08:00", original_event_id="mall-0001")
    send(event_id="refund-0001", type="refund", user_id="alice",
         occurred_at="2026-12-09T10:00:00+08:00", merchant_id="m_100", amount="28.50",
         currency="CNY", original_event_id="pay-0001")
    # Bob's and Carol's first payments at m_300 earn a cashback held for review: the bank
    # releases Bob's and voids Carol's.
    held = {}
    for user, event_id, at in (("bob", "pay-0101", "2026-12-10T11:00:00+08:00"),
                               ("carol", "pay-0102", "2026-12-10T11:30:00+08:00")):
        rewards = send(**dict(payment(event_id, at, "300.00", merchant_id="m_300"),
                              user_id=user))["rewards"]
        [held[user]] = [r["reward_id"] for r in rewards if r.get("held")]
    with app.app_context():
        release_committed(db.session, held["bob"], actor="portal:risk@bank.cn", now=RELEASED)
        void_committed(db.session, held["carol"], actor="portal:risk@bank.cn", now=VOIDED,
                       reservations=None)
    move_campaigns(SPRING_OPENS)
    send(**payment("pay-0003", "2027-02-06T12:30:00+08:00", "160.00", merchant_id="m_200"))
    move_campaigns(SPRING_CLOSES)
    with app.app_context():
        assert sweep_points(db.session, SWEPT)[0] > 0


def test_every_example_is_a_real_message(database_url, tmp_path):
    settings = make_settings(database_url, points_expire_months=12)
    with running_app(settings) as app:
        run_the_examples_changes(app, tmp_path)
        written = written_messages(app)
    assert {m["type"] for m in written} == set(webhook_outbox.TYPES)
    bound: dict = {}
    unused = list(written)
    for line, _, shown in examples():
        where = f"docs/webhooks.md:{line}"
        candidates = [m for m in unused if m["type"] == shown["type"]]
        problems = []
        for actual in candidates:
            attempt = dict(bound)
            try:
                matches(shown, actual, attempt, where)
            except AssertionError as exc:
                problems.append(exc)
                continue
            bound = attempt
            unused.remove(actual)
            break
        else:
            pytest.fail(f"{where}: no {shown['type']} message written is like the one shown:\n"
                        + "\n".join(f"  {json.dumps(m)}\n    {p}"
                                    for m, p in zip(candidates, problems)))


# -- (b) the Python receiver ------------------------------------------------------------------

def signed_request(secret: str, body: bytes) -> dict[str, str]:
    headers = signed_headers(secret, "msg_5f0c3b8e2a7d4c1e9b6a0f3d", body)
    headers["Content-Type"] = "application/json"
    return headers


def a_body() -> bytes:
    """The first example of the page, as the dispatcher sends bodies."""
    return json.dumps(examples()[0][2], separators=(", ", ": ")).encode()


def tampered(body: bytes) -> bytes:
    tampered = body.replace(b'"points": 256', b'"points": 2560')
    assert tampered != body
    return tampered


def test_the_python_receiver_accepts_signed_messages_only(monkeypatch):
    line, code = snippet("python", "Verifying in Python")
    secret = new_secret()
    monkeypatch.setenv("PROMO_WEBHOOK_SECRET", secret)
    namespace: dict = {"__name__": "receiver"}
    exec(compile(code, f"docs/webhooks.md:{line}", "exec"), namespace)
    handled = []
    namespace["handle"] = lambda message_id, message: handled.append((message_id, message))
    app = namespace["app"]
    [path] = [rule.rule for rule in app.url_map.iter_rules() if "POST" in rule.methods]
    client = app.test_client()

    body = a_body()
    headers = signed_request(secret, body)
    assert client.post(path, data=body, headers=headers).status_code in (200, 204)
    assert handled == [(headers["webhook-id"], json.loads(body))]

    assert client.post(path, data=tampered(body), headers=headers).status_code == 400
    other = signed_request(new_secret(), body)
    assert client.post(path, data=body, headers=other).status_code == 400
    assert len(handled) == 1


def test_the_signature_is_as_described():
    """For receivers in other languages: HMAC-SHA256 over "{id}.{timestamp}.{body}", keyed
    with the base64-decoded secret after `whsec_`, as `v1,` and its base64."""
    import base64
    import hashlib
    import hmac
    secret, body = new_secret(), a_body()
    headers = signed_request(secret, body)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == "v1," + expected
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5


# -- (c) the Node receiver --------------------------------------------------------------------

def node_modules() -> Path:
    """tests/node_webhooks/node_modules with the locked packages, installed when missing."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/standardwebhooks"]["version"]
    installed = NODE_DIR / "node_modules" / "standardwebhooks" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != wanted:
        npm = shutil.which("npm")
        assert npm, "node is installed but npm is not: install npm to run the Node receiver"
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts",
                               "--loglevel=error"], cwd=NODE_DIR, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    return NODE_DIR / "node_modules"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_node_receiver_accepts_signed_messages_only(tmp_path, monkeypatch):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    line, code = snippet("js", "Verifying in Node.js")
    _, python_code = snippet("python", "Verifying in Python")
    [path] = re.findall(r'@app\.post\("([^"]+)"\)', python_code)
    assert f'"{path}"' in code, "the Python and Node receivers take the same path"
    script = tmp_path / "receiver.js"
    script.write_text(code)
    secret, port = new_secret(), free_port()
    env = dict(os.environ, PROMO_WEBHOOK_SECRET=secret, PORT=str(port),
               NODE_PATH=str(node_modules()))
    receiver = subprocess.Popen([node, str(script)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert receiver.poll() is None, receiver.communicate()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"docs/webhooks.md:{line} does not listen"
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}{path}"
        body = a_body()
        headers = signed_request(secret, body)
        assert post(url, body, headers) in (200, 204)
        assert post(url, tampered(body), headers) == 400
        assert post(url, body, signed_request(new_secret(), body)) == 400
    finally:
        receiver.terminate()
        out, err = receiver.communicate(timeout=10)
    # The page's `handle` logs each message it is given: the genuine one only.
    assert out.splitlines() == [f"{headers['webhook-id']} {json.loads(body)['type']}"], (out, err)
