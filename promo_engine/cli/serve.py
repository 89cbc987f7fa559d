"""`promo-engine serve`: migrate, then serve the app with gunicorn (a production server),
and run the campaign scheduler beside it.

The scheduler is one child process for the whole server, however many workers there are:
a fresh interpreter (`promo-engine scheduler --embedded`), not a fork of the master, so it
shares no database connections or threads with anyone. The master starts it once it is
listening, starts it again if it dies, and stops it with the workers. Without REDIS_URL it
acts alone; with REDIS_URL it competes for the leader lease like any `promo-engine
scheduler`, so servers and schedulers on several hosts act exactly once between them.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.util import is_ipv6

from promo_engine import metrics as promo_metrics
from promo_engine.cli import main
from promo_engine.cli.db import upgrade_or_exit
from promo_engine.config import Settings

WORKER_CLASS = "promo_engine.api.gunicorn_worker.JsonErrorThreadWorker"
THREADS_PER_WORKER = 8
GRACEFUL_TIMEOUT_SECONDS = 30
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
SCHEDULER_STOP_SECONDS = 15
SCHEDULER_RESTART_SECONDS = (1, 30)  # first and longest wait before starting it again


class SchedulerProcess:
    """The server's campaign scheduler, a child process watched by the master."""

    def __init__(self, log):
        self.log = log
        self.process: subprocess.Popen | None = None
        self.stopping = False
        self.started_at = 0.0
        self.restart_at = 0.0
        self.backoff = SCHEDULER_RESTART_SECONDS[0]

    def start(self) -> None:
        # It shares the workers' metrics directory: its webhook dispatcher's counts are in
        # /metrics, whichever worker answers the scrape.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "promo_engine.cli", "scheduler", "--embedded"])
        self.started_at = time.monotonic()
        self.log.info("Started the campaign scheduler (pid: %s)", self.process.pid)

    def poll(self) -> None:
        """Reap it if it has exited (before gunicorn's waitpid(-1) takes it as a stranger)."""
        if self.process is not None and self.process.poll() is not None:
            code, pid = self.process.returncode, self.process.pid
            self.process = None
            if self.stopping:
                return
            if time.monotonic() - self.started_at > 60:
                self.backoff = SCHEDULER_RESTART_SECONDS[0]
            self.restart_at = time.monotonic() + self.backoff
            self.log.error("The campaign scheduler (pid: %s) exited with %s; starting it "
                           "again in %s s", pid, code, self.backoff)
            self.backoff = min(self.backoff * 2, SCHEDULER_RESTART_SECONDS[1])

    def supervise(self) -> None:
        self.poll()
        if self.process is None and not self.stopping and time.monotonic() >= self.restart_at:
            self.start()

    def terminate(self) -> None:
        self.stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(SCHEDULER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.log.error("The campaign scheduler did not stop in %s s; killing it",
                           SCHEDULER_STOP_SECONDS)
            self.process.kill()
            self.process.wait()
        self.process = None


class PromoArbiter(Arbiter):
    """gunicorn's master, which also keeps the campaign scheduler running."""

    def __init__(self, app):
        super().__init__(app)
        self.scheduler = SchedulerProcess(self.log) if app.run_scheduler else None

    def start(self):
        super().start()
        if self.scheduler is not None:
            self.scheduler.start()

    def manage_workers(self):
        super().manage_workers()
        if self.scheduler is not None:
            self.scheduler.supervise()

    def reap_workers(self):
        if self.scheduler is not None:
            self.scheduler.poll()
        super().reap_workers()

    def stop(self, graceful=True):
        if self.scheduler is not None:
            self.scheduler.terminate()  # in parallel with the workers' graceful stop
        super().stop(graceful)
        if self.scheduler is not None:
            self.scheduler.wait()


class PromoServer(BaseApplication):
    """gunicorn with its configuration given in code; each worker builds its own app."""

    def __init__(self, settings: Settings, options: dict, *, run_scheduler: bool = True):
        self.settings = settings
        self.options = options
        self.run_scheduler = run_scheduler
        super().__init__(prog="promo-engine serve")

    def run(self):
        try:
            PromoArbiter(self).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.stderr.flush()
            sys.exit(1)

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # some settings exist only in newer gunicorns
                self.cfg.set(key, value)

    def load(self):
        from promo_engine.app import create_app
        return create_app(self.settings)


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_address(host: str, port: int) -> str:
    """gunicorn's `bind` setting: a socket bound here, so that a port in use ends the command
    with one line saying so (gunicorn would retry five times, logging each, then give up).

    A master started by gunicorn's own upgrade (SIGUSR2) or by systemd inherits the
    listening sockets instead, and gunicorn takes those whatever `bind` says."""
    if os.environ.get("GUNICORN_FD") or os.environ.get("LISTEN_FDS"):
        return bind_address(host, port)
    listener = socket.socket(socket.AF_INET6 if is_ipv6(host) else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            reason = (f"port {port} on {host} is in use: stop what runs there or choose "
                      f"another with --port")
        else:
            reason = f"cannot listen on {bind_address(host, port)}: {exc.strerror or exc}"
        click.echo(f"promo-engine serve: {reason}", err=True)
        sys.exit(1)
    return f"fd://{listener.detach()}"


def _when_ready(server) -> None:
    urls = ", ".join(str(listener) for listener in server.LISTENERS)
    workers = server.cfg.workers
    click.echo(f"promo-engine: serving {urls} ({workers} worker{'s' if workers != 1 else ''}, "
               f"{server.cfg.threads} threads each); Ctrl-C or SIGTERM stops", err=True)


def _child_exit(server, worker) -> None:
    promo_metrics.mark_process_dead(worker.pid)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes.")
@click.option("--threads", default=THREADS_PER_WORKER, show_default=True,
              type=click.IntRange(1, 256), help="Threads per worker.")
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
@click.option("--scheduler/--no-scheduler", "run_scheduler", default=True, show_default=True,
              help="Run the campaign scheduler beside the workers; --no-scheduler when "
                   "`promo-engine scheduler` runs elsewhere.")
def serve_command(host: str, port: int, workers: int, threads: int, access_log: bool,
                  run_scheduler: bool) -> None:
    """Serve the API and run the campaign scheduler (creating or migrating the schema first)."""
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    bind = listen_address(host, port)
    result = upgrade_or_exit(settings.database_url)
    if result.changed:
        click.echo(f"promo-engine: database schema {result.before or 'none'} -> {result.after}",
                   err=True)
    metrics_dir, owned = _metrics_directory()
    promo_metrics.enable_multiprocess(metrics_dir)
    options = {
        "bind": bind,
        "workers": workers,
        "worker_class": WORKER_CLASS,
        "threads": threads,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "timeout": 60,
        "keepalive": 5,
        "proc_name": "promo-engine",
        "errorlog": "-",
        "loglevel": "info",
        "accesslog": "-" if access_log else None,
        "when_ready": _when_ready,
        "child_exit": _child_exit,
        # gunicorn >= 25 opens a control socket under $HOME by default: not wanted here,
        # and two servers on one machine would fight over it.
        "control_socket_disable": True,
    }
    try:
        PromoServer(settings, options, run_scheduler=run_scheduler).run()
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_directory() -> tuple[Path, bool]:
    """Where the workers share metrics: PROMETHEUS_MULTIPROC_DIR if set, else a fresh one."""
    given = os.environ.get(promo_metrics.MULTIPROC_ENV)
    if given:
        directory = Path(given)
        # Samples of a previous run would be added to this one's.
        for stale in directory.glob("*.db"):
            stale.unlink()
        return directory, False
    return Path(tempfile.mkdtemp(prefix="promo-engine-metrics-")), True
