"""What the HTTP benchmarks (http_api.py, load.py) share about the servers they start."""
from __future__ import annotations

import http.client
import subprocess
import time
from typing import Callable


def wait_until_healthy(process: subprocess.Popen, base: tuple[str, int], *, timeout: float,
                       log_tail: Callable[[], str], label: str = "",
                       extra_ready: Callable[[], bool] = lambda: True,
                       poll_seconds: float = 0.1) -> None:
    """Poll GET /healthz at `base` (host, port) until it answers 200 and `extra_ready()` is
    true; SystemExit, with the end of the server's log, once the process has exited or
    `timeout` seconds have passed. `label` starts those messages (which server failed)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{label}the server exited with {process.returncode}:\n"
                             f"{log_tail()}")
        try:
            conn = http.client.HTTPConnection(*base, timeout=2)
            try:
                conn.request("GET", "/healthz")
                healthy = conn.getresponse().status == 200
            finally:
                conn.close()
            if healthy and extra_ready():
                return
        except OSError:  # not listening yet, or a worker restarting
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{label}the server was not up in {timeout:.0f} s:\n{log_tail()}")
        time.sleep(poll_seconds)
