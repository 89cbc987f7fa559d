"""The CLI's failures in a new user's first hour, run as a user runs them: each is one line on
stderr saying what to do, with a non-zero exit status and no traceback."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_readme import served  # noqa: F401 (a fixture: `promo-engine serve` on a free port)

CLI = str(Path(sys.executable).parent / "promo-engine")
EVENT = '{"type": "activation", "user_id": "alice"}'
REQUESTS = {"events send": ["events", "send", EVENT], "events quote": ["events", "quote", EVENT],
            "points": ["points", "alice"]}


@pytest.fixture
def environ(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "REDIS_URL", "PROMO_URL")}
    env.update(PROMO_KEY_ID="pk_test", PROMO_SECRET="not-a-real-secret",
               DATABASE_URL=f"sqlite:///{tmp_path / 'promo.db'}")
    return env


def cli(env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert "Traceback" not in done.stderr + done.stdout
    return done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", list(REQUESTS))
def test_a_stopped_server_is_one_line(environ, command):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = cli({**environ, "PROMO_URL": url}, *REQUESTS[command])
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"promo-engine: cannot reach {url} (connection refused); is "
                           f"`promo-engine serve` running? Set --url or PROMO_URL.\n")


def test_the_default_url_is_named_when_nothing_listens_there(environ):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.skip("something listens on 127.0.0.1:8000")
    done = cli(environ, "points", "alice")
    assert (done.returncode, done.stderr) == (
        1, "promo-engine: cannot reach http://127.0.0.1:8000 (connection refused); is "
           "`promo-engine serve` running? Set --url or PROMO_URL.\n")


def test_a_server_that_does_not_answer_is_one_line(environ):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections are accepted by the kernel, and never answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        done = cli(environ, "events", "send", EVENT, "--url", url, "--timeout", "0.5")
    assert (done.returncode, done.stderr) == (
        1, f"promo-engine: cannot reach {url} (no answer within 0.5 s); is it busy? Wait "
           f"longer with --timeout, or set --url or PROMO_URL.\n")


def test_a_connection_closed_without_an_answer_is_one_line(environ):
    with socket.socket() as rude:
        rude.bind(("127.0.0.1", 0))
        rude.listen()
        url = f"http://127.0.0.1:{rude.getsockname()[1]}"

        def hang_up():
            connection, _ = rude.accept()
            connection.recv(65536)
            connection.close()
        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        done = cli(environ, "points", "alice", "--url", url)
        thread.join(10)
    assert (done.returncode, done.stderr) == (
        1, f"promo-engine: cannot reach {url} (the connection was closed without an answer); "
           f"is `promo-engine serve` running? Set --url or PROMO_URL.\n")


@pytest.mark.parametrize("url, reason", [
    ("127.0.0.1:8000", "'127.0.0.1:8000' is not a URL like http://127.0.0.1:8000"),
    ("ftp://127.0.0.1", "'ftp://127.0.0.1' is not a URL like http://127.0.0.1:8000"),
    ("http://127.0.0.1:80a", "'http://127.0.0.1:80a' has no valid port")])
def test_a_bad_url_is_one_line(environ, url, reason):
    done = cli({**environ, "PROMO_URL": url}, "events", "send", EVENT)
    assert (done.returncode, done.stderr) == (2, f"promo-engine: --url or PROMO_URL: {reason}\n")


@pytest.mark.parametrize("unset, line", [
    (["PROMO_KEY_ID"], "PROMO_KEY_ID is not set: export the key id and secret of an API client "
                       "(`promo-engine clients create NAME` creates one), or pass --key"),
    (["PROMO_SECRET"], "PROMO_SECRET is not set: export the key id and secret of an API client "
                       "(`promo-engine clients create NAME` creates one), or pass --secret"),
    (["PROMO_KEY_ID", "PROMO_SECRET"],
     "PROMO_KEY_ID and PROMO_SECRET are not set: export the key id and secret of an API client "
     "(`promo-engine clients create NAME` creates one), or pass --key and --secret")])
@pytest.mark.parametrize("command", list(REQUESTS))
def test_missing_credentials_name_the_environment_variables(environ, command, unset, line):
    env = {key: value for key, value in environ.items() if key not in unset}
    done = cli(env, *REQUESTS[command])
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"promo-engine: {line}\n")


@pytest.mark.parametrize("event, line", [
    ('{"type": "activation",', "EVENT is not JSON: Expecting property name enclosed in double "
                               "quotes: line 1 column 23 (char 22)"),
    ('["activation"]', """EVENT must be a JSON object, like '{"type": "activation", """
                       """"user_id": "alice"}'""")])
