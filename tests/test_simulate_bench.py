"""bench/simulate.py runs end to end at a tiny size: the floor and the command each in a
process of their own, the simulation counting every line of the file. No timing is
asserted here; the figures are in docs/backtesting.md."""
from __future__ import annotations

import re
import subprocess
import sys

from conftest import BENCH_DIR


def test_the_benchmark_runs_and_accounts_for_every_line():
    done = subprocess.run([sys.executable, str(BENCH_DIR / "simulate.py"), "--users", "300",
                           "--days", "5"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    generated = int(re.search(r"generated ([\d,]+) events", done.stdout).group(1)
                    .replace(",", ""))
    assert re.search(rf"^{generated:,} events, 0 skipped", done.stdout, re.MULTILINE)
    assert re.search(r"^campaigns simulate\s+[\d.]+\s+[\d,]+\s+[\d.]+\s+\d+ MiB$",
                     done.stdout, re.MULTILINE)
    assert "bench-bank-wide" in done.stdout
