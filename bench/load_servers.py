"""The two servers under load: `promo-engine serve` and the floor, `bench/bare_app.py serve`,
both gunicorn with N worker processes on this machine, each started in its own session
and always stopped, workers included.

Apart from the run's orchestration because a server's life (port, log, readiness, its
processes for the CPU figures, a stop that leaves nothing behind) is one thing the
phases, the profiler and the clean-up all lean on. What every HTTP benchmark shares about
servers and processes is in `servers.py` and `processes.py`, used from here.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from bench.processes import children_of, cli_command, free_port
from bench.servers import wait_until_healthy

HOST = "127.0.0.1"  # the load stays on this machine
BARE_APP = Path(__file__).resolve().with_name("bare_app.py")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful timeout is 30 s


class Server:
    """A gunicorn server in its own session (so Ctrl-C reaches us, not it); `stop` always
    ends it and its workers."""

    def __init__(self, name: str, command: list[str], env: dict, workdir: Path):
        self.name = name
        self.port = free_port(HOST)
        self.base = (HOST, self.port)
        self.log_path = workdir / f"{name}-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command + ["--host", HOST, "--port", str(self.port)],
                                            env=env, cwd=workdir, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, workers: int) -> None:
        """Until /healthz answers and all `workers` worker processes have started."""
        wait_until_healthy(self.process, self.base, timeout=START_TIMEOUT,
                           log_tail=self.log_tail, label=f"{self.name}: ",
                           extra_ready=lambda: len(children_of(self.process.pid)) >= workers)

    def pids(self) -> list[int]:
        return [self.process.pid] + children_of(self.process.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own group: workers left behind
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return self.process.returncode


def start_pair(workers: int, threads: Sequence[str], env: dict, workdir: Path) -> tuple[Server, Server]:
    """The events server and the floor with `workers` processes each, started (not waited
    for); `threads` is ["--threads", "T"] or [] for serve's default."""
    return (Server("events", cli_command() + ["serve", "--workers", str(workers), "--no-scheduler"]
                   + list(threads), env, workdir),
            Server("bare", [sys.executable, str(BARE_APP), "serve", "--workers", str(workers)]
                   + list(threads), env, workdir))