def test_an_event_that_is_not_a_json_object_is_one_line(environ, event, line):
    done = cli(environ, "events", "send", event)
    assert (done.returncode, done.stderr) == (2, f"promo-engine: {line}\n")


def test_serve_on_a_busy_port_is_one_line_before_any_retry(environ, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = cli(environ, "serve", "--port", str(port), cwd=tmp_path)
        elapsed = time.monotonic() - started
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"promo-engine serve: port {port} on 127.0.0.1 is in use: stop "
                           f"what runs there or choose another with --port\n")
    assert elapsed < 5  # gunicorn would have retried for 5 seconds


UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:{port}/promo"


def test_campaigns_against_an_unreachable_database_are_one_line(environ):
    port = free_port()
    url = UNREACHABLE_DATABASE.format(port=port)
    reason = (f'connection failed: connection to server at "127.0.0.1", port {port} failed: '
              f'Connection refused')
    campaigns = str(Path(__file__).resolve().parents[1] / "campaigns")
    applied = cli({**environ, "DATABASE_URL": url}, "campaigns", "apply", campaigns)
    assert (applied.returncode, applied.stderr) == (
        1, f"promo-engine: database error: {reason}; nothing was applied\n")
    listed = cli({**environ, "DATABASE_URL": url}, "campaigns", "list")
    assert (listed.returncode, listed.stderr) == (
        1, f"promo-engine: cannot use the database {url}: {reason}\n")


def test_a_database_without_the_schema_says_to_migrate(environ, tmp_path):
    done = cli(environ, "clients", "create", "wallet-backend", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1, f"promo-engine: the database sqlite:///{tmp_path / 'promo.db'} is at schema revision "
           f"none; run `promo-engine db upgrade` first\n")


@pytest.mark.slow
def test_sending_again_without_occurred_at_explains_the_409_and_how_to_replay(served):  # noqa: F811
    env = dict(served, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    client = json.loads(cli(env, "clients", "create", "wallet-backend", "--json").stdout)
    env.update(PROMO_KEY_ID=client["key_id"], PROMO_SECRET=client["secret"])
    event = '{"event_id": "act-1", "type": "activation", "user_id": "bob"}'
    first = cli(env, "events", "send", event)
    assert (first.returncode, first.stderr) == (0, "HTTP 201\n")
    time.sleep(1.1)  # the next "now" is another second
    again = cli(env, "events", "send", event)
    assert again.returncode == 1
    error = json.loads(again.stdout)["error"]
    recorded, sent = re.fullmatch(r"was (\S+), this request has (\S+)",
                                  error["fields"]["occurred_at"][0]).groups()
    assert error["message"] == (
        f"event_id act-1 was already recorded with a different body: occurred_at was "
        f"{recorded}, this request has {sent}. Resend the original body to get the recorded "
        f"answer")
    assert again.stderr == (
        f"HTTP 409\npromo-engine: occurred_at was not given, so it was set to now ({sent}); "
        f"to replay the event, send it with the occurred_at it was recorded with\n")
    replay = cli(env, "events", "send", event[:-1] + f', "occurred_at": "{recorded}"}}')
    assert (replay.returncode, replay.stderr, replay.stdout) == (0, "HTTP 200 (replayed)\n",
                                                                first.stdout)


@pytest.mark.slow
def test_a_key_the_server_does_not_know_says_where_to_create_one(served):  # noqa: F811
    env = dict(served, PROMO_KEY_ID="pk_unknown", PROMO_SECRET="not-a-real-secret")
    for command in REQUESTS.values():
        done = cli(env, *command)
        assert done.returncode == 1
        assert json.loads(done.stdout)["error"] == {"code": "unauthorized",
                                                    "message": "invalid key or signature"}
        assert done.stderr == (
            f"HTTP 401\npromo-engine: {served['PROMO_URL']} does not know this PROMO_KEY_ID "
            f"and PROMO_SECRET: create the client where the server keeps its data "
            f"(`promo-engine clients create NAME` in its folder, or with its DATABASE_URL)\n")
