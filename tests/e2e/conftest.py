"""A real `promo-engine serve` on a free port and a temporary SQLite database, the logins and
the API client it needs (made with the command line, as an operator would), and headless
Chromium (Debian's package at /usr/bin/chromium) driven by Playwright for Python.

Playwright's own browser download is never used: the browser is the system's Chromium.
Without it (or without the `playwright` package) the browser tests are skipped, except under
PROMO_REQUIRE_SERVICES=1 (CI, which installs Chromium), where that is a failure.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .portal import Account, Portal

CHROMIUM = os.environ.get("PROMO_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REQUIRE_SERVICES = os.environ.get("PROMO_REQUIRE_SERVICES") == "1"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
PROMO_ENGINE = str(Path(sys.executable).parent / "promo-engine")

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# A YAML campaign (marketing's), so the admin's campaign list shows a managed one. It is for
# another merchant and years ahead, so it never touches the payments of these tests.
MANAGED_YAML = """\
id: e2e-managed-lunch
name: Lunch 5% off (from YAML)
type: holiday_discount
merchants: [m_e2e_elsewhere]
timezone: Asia/Shanghai
starts_at: 2029-01-01T00:00:00
ends_at: 2029-02-01T00:00:00
params:
  percent: 5
"""


def browser_missing(why: str):
    message = f"headless Chromium not usable: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (PROMO_REQUIRE_SERVICES=1; .ci/run installs Debian's chromium)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    env: dict
    workdir: Path
    log_path: Path
    process: subprocess.Popen
    accounts: dict[str, Account] = field(default_factory=dict)
    api_key: dict = field(default_factory=dict)
    sessions: dict[str, list] = field(default_factory=dict)  # email -> signed-in cookies

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _cli(env: dict, workdir: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([PROMO_ENGINE, *args], cwd=workdir, env=env, input=stdin,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (f"promo-engine {' '.join(args)} exited "
                                    f"{result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def _cli_all(env: dict, workdir: Path, commands: list[tuple[tuple[str, ...], str | None]]):
    """Run several `promo-engine` commands side by side; return their outputs in order."""
    running = [(args, subprocess.Popen([PROMO_ENGINE, *args], cwd=workdir, env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True), stdin)
               for args, stdin in commands]
    outputs = []
    for args, process, stdin in running:
        out, err = process.communicate(stdin, timeout=60)
        assert process.returncode == 0, (f"promo-engine {' '.join(args)} exited "
                                         f"{process.returncode}:\n{out}{err}")
        outputs.append(out)
    return outputs


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """`promo-engine serve` on a fresh SQLite database: two merchants, an admin, an API
    client and one YAML campaign, made with the command line while it starts."""
    workdir = tmp_path_factory.mktemp("portal-e2e")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMO_") and k != "REDIS_URL"}
    env.update(DATABASE_URL=f"sqlite:///{workdir / 'promo.db'}",
               SECRET_KEY="e2e-secret-key-0123456789abcdef", PROMO_TIMEZONE="Asia/Shanghai",
               PROMO_CURRENCY="CNY", PROMO_POINTS_PER_UNIT="1")
    _cli(env, workdir, "db", "upgrade")
    log_path = workdir / "serve.log"
    log = open(log_path, "wb")
    # Started first (it takes a few seconds to listen); the logins are made meanwhile.
    process = subprocess.Popen([PROMO_ENGINE, "serve", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = LiveServer(url=f"http://127.0.0.1:{port}", env=env, workdir=workdir,
                        log_path=log_path, process=process)
    server.accounts = {
        "merchant": Account("m_e2e_story", "Lao Wang Noodles", "story@merchant.example",
                            "noodles-e2e-pass-1"),
        "shots": Account("m_e2e_shots", "Golden Dragon Restaurant", "shots@merchant.example",
                         "dragon-e2e-pass-2"),
        "other": Account("m_e2e_other", "Sunrise Bakery", "other@merchant.example",
                         "bakery-e2e-pass-4"),
        "admin": Account(None, None, "marketing@bank.example", "admin-e2e-pass-3"),
    }
    try:
        (workdir / "managed.yaml").write_text(MANAGED_YAML)
        admin = server.accounts["admin"]
        commands = [(("merchants", "create", account.merchant_id, "--name", account.name,
                      "--email", account.email, "--password-stdin"), account.password + "\n")
                    for account in map(server.accounts.get, ("merchant", "shots", "other"))]
        commands += [(("admins", "create", admin.email, "--password-stdin"), admin.password + "\n"),
                     (("campaigns", "apply", str(workdir / "managed.yaml")), None),
                     (("clients", "create", "e2e-wallet", "--json"), None)]
        outputs = _cli_all(env, workdir, commands)  # at once: each is a second of start-up
        server.api_key = json.loads(outputs[-1])
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{server.url}/healthz", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"promo-engine serve did not start:\n{server.log_tail()}")
                time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        browser_missing(f"{CHROMIUM} does not exist (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        browser_missing(f"the playwright package is not installed ({exc})")
    playwright = sync_playwright().start()
    try:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                  headless=True)
        except Exception as exc:  # noqa: BLE001 - any launch failure means no browser
            browser_missing(f"{CHROMIUM} did not start: {exc}")
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def open_portal(browser, live_server):
    """open_portal(lang="en", device="desktop") -> a Portal: its own browser context (own
    cookies), with 5xx answers and JavaScript errors recorded and failing the test."""
    portals: list[Portal] = []

    def open_(lang: str = "en", device: str = "desktop") -> Portal:
        portal = Portal.open(browser, live_server, lang=lang, device=device,
                             viewport=VIEWPORTS[device], screenshots=SCREENSHOTS)
        portals.append(portal)
        return portal

    yield open_
    problems = []
    for portal in portals:
        problems += portal.problems
        portal.close()
    assert not problems, "the portal answered 5xx or raised JavaScript errors:\n" + "\n".join(
        problems) + f"\n--- server log ---\n{live_server.log_tail()}"
