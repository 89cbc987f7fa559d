"""`promo-engine serve --workers 2`: a real gunicorn server, started and stopped as operators do."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from promo_engine.api.auth import signed_headers

pytestmark = pytest.mark.slow

SECRET_KEY = "test-secret-key-0123456789"
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT", "PROMETHEUS_MULTIPROC_DIR")
START_TIMEOUT = 30
STOP_TIMEOUT = 40  # gunicorn's graceful timeout is 30 s
CLI = str(Path(sys.executable).with_name("promo-engine"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def environ(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'promo.db'}", SECRET_KEY=SECRET_KEY)
    return env


@pytest.fixture
def server(tmp_path, environ):
    """The server's base URL; the process is stopped (or killed) afterwards."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([CLI, "serve", "--port", str(port), "--workers", "2"],
                                   env=environ, cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    handle = {"process": process, "base": base, "log": log_path}
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not listening, or busy starting
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not up in {START_TIMEOUT} s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield handle
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # lets it clean up its metrics directory
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def stop(handle) -> int:
    process = handle["process"]
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=STOP_TIMEOUT)


def test_serve_answers_health_readiness_and_metrics_then_stops_on_sigterm(server):
    base = server["base"]
    ready = requests.get(f"{base}/readyz", timeout=5)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready",
                                                       "checks": {"database": "ok"}})
    metrics = requests.get(f"{base}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE promo_http_requests_total counter" in metrics.text
    assert stop(server) == 0
    log = server["log"].read_text()
    assert f"promo-engine: serving {base} (2 workers, 8 threads each)" in log


def test_metrics_add_up_every_worker(server):
    base = server["base"]
    for _ in range(20):  # a new connection each, so both workers take some
        requests.get(f"{base}/healthz", timeout=5, headers={"Connection": "close"})
    text = requests.get(f"{base}/metrics", timeout=5).text
    # 20, plus the one that told the fixture the server was up
    assert ('promo_http_requests_total{endpoint="/healthz",method="GET",status="200"} 21.0'
            in text)


def test_signed_requests_through_the_server(server, environ, tmp_path):
    created = subprocess.run([CLI, "clients", "create", "wallet-backend", "--json"],
                             env=environ, cwd=tmp_path, capture_output=True, text=True,
                             timeout=60, check=True)
    client = json.loads(created.stdout)
    target = "/v1/users/u_1/points?limit=5"
    headers = signed_headers(client["key_id"], client["secret"], "GET", target)
    assert requests.get(server["base"] + target, headers=headers, timeout=5).status_code == 200
    tampered = requests.get(server["base"] + "/v1/users/u_1/points?limit=500", headers=headers,
                            timeout=5)
    assert tampered.status_code == 401


def test_chunked_body_over_64_kib_is_413_through_the_server(server):
    def chunks():
        for _ in range(65):
            yield b"x" * 1024
    response = requests.post(server["base"] + "/v1/events", data=chunks(), timeout=10,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["default", "2 workers"])
def test_serve_on_a_port_in_use_says_so_in_one_line_and_fails(environ, tmp_path, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([CLI, "serve", "--port", str(port), *workers], env=environ,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == (f"promo-engine serve: port {port} on 127.0.0.1 is in use: stop "
                           f"what runs there or choose another with --port\n")
    assert done.stdout == ""


def test_serve_on_an_address_of_another_host_says_so_in_one_line_and_fails(environ, tmp_path):
    done = subprocess.run([CLI, "serve", "--host", "192.0.2.1", "--port", "8000"],
                          env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == ("promo-engine serve: cannot listen on 192.0.2.1:8000: Cannot assign "
                           "requested address\n")


def test_the_servers_scheduler_sends_webhooks_and_metrics_count_them(server, environ,
                                                                      tmp_path):
    """`serve` runs a dispatcher (in its scheduler process): a payment's reward reaches a
    receiver that verifies it, and /metrics, answered by a worker, counts the delivery and
    shows no lag."""
    from webhook_receiver import Receiver

    def cli(*args: str) -> dict:
        done = subprocess.run([CLI, *args, "--json"], env=environ, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)

    receiver = Receiver().start()
    try:
        receiver.secrets["/hooks"] = cli("webhooks", "add", receiver.url("/hooks"))["secret"]
        client = cli("clients", "create", "wallet-backend")
        body = json.dumps({"event_id": "p1", "type": "payment", "user_id": "u_1",
                           "merchant_id": "m_1", "amount": "12.00", "currency": "CNY",
                           "occurred_at": "2026-12-01T10:00:00Z"}).encode()
        # The workers read the endpoint list at most every 2 s: an event before that may
        # be written for none, so it is sent again (a new event) until one is announced.
        deadline = time.monotonic() + 20
        n = 0
        while not receiver.accepted("/hooks"):
            assert time.monotonic() < deadline, "no delivery within 20 s"
            n += 1
            raw = body.replace(b'"p1"', f'"p{n}"'.encode())
            headers = signed_headers(client["key_id"], client["secret"], "POST", "/v1/events",
                                     raw)
            headers["Content-Type"] = "application/json"
            answer = requests.post(server["base"] + "/v1/events", data=raw, headers=headers,
                                   timeout=5)
            assert answer.status_code == 201, answer.text
            time.sleep(0.5)
        [message] = receiver.bodies("/hooks")[:1]
        assert message["type"] == "reward.granted"
        assert message["data"]["reward"]["points"] == 12

        def counted() -> str | None:
            text = requests.get(server["base"] + "/metrics", timeout=5).text
            line = 'promo_webhook_deliveries_total{outcome="delivered",type="reward.granted"}'
            return text if line in text else None
        deadline = time.monotonic() + 10
        while (text := counted()) is None:
            assert time.monotonic() < deadline, "the delivery is not in /metrics"
            time.sleep(0.2)
        assert "\npromo_webhook_oldest_pending_seconds 0.0\n" in text
    finally:
        receiver.stop()
