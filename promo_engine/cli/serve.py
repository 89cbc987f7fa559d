"""`promo-engine serve`: migrate, then serve the app with gunicorn (a production server)."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import click
from gunicorn.app.base import BaseApplication

from .. import metrics as promo_metrics
from ..config import Settings
from . import main
from .db import upgrade_or_exit

THREADS_PER_WORKER = 8
GRACEFUL_TIMEOUT_SECONDS = 30
LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class PromoServer(BaseApplication):
    """gunicorn with its configuration given in code; each worker builds its own app."""

    def __init__(self, settings: Settings, options: dict):
        self.settings = settings
        self.options = options
        super().__init__(prog="promo-engine serve")

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # some settings exist only in newer gunicorns
                self.cfg.set(key, value)

    def load(self):
        from ..app import create_app
        return create_app(self.settings)


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
def serve_command(host: str, port: int, workers: int, threads: int, access_log: bool) -> None:
    """Serve the API (creating or migrating the schema first)."""
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    result = upgrade_or_exit(settings.database_url)
    if result.changed:
        click.echo(f"promo-engine: database schema {result.before or 'none'} -> {result.after}",
                   err=True)
    metrics_dir, owned = _metrics_directory()
    promo_metrics.enable_multiprocess(metrics_dir)
    options = {
        "bind": bind_address(host, port),
        "workers": workers,
        "worker_class": "gthread",
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
        PromoServer(settings, options).run()
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
