"""README's quickstart, run as written against a real `promo-engine serve`."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def block_after(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)```", README, re.S)
    assert match, f"README has no ```sh block after <!-- {marker} -->"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'promo.db'}",
               SECRET_KEY="readme-secret-key-0123456789", PROMO_URL=f"http://127.0.0.1:{port}")
    env.pop("REDIS_URL", None)
    server = subprocess.Popen([str(Path(sys.executable).parent / "promo-engine"), "serve",
                               "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "promo-engine serve did not start"
                time.sleep(0.2)
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def run_shell(script: str, env: dict) -> subprocess.CompletedProcess:
    env = dict(env, PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_quickstart_runs_as_written(served):
    quickstart = block_after("quickstart")
    curl = block_after("quickstart-curl")
    result = run_shell(quickstart + curl, served)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "8 campaigns in 8 files are valid" in out
    assert "created new-wallet-bonus" in out
    documents = [json.loads(doc) for doc in re.findall(r"^\{.*?^\}", out, re.S | re.M)]
    activation, pay, points = documents[:3]
    assert [(r["campaign_id"], r["points"]) for r in activation["rewards"]] == [("new-wallet-bonus", 500)]
    assert pay["event_id"] == "pay-0001"
    assert [(r["campaign_id"], r["kind"], r["points"]) for r in pay["rewards"]] == [(None, "points", 128)]
    assert pay["points_balance"] == 628
    assert points["points_balance"] == 628
    assert [e["points"] for e in points["entries"]] == [128, 500]
    raw = json.loads(out.strip().splitlines()[-1])
    assert raw["event_id"] == "pay-0002"
    assert raw["points_balance"] == 716
