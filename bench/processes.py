"""The processes an HTTP benchmark starts and watches: the promo-engine command, a free
port for a server, a server's worker processes and their CPU time (Linux /proc), and a
benchmark's own exit on SIGTERM (`interruptible`).

Apart from `servers.py` (the wait for a started server's /healthz) because these are about
processes, not HTTP: how to start the CLI and what the OS says about what it started.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path


def cli_command() -> list[str]:
    """`promo-engine` next to this interpreter (the virtualenv's script), else `-m`."""
    script = Path(sys.executable).with_name("promo-engine")
    return [str(script)] if script.exists() else [sys.executable, "-m", "promo_engine.cli"]


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """The direct children of `pid` (a gunicorn master's workers); [] where unknown."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of one process (Linux /proc), None where unavailable."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def interruptible(run, what: str = "the database") -> int:
    """`run()`'s exit status, with SIGTERM handled as Ctrl-C: `run` stops what it started
    and drops `what` on its way out (its own finally blocks), and the exit status is 130."""
    def on_sigterm(signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return run()
    except KeyboardInterrupt:
        print(f"\ninterrupted: everything started was stopped and {what} dropped",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
