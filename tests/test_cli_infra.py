"""`promo-engine db ...`, `promo-engine clients ...` and `promo_engine.wsgi`."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from promo_engine.api.auth import signed_headers
from promo_engine.cli import main
from promo_engine.ledger import schema

from conftest import make_settings

SECRET_KEY = "test-secret-key-0123456789"
ENV_VARS = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PROMO_TIMEZONE", "PROMO_CURRENCY",
            "PROMO_POINTS_PER_UNIT")


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Run the CLI in-process with a clean environment (CI exports its own DATABASE_URL)."""
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str, database_url: str, **env: str):
        environ = {name: None for name in ENV_VARS}
        environ.update(DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY, **env)
        return CliRunner(env=environ).invoke(main, list(args), catch_exceptions=False)
    return invoke


def test_db_upgrade_creates_the_schema(run, database_url):
    result = run("db", "upgrade", database_url=database_url)
    assert result.exit_code == 0
    assert result.stdout == (f"{schema.describe_url(database_url)}: created the schema at "
                             f"revision {schema.head_revision()}\n")
    assert schema.current_revision(database_url) == schema.head_revision()


def test_db_upgrade_again_says_there_is_nothing_to_do(run, database_url):
    run("db", "upgrade", database_url=database_url)
    result = run("db", "upgrade", database_url=database_url)
    assert result.exit_code == 0
    assert result.stdout == (f"{schema.describe_url(database_url)}: already at revision "
                             f"{schema.head_revision()}, nothing to do\n")


def test_db_upgrade_hides_the_password(run):
    result = run("db", "upgrade", database_url="postgresql+psycopg://u:hunter2@127.0.0.1:1/x")
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert result.stderr.startswith("promo-engine: cannot use the database "
                                    "postgresql+psycopg://u:***@127.0.0.1:1/x: ")
    assert result.stderr.count("\n") == 1


def test_db_upgrade_of_an_unreachable_database_is_one_line_and_exit_1(run):
    result = run("db", "upgrade", database_url="sqlite:////nonexistent-directory/promo.db")
    assert result.exit_code == 1
    assert result.stderr == ("promo-engine: cannot use the database "
                             "sqlite:////nonexistent-directory/promo.db: "
                             "unable to open database file\n")


def test_db_current_reports_the_revision(run, sqlite_url):
    run("db", "upgrade", database_url=sqlite_url)
    result = run("db", "current", database_url=sqlite_url)
    head = schema.head_revision()
    assert result.stdout == f"{sqlite_url}: revision {head} (newest {head}; up to date)\n"


def test_clients_create_json_prints_exactly_key_id_and_secret(run, sqlite_url):
    run("db", "upgrade", database_url=sqlite_url)
    result = run("clients", "create", "wallet-backend", "--json", database_url=sqlite_url)
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert list(printed) == ["key_id", "secret"]
    assert printed["key_id"].startswith("pk_")
    assert result.stdout == json.dumps(printed) + "\n"
    assert result.stderr == ""


def test_clients_create_prints_key_id_and_secret_once(run, sqlite_url):
    run("db", "upgrade", database_url=sqlite_url)
    result = run("clients", "create", "wallet-backend", database_url=sqlite_url)
    assert result.exit_code == 0
    key_line, secret_line = result.stdout.splitlines()
    assert key_line.startswith("key id: pk_") and secret_line.startswith("secret: ")
    assert "cannot be shown again" in result.stderr


def test_created_client_can_sign_requests(run, database_url):
    from promo_engine.app import create_app
    run("db", "upgrade", database_url=database_url)
    printed = json.loads(run("clients", "create", "wallet-backend", "--json",
                             database_url=database_url).stdout)
    app = create_app(make_settings(database_url, secret_key=SECRET_KEY),
                     test_config={"TESTING": True})
    try:
        path = "/v1/users/u_1/points"
        headers = signed_headers(printed["key_id"], printed["secret"], "GET", path)
        response = app.test_client().get(path, headers=headers)
        assert response.status_code == 200
    finally:
        with app.app_context():
            from promo_engine.ledger.extensions import db
            db.engine.dispose()


