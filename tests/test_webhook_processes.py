"""Webhooks end to end as deployed, on PostgreSQL and Redis: `promo-engine serve --workers 3`,
concurrent payments from several wallet connections, an endpoint added with `promo-engine
webhooks add`, a real receiver that verifies every request with the `standardwebhooks`
library, and dispatchers in processes of their own, one of them killed (SIGKILL) in the
middle of its sends. At least once, nothing lost: every delivery written is delivered and
every message reaches the receiver, verified, with the body the outbox holds; each budget
threshold is announced once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from concurrent_wallets import HttpWallet
from conftest import TEST_REDIS_URL
from processes import LedgerView, Processes, Server, deploy, run_cli, service_env, wait_until
from wallet import OPEN_RANGE

pytestmark = [pytest.mark.slow, pytest.mark.services]

CAMPAIGNS = f"""
id: cash
type: holiday_discount
merchants: [m_100]
{OPEN_RANGE}params: {{amount_off: "1.00"}}
budget: {{amount: "100.00"}}
"""
PAYMENTS, THREADS = 150, 15  # 150 x 1.00 runs the 100.00 budget out

# A dispatcher alone in its process, with a short lease so that what the killed one had
# claimed comes due again within seconds (`webhooks run` uses the defaults).
DISPATCHER = """
import sys, time
from sqlalchemy import create_engine
from promo_engine.webhooks.dispatcher import Dispatcher
engine = create_engine(sys.argv[1])
Dispatcher(engine, sys.argv[2], timeout=2, lease=4, batch_size=20).start()
print("dispatching", flush=True)
while True:
    time.sleep(1)
"""


class Receiver:
    """A wallet's webhook endpoint: verifies each request, answers 204 after 20 ms (so
    that a dispatcher is always in the middle of something), keeps what it got."""

    def __init__(self):
        self.received: list[tuple[str, dict]] = []  # (webhook-id, body) of verified ones
        self.rejected: list[str] = []
        self.cut_short = 0  # requests whose body never arrived whole
        self.secret: str | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers["Content-Length"])
                raw = self.rfile.read(length)
                if len(raw) < length:
                    # The sender died between its headers and the end of its body (the
                    # killed dispatcher): no request arrived, as any HTTP server sees it.
                    with receiver.lock:
                        receiver.cut_short += 1
                    self.close_connection = True
                    return
                time.sleep(0.02)
                try:
                    body = Webhook(receiver.secret).verify(raw, dict(self.headers))
                except Exception as exc:  # noqa: BLE001: any refusal is recorded
                    with receiver.lock:
                        receiver.rejected.append(f"{type(exc).__name__}: {exc}")
                    self.send_response(400)
                else:
                    with receiver.lock:
                        receiver.received.append((self.headers["webhook-id"], body))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_dispatcher(env: dict, tmp_path, name: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-c", DISPATCHER, env["DATABASE_URL"], env["SECRET_KEY"]],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def test_three_workers_and_a_dispatcher_killed_mid_batch_lose_nothing(postgres_url, tmp_path,
                                                                      redis_prefix):
    env = service_env(postgres_url, redis_url=TEST_REDIS_URL, redis_prefix=redis_prefix)
    [(key_id, secret)] = deploy(env, tmp_path, CAMPAIGNS, clients=1)
    receiver = Receiver()
    added = json.loads(run_cli(env, "webhooks", "add", receiver.url, "--json", cwd=tmp_path))
    receiver.secret = added["secret"]
    dispatchers: list[subprocess.Popen] = []
    with Processes() as processes:
        processes.callback(receiver.close)
        processes.callback(lambda: [p.kill() for p in dispatchers if p.poll() is None])
        server = processes.add(Server(env, tmp_path, workers=3).start())
        dispatchers.append(start_dispatcher(env, tmp_path, "doomed"))
        answers: list = []

        def wallet_thread(share):
            wallet = HttpWallet(server.base, key_id, secret)
            for body in share:
                answers.append(wallet.send(body)[-1]["status"])

        occurred = datetime.now(timezone.utc).isoformat()
        bodies = [{"event_id": f"p{n}", "type": "payment", "user_id": f"u_{n % 50}",
                   "merchant_id": "m_100", "amount": "20.00", "currency": "CNY",
                   "occurred_at": occurred} for n in range(PAYMENTS)]
        threads = [threading.Thread(target=wallet_thread, args=(bodies[i::THREADS],))
                   for i in range(THREADS)]
        for thread in threads:
            thread.start()
        # Killed while it has sends in flight: some delivered, the rest claimed.
        wait_until(lambda: receiver.count() >= 40, 60, "the first deliveries")
        os.kill(dispatchers[0].pid, signal.SIGKILL)
        dispatchers[0].wait(timeout=10)
        killed_at = receiver.count()
        dispatchers += [start_dispatcher(env, tmp_path, f"d{n}") for n in (1, 2)]
        for thread in threads:
            thread.join(timeout=120)
        assert Counter(answers) == Counter({201: PAYMENTS})

        ledger = LedgerView(postgres_url)
        processes.callback(ledger.close)

        def all_delivered():
            [(pending, delivered)] = ledger.rows(
                "SELECT count(*) FILTER (WHERE status <> 'delivered'), "
                "count(*) FILTER (WHERE status = 'delivered') FROM webhook_deliveries")
            return pending == 0 and delivered
        wait_until(all_delivered, 90, "every delivery delivered", 0.5)
        server.assert_no_errors_logged()
        rows = ledger.rows("SELECT message_id, type, payload FROM webhook_deliveries")

    assert receiver.rejected == []
    assert killed_at < len(rows)  # the kill came before the end
    written = {message_id: (kind, json.loads(payload)) for message_id, kind, payload in rows}
    # 150 payments: base points each, and 100 of them the 1.00 discount; two thresholds.
    assert Counter(kind for kind, _ in written.values()) == Counter(
        {"reward.granted": PAYMENTS + 100, "campaign.budget_threshold": 2})
    got = {}
    for message_id, body in receiver.received:
        assert body == written[message_id][1]  # what the outbox holds, byte for byte parsed
        got[message_id] = got.get(message_id, 0) + 1
    assert set(got) == set(written)  # every message, at least once
    thresholds = sorted(body["data"]["threshold"] for kind, body in written.values()
                        if kind == "campaign.budget_threshold")
    assert thresholds == [0.8, 1.0]
