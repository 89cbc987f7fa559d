"""docs/clients.md's signing code, run as written against a live `promo-engine serve`.

Every fenced block after a `<!-- client: NAME -->` comment is a program of the page. One
server (SQLite, one client key, a x2 campaign at m_100) serves the whole module; each
program gets PROMO_URL, PROMO_KEY_ID and PROMO_SECRET, records its own payment of 40.00 at
m_100 and must print 201 and exactly its rewards (40 base points and 40 from the campaign);
the `requests` and generated-client ones also resend the stored body and must get 200 +
Idempotent-Replayed. The page's description of the scheme is checked against auth.py: its
worked signature, and its 401 messages against what the server answers to each mistake.

The generated clients are generated here from the served GET /v1/openapi.json: Python with
openapi-python-client (in the `test` extras) into tmp_path, TypeScript types with
openapi-typescript, against which `tsc --checkJs` accepts the openapi-fetch program and
rejects it with a misspelt field or a payment without its amount. The Node packages are
installed from tests/clients/node/package-lock.json into its node_modules (git-ignored) the
first time, and reused after. Without node, npm, java, curl or openssl a test is skipped,
and fails under PROMO_REQUIRE_SERVICES=1.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promo_engine.api import auth

from conftest import REQUIRE_SERVICES, make_settings, running_app
from processes import Processes, Server, deploy, service_env

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "clients.md"
NODE_DIR = Path(__file__).resolve().parent / "clients" / "node"
BLOCK = re.compile(r"^<!-- client: ([\w-]+) -->\n```(\w+)\n(.*?)^```", re.M | re.S)
PROGRAMS = {"curl": "sh", "python-requests": "python", "python-generate": "sh",
            "python-generated": "python", "node-fetch": "js", "node-types": "sh",
            "node-openapi-fetch": "js", "java": "java"}
CAMPAIGNS = """
id: double-points-m100
name: Double points at m_100
type: points_multiplier
merchants: [m_100]
starts_at: 2026-01-01T00:00:00
ends_at: 2099-01-01T00:00:00
params: {multiplier: 2}
"""
REWARD_ID = re.compile(r"rw_[0-9a-f]{20}")
TIMEOUT = 120


def blocks() -> dict[str, tuple[str, str]]:
    """{marker name: (language, code)} of the page."""
    found = {}
    for name, language, code in BLOCK.findall(DOC.read_text()):
        assert name not in found, f"docs/clients.md: two blocks marked {name!r}"
        found[name] = (language, code)
    return found


def program(name: str) -> str:
    language, code = blocks()[name]
    assert language == PROGRAMS[name], (name, language)
    return code


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed: the page's {name} examples cannot run"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (PROMO_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The environment the page's programs run in: this one plus PROMO_URL, PROMO_KEY_ID
    and PROMO_SECRET of a running server."""
    cwd = tmp_path_factory.mktemp("server")
    env = service_env(f"sqlite:///{cwd / 'promo.db'}")
    [(key_id, secret)] = deploy(env, cwd, CAMPAIGNS, clients=1)
    with Processes() as processes:
        server = processes.add(Server(env, cwd, workers=1))
        server.start()
        yield {**{k: v for k, v in os.environ.items() if not k.startswith("PROMO_")},
               "PROMO_URL": server.base, "PROMO_KEY_ID": key_id, "PROMO_SECRET": secret}
        server.assert_no_errors_logged()


def run(args: list[str], env: dict, cwd: Path) -> str:
    """stdout of `args`; AssertionError with all of its output if it fails."""
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, \
        f"{args} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def answer_line(line: str, event_id: str, user: str) -> tuple[str, dict]:
    """(what precedes the JSON answer on `line`, the answer) after checking the answer is
    the payment's: 40 base points and 40 from the campaign, 80 in all for a new user."""
    before, brace, text = line.partition("{")
    answer = json.loads(brace + text)
    ids = [reward.pop("reward_id") for reward in answer["rewards"]]
    assert all(REWARD_ID.fullmatch(i) for i in ids) and len(set(ids)) == 2, ids
    assert answer == {"event_id": event_id, "points_balance": 80, "rewards": [
        {"campaign_id": None, "kind": "points", "points": 40},
        {"campaign_id": "double-points-m100", "kind": "points", "points": 40}]}, (user, line)
    return before.strip(), answer


def test_the_page_has_every_program():
    assert {name: language for name, (language, _) in blocks().items()} == PROGRAMS


def test_the_scheme_is_the_servers(tmp_path):
    """The tolerance, the rotation limit and the worked signature are auth.py's, and the
    page's 401 messages are what the server answers to each mistake, in the page's order."""
    text = " ".join(DOC.read_text().split())
    assert f"within {auth.MAX_CLOCK_SKEW_SECONDS} s of the server's clock" in text
    assert f"up to {auth.MAX_SIGNATURES} comma-separated `v1=` values" in text
    signed = auth.sign_request("s3cret", 1796534400, "GET", "/v1/users/alice/points?limit=5")
    assert ("`1796534400.GET./v1/users/alice/points?limit=5.` and sends ```text "
            f"X-Promo-Signature: {signed} ```") in text
    table = DOC.read_text().split("one of these\nmessages:\n\n")[1].split("\n\n")[0]
    shown = re.findall(r"^\| `([^`]+)`", table, re.M)

    now = str(int(time.time()))
    good = auth.signed_headers("no-such-key", "x", "GET", "/v1/campaigns")
    mistakes = [{},
                {**good, auth.TIMESTAMP_HEADER: now + ".5"},
                {**good, auth.TIMESTAMP_HEADER: now + "000"},
                {**good, auth.SIGNATURE_HEADER: "sha256=" + "0" * 64},
                good]
    settings = make_settings(f"sqlite:///{tmp_path / 'promo.db'}")
    with running_app(settings) as app:
        client = app.test_client()
        answers = [client.get("/v1/campaigns", headers=headers) for headers in mistakes]
    assert {answer.status_code for answer in answers} == {401}
    assert [answer.get_json()["error"]["message"] for answer in answers] == shown


