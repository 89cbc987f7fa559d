"""Where the events worker's CPU goes, per event: `--profile` runs py-spy on the one worker
(N=1) during a peak phase and prints the app's call tree, own time by library and the top
functions, scaled to the worker's CPU time per event measured in the same phase.

Apart from the phases because it is an optional look inside the server, with a tool of
its own (py-spy) and its own reading of the samples; the run works without it.
"""
from __future__ import annotations

import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from bench.load_cpu import process_cpu
from bench.load_servers import Server
from bench.processes import children_of

if TYPE_CHECKING:
    from bench.load_phases import Phase

ROOT = Path(__file__).resolve().parent.parent


class Profiler:
    """py-spy on the one events worker during a peak phase: where its CPU goes, per event.

    `py-spy record --gil` samples the thread holding the interpreter lock; the collapsed
    stacks are kept in a file. The samples give the shares; the worker's CPU time per
    event measured in the same phase (from /proc) turns them into milliseconds."""

    def __init__(self, py_spy: str, output: Path, rate: int = 200):
        self.py_spy, self.output, self.rate = py_spy, output, rate
        self.process: subprocess.Popen | None = None
        self.worker: int | None = None
        self.cpu_before = 0.0

    def start(self, server: Server, seconds: float) -> None:
        workers = children_of(server.process.pid)
        if len(workers) != 1:
            raise SystemExit("--profile needs a single worker process (N=1)")
        self.worker = workers[0]
        self.process = subprocess.Popen(
            [self.py_spy, "record", "--pid", str(self.worker), "--rate", str(self.rate), "--gil",
             "--format", "raw", "--duration", str(max(1, int(seconds))),
             "--output", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # let it attach
        self.cpu_before = process_cpu(self.worker)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def finish(self, phase: "Phase") -> None:
        cpu = process_cpu(self.worker) - self.cpu_before
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            err = "timed out"
        if self.process.returncode != 0 or not self.output.exists():
            print(f"py-spy failed ({self.process.returncode}): {err.strip()[-500:]}", file=sys.stderr)
            return
        print_profile(self.output, cpu / phase.ok if phase.ok else math.nan, phase.ok)


APP_ROOT = "Flask.wsgi_app"


def print_profile(path: Path, cpu_per_event: float, events: int, threshold: float = 0.05) -> None:
    """The app's call tree (promo_engine's own functions, inclusive ms per event, with the
    libraries each spends in directly), then own time by library and the top functions."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([_frame(f) for f in stack.split(";") if f], int(count)))
    total = sum(n for _, n in stacks)
    if not total or not events or math.isnan(cpu_per_event):
        print("profile: no samples")
        return
    ms = 1000 * cpu_per_event / total  # ms per event of one sample
    tree, below, libraries, functions, app = Counter(), {}, Counter(), Counter(), 0
    for frames, n in stacks:
        top = next((i for i, (_, fn) in enumerate(frames) if fn == APP_ROOT), None)
        leaf_file, leaf_fn = frames[-1] if frames else ("?", "?")
        libraries[_library(leaf_file)] += n
        functions[f"{leaf_file}:{leaf_fn}"] += n
        if top is None:
            continue
        app += n
        node: tuple = ()
        for file, fn in frames[top:]:
            if fn == APP_ROOT or _library(file) == "promo_engine":
                node += (f"{file}:{fn}",)
                tree[node] += n
        below.setdefault(node, Counter())[_library(leaf_file)] += n
    print(f"\nProfile of the events worker during this peak phase (py-spy --gil; {total:,} "
          f"samples; scaled to the worker's CPU time, {1000 * cpu_per_event:.2f} ms per event, "
          f"{events:,} events; stacks in {path}):")
    print(f"  in the app (below {APP_ROOT}) {app * ms:.2f} ms; outside it (gunicorn, "
          f"HTTP parsing, threads) {(total - app) * ms:.2f} ms")

    def show(prefix: tuple, depth: int) -> None:
        children = sorted(((k, v) for k, v in tree.items()
                           if len(k) == len(prefix) + 1 and k[:len(prefix)] == prefix),
                          key=lambda kv: -kv[1])
        for key, n in children:
            if n * ms < threshold:
                continue
            direct = ", ".join(f"{lib} {c * ms:.2f}" for lib, c in below.get(key, Counter()).most_common(4)
                               if c * ms >= threshold / 2)
            print(f"  {'  ' * depth}{n * ms:6.2f} ms  {key[-1]}" + (f"   [directly in: {direct}]" if direct else ""))
            show(key, depth + 1)

    show((), 0)
    print("  own time by library (whole worker):")
    for lib, n in libraries.most_common(14):
        print(f"    {n * ms:6.2f} ms  {100 * n / total:5.1f}%  {lib}")
    print("  top functions by own time:")
    for name, n in functions.most_common(15):
        print(f"    {n * ms:6.3f} ms  {name}")


def _frame(frame: str) -> tuple[str, str]:
    """'function (path/to/file.py:123)' -> ('path/to/file.py' shortened, 'function')."""
    function, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/python3.11/", "/python3.12/", "/python3.13/", str(ROOT) + "/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return file, function.strip()


def _library(file: str) -> str:
    """A file's package for the summaries: promo_engine, sqlalchemy/orm, psycopg, ..."""
    parts = file.split("/")
    if parts[0] in ("promo_engine", "merchant_portal"):
        return "promo_engine"
    if parts[0] == "sqlalchemy" and len(parts) > 2:
        return "sqlalchemy/" + parts[1]
    if len(parts) == 1:
        return "python: " + file
    return parts[0]
