"""README's quickstart, run as written against a real `promo-engine serve`."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from processes import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def block_after(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)```", README, re.S)
    assert match, f"README has no ```sh block after <!-- {marker} -->"
    return match.group(1)


def serve_answers(url: str) -> None:
    """Wait (30 s at most) until the `promo-engine serve` at url answers /healthz."""
    def answers() -> bool:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(answers, 30, "promo-engine serve to start", interval=0.2)


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
        serve_answers(f"http://127.0.0.1:{port}")
        yield env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def run_shell(script: str, env: dict) -> subprocess.CompletedProcess:
    env = dict(env, PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


SECTION = "=== README block {} ==="


def run_blocks(markers: list[str], env: dict) -> dict[str, tuple[str, str]]:
    """The README's blocks run as written, one after the other in one shell (variables
    carry over, as in a terminal); each block's (stdout, stderr), told apart by a line the
    test echoes between blocks."""
    script = "".join(f"echo '{SECTION.format(marker)}'; echo '{SECTION.format(marker)}' >&2\n"
                     + block_after(marker) for marker in markers)
    result = run_shell(script, env)
    assert result.returncode == 0, result.stdout + result.stderr

    def split(text: str) -> list[str]:
        parts = re.split(r"^=== README block (\S+) ===\n", text, flags=re.M)
        assert parts[0] == "" and parts[1::2] == markers, text
        return parts[2::2]
    return dict(zip(markers, zip(split(result.stdout), split(result.stderr))))


def http_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("HTTP ")]


@pytest.mark.slow
def test_quickstart_runs_as_written(served):
    """Every quickstart block, in order, in one shell: the replay step sends the payment
    again and gets the first answer back."""
    outputs = run_blocks(["quickstart", "quickstart-replay", "quickstart-weekend",
                          "quickstart-curl"], served)

    out, err = outputs["quickstart"]
    assert "8 campaigns in 8 files are valid" in out
    assert "created new-wallet-bonus" in out
    documents = [json.loads(doc) for doc in re.findall(r"^\{.*?^\}", out, re.S | re.M)]
    activation, pay, points = documents[-3:]
    assert [(r["campaign_id"], r["points"]) for r in activation["rewards"]] == [("new-wallet-bonus", 500)]
    assert pay["event_id"] == "pay-0001"
    assert [(r["campaign_id"], r["kind"], r["points"]) for r in pay["rewards"]] == [(None, "points", 128)]
    assert pay["points_balance"] == 628
    assert points["points_balance"] == 628
    assert [e["points"] for e in points["entries"]] == [128, 500]
    assert http_lines(err) == ["HTTP 201", "HTTP 201", "HTTP 200"]
    pay_text = re.findall(r"^\{.*?^\}\n", out, re.S | re.M)[-2]

    replay_out, replay_err = outputs["quickstart-replay"]
    assert replay_err == "HTTP 200 (replayed)\n"
    assert replay_out == pay_text  # exactly the first answer
    assert "It answers `HTTP 200 (replayed)`" in README

    weekend_out, weekend_err = outputs["quickstart-weekend"]
    assert weekend_err == "HTTP 200\n"
    weekend = json.loads(weekend_out)
    assert [(r["campaign_id"], r["kind"], r["points"]) for r in weekend["rewards"]] == [
        (None, "points", 128), ("weekend-3x", "points", 256)]
    assert (weekend["points_balance"], weekend["dry_run"]) == (1012, True)
    assert "the 128 base points and `weekend-3x`'s 256" in README
    assert '`"points_balance": 1012`' in README

    raw = json.loads(outputs["quickstart-curl"][0])
    assert raw["event_id"] == "pay-0002"
    assert raw["points_balance"] == 716


@pytest.mark.slow
def test_serve_on_another_host_and_port_is_found_through_promo_url(tmp_path):
    """The "Run it" example of --host, --port and PROMO_URL, on a free port for 8080."""
    port = free_port()
    block = block_after("serve-port")
    assert "--port 8080" in block and "PROMO_URL=http://127.0.0.1:8080" in block
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'promo.db'}",
               SECRET_KEY="readme-secret-key-0123456789",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("REDIS_URL", None)
    env.pop("PROMO_URL", None)
    shell = subprocess.Popen(
        ["bash", "-euc", block.replace("8080", str(port)) + 'echo "$PROMO_URL"\nwait\n'],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True)
    try:
        env["PROMO_URL"] = shell.stdout.readline().strip()
        assert env["PROMO_URL"] == f"http://127.0.0.1:{port}"
        serve_answers(env["PROMO_URL"])
        client = json.loads(subprocess.run(["promo-engine", "clients", "create", "w", "--json"],
                                           env=env, cwd=tmp_path, capture_output=True,
                                           check=True, text=True).stdout)
        env.update(PROMO_KEY_ID=client["key_id"], PROMO_SECRET=client["secret"])
        done = subprocess.run(["promo-engine", "points", "nobody"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stderr) == (0, "HTTP 200\n")
        assert json.loads(done.stdout)["points_balance"] == 0
    finally:
        os.killpg(shell.pid, signal.SIGTERM)
        shell.wait(timeout=30)


def test_more_links_the_signing_guide():
    assert "- [Signing requests from curl, Python, Node and Java](docs/clients.md)\n" in \
        README.split("## More\n", 1)[1]