@pytest.mark.slow
def test_curl(live, tmp_path):
    tool("curl")
    tool("openssl")
    out = run(["bash", "-euo", "pipefail", "-c", program("curl")], live, tmp_path)
    *body, status = out.strip().splitlines()
    assert status == "201", out
    answer_line("".join(body), "pay-curl-0001", "u-curl")
    shown = re.search(r"prints the answer and then the status:\n\n```text\n(.*?)```",
                      DOC.read_text(), re.S)[1]
    assert REWARD_ID.sub("rw_…", out) == shown


@pytest.mark.slow
def test_python_requests_and_a_replay(live, tmp_path):
    script = tmp_path / "record_payment.py"
    script.write_text(program("python-requests"))
    first, retry = run([sys.executable, str(script)], live, tmp_path).strip().splitlines()
    assert answer_line(first, "pay-py-0001", "u-python")[0] == "201"
    assert answer_line(retry, "pay-py-0001", "u-python")[0] == "200 true"
    assert first.partition(" ")[2] == retry.partition(" ")[2].partition(" ")[2], \
        "a replay answers the same body"


@pytest.mark.slow
def test_python_generated_client_and_a_replay(live, tmp_path):
    """openapi-python-client generates the package the program imports; its hook signs."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "openapi-python-client").exists(), \
        "openapi-python-client is missing: pip install -e '.[test]'"
    env = dict(live, PATH=f"{bin_dir}:{live['PATH']}")
    run(["bash", "-euo", "pipefail", "-c", program("python-generate")], env, tmp_path)
    project = tmp_path / "promo-engine-wallet-api-client"
    api = project / "promo_engine_wallet_api_client" / "api"
    # the modules the page names
    assert (api / "events" / "record_event.py").exists()
    assert (api / "users" / "get_user_points.py").exists()
    script = tmp_path / "record_payment.py"
    script.write_text(program("python-generated"))
    env["PYTHONPATH"] = str(project)
    first, retry = run([sys.executable, str(script)], env, tmp_path).strip().splitlines()
    assert answer_line(first, "pay-gen-0001", "u-generated")[0] == "201"
    assert retry == "200 true"


def node_modules() -> Path:
    """tests/clients/node/node_modules with the locked packages, installed when missing."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    installed = NODE_DIR / "node_modules"
    for package, entry in lock["packages"].items():
        if package and not (installed.parent / package / "package.json").exists():
            break
        if package and json.loads((installed.parent / package / "package.json").read_text())[
                "version"] != entry["version"]:
            break
    else:
        return installed
    done = subprocess.run([tool("npm"), "ci", "--no-audit", "--no-fund", "--ignore-scripts",
                           "--loglevel=error"], cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return installed


@pytest.fixture
def node_project(tmp_path):
    """A directory with the locked packages, where the page's Node programs are written."""
    node = tool("node")
    (tmp_path / "node_modules").symlink_to(node_modules())
    return node, tmp_path


@pytest.mark.slow
def test_node_fetch(live, node_project):
    node, cwd = node_project
    (cwd / "record-payment.mjs").write_text(program("node-fetch"))
    line = run([node, "record-payment.mjs"], live, cwd).strip()
    assert answer_line(line, "pay-node-0001", "u-node")[0] == "201"


@pytest.mark.slow
def test_node_openapi_fetch_with_generated_types(live, node_project):
    node, cwd = node_project
    env = dict(live, PATH=f"{cwd / 'node_modules' / '.bin'}:{live['PATH']}")
    run(["bash", "-euo", "pipefail", "-c", program("node-types")], env, cwd)
    assert "paths" in (cwd / "promo-api.d.ts").read_text()
    (cwd / "record-payment-typed.mjs").write_text(program("node-openapi-fetch"))
    # The program type-checks against the generated types; with a misspelt field, or a
    # payment without its amount, it does not.
    tsc = [node, str(cwd / "node_modules" / "typescript" / "bin" / "tsc"), "--noEmit",
           "--allowJs", "--checkJs", "--module", "esnext", "--moduleResolution", "bundler",
           "--target", "es2022", "--types", "node", "--skipLibCheck"]
    code = program("node-openapi-fetch")
    wrong = {"misspelt.mjs": code.replace("event_id:", "eventId:"),
             "no-amount.mjs": code.replace('amount: "40.00", ', "")}
    for name, text in wrong.items():
        assert text != code, name
        (cwd / name).write_text(text)
    checked = subprocess.run([*tsc, "record-payment-typed.mjs", *wrong], env=env, cwd=cwd,
                             capture_output=True, text=True, timeout=TIMEOUT)
    errors = re.findall(r"^([\w.-]+)\(\d+,\d+\): error (.*)$", checked.stdout, re.M)
    assert {file for file, _ in errors} == set(wrong), checked.stdout
    line = run([node, "record-payment-typed.mjs"], live, cwd).strip()
    assert answer_line(line, "pay-ofetch-0001", "u-openapi-fetch")[0] == "201"


@pytest.mark.slow
def test_java(live, tmp_path):
    java = tool("java")
    (tmp_path / "Client.java").write_text(program("java"))
    line = run([java, "Client.java"], live, tmp_path).strip()
    assert answer_line(line, "pay-java-0001", "u-java")[0] == "201"