def test_clients_create_before_db_upgrade_says_to_upgrade(run, sqlite_url):
    result = run("clients", "create", "wallet-backend", database_url=sqlite_url)
    assert result.exit_code == 1
    assert result.stderr == (f"promo-engine: the database {sqlite_url} is at schema revision "
                             "none; run `promo-engine db upgrade` first\n")


def test_clients_list_shows_clients_but_never_secrets(run, sqlite_url):
    run("db", "upgrade", database_url=sqlite_url)
    printed = json.loads(run("clients", "create", "pos-gateway", "--json",
                             database_url=sqlite_url).stdout)
    listing = run("clients", "list", database_url=sqlite_url).stdout
    assert printed["key_id"] in listing and "pos-gateway" in listing and "active" in listing
    assert printed["secret"] not in listing


def test_clients_revoke(run, sqlite_url):
    run("db", "upgrade", database_url=sqlite_url)
    key_id = json.loads(run("clients", "create", "old", "--json",
                            database_url=sqlite_url).stdout)["key_id"]
    assert run("clients", "revoke", key_id, database_url=sqlite_url).stdout == \
        f"revoked {key_id}\n"
    again = run("clients", "revoke", key_id, database_url=sqlite_url)
    assert (again.exit_code, again.stderr) == (1, f"promo-engine: no active client {key_id}\n")


def wsgi_import(tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    environ.update(env)
    code = "from promo_engine.wsgi import app; print(type(app).__name__, app.name)"
    return subprocess.run([sys.executable, "-c", code], env=environ, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_wsgi_app_is_configured_from_the_environment(tmp_path, sqlite_url):
    done = wsgi_import(tmp_path, DATABASE_URL=sqlite_url, SECRET_KEY=SECRET_KEY)
    assert (done.returncode, done.stdout) == (0, "Flask promo_engine.app\n")


def test_wsgi_app_with_an_invalid_setting_stops_with_one_line(tmp_path):
    done = wsgi_import(tmp_path, SECRET_KEY="short")
    assert done.returncode == 2
    assert done.stderr == ("promo-engine: configuration error: SECRET_KEY: must be at least "
                           "16 characters\n")


ROOT = Path(__file__).resolve().parents[1]


def readme_command(section: str) -> str:
    text = (ROOT / "README.md").read_text().split(f"## {section}\n", 1)[1]
    return re.search(r"```sh\n(.+?)\n```", text, re.S).group(1)


def test_ci_runs_exactly_the_readme_test_command():
    command = readme_command("Run the tests")
    assert command == ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
                       ".venv/bin/python -m pytest -p no:cacheprovider")
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_run_command_serves():
    assert readme_command("Run it") == ("python3 -m venv .venv && .venv/bin/pip install -q -e . "
                                        "&& .venv/bin/promo-engine serve")


def test_ci_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")]).returncode == 0


GENERATED_FILES_SCRIPT = """
import os
from sqlalchemy import create_engine, text
from promo_engine.config import Settings
from promo_engine.ledger.database import configure_engine, engine_options
settings = Settings.from_env()
engine = create_engine(settings.database_url, **engine_options(settings.database_url))
configure_engine(engine)
with engine.connect() as connection:
    connection.execute(text("CREATE TABLE t (x INTEGER)"))
    connection.commit()
    print("\\n".join(sorted(os.listdir("."))))
"""


def test_the_files_a_default_server_writes_are_ignored_by_git(tmp_path):
    """With the defaults, the working directory gets the generated secret and the SQLite
    file (with its -wal and -shm while connections are open): none may be committed."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    done = subprocess.run([sys.executable, "-c", GENERATED_FILES_SCRIPT], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    generated = done.stdout.split()
    assert generated == [".promo-engine-secret", "promo-engine.db", "promo-engine.db-shm",
                         "promo-engine.db-wal"]
    for folder in ("", "campaigns/"):  # where a user may run it, in a clone
        names = [folder + name for name in generated]
        checked = subprocess.run(["git", "check-ignore", "--no-index", *names], cwd=ROOT,
                                 capture_output=True, text=True)
        assert checked.stdout.split() == names
    assert {".promo-engine-secret", "promo-engine.db", "promo-engine.db-shm",
            "promo-engine.db-wal"} <= set((ROOT / ".gitignore").read_text().split())
