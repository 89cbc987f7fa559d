"""CPU time over a phase, from Linux /proc: the server's processes, this run's PostgreSQL
backends, Redis, and the whole machine, so that a phase reports CPU per request of each and
the share other processes took (on a shared machine, the figures that share disturbed).

Apart from the phases because it is about reading the OS's accounting, not about load:
the snapshot before and after a phase, and what the difference means.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from bench.processes import cpu_seconds

CLOCK_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process; 0 for one gone (or never there)."""
    return cpu_seconds(pid) or 0.0


def pg_backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `database` (its process title names
    it), by pid: other databases' backends on a shared server are not ours to count."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                title = f.read()
            if not title.startswith(b"postgres:") or f" {database} ".encode() not in title:
                continue
            found[int(entry.name)] = process_cpu(int(entry.name))
        except OSError:
            continue
    return found


def redis_cpu() -> float:
    total = 0.0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().strip() == "redis-server":
                        total += process_cpu(int(entry.name))
            except OSError:
                continue
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values[:8]) - idle), float(sum(values[:8]))


@dataclass
class CpuSnapshot:
    server: float
    pg: dict  # pid -> CPU seconds of this run's PostgreSQL backends
    redis: float
    busy: float
    total: float

    @classmethod
    def take(cls, server_pids: list[int] | None, database: str) -> "CpuSnapshot":
        busy, total = machine_cpu()
        return cls(sum(process_cpu(p) for p in server_pids) if server_pids else 0.0,
                   pg_backends_cpu(database), redis_cpu(), busy, total)

    def pg_since(self, before: "CpuSnapshot") -> float:
        """Backends that started meanwhile count whole; those that ended are lost (the
        servers' connection pools keep theirs)."""
        return sum(max(0.0, cpu - before.pg.get(pid, 0.0)) for pid, cpu in self.pg.items())


def cpu_between(before: CpuSnapshot, after: CpuSnapshot, generator: float) -> dict:
    """Seconds of CPU of the server, PostgreSQL, Redis and the generator (`generator`, as
    its processes measured it) between two snapshots; the machine's busy share; and the
    share of the machine the rest of it used meanwhile ("other")."""
    span = after.total - before.total
    cpu = {"server": after.server - before.server, "pg": after.pg_since(before),
           "redis": after.redis - before.redis, "generator": generator,
           "busy": (after.busy - before.busy) / span if span > 0 else math.nan}
    # What the rest of the machine used meanwhile (other jobs on a shared machine).
    ours = sum(cpu[k] for k in ("server", "pg", "redis", "generator"))
    cpu["other"] = (max(0.0, (after.busy - before.busy) / CLOCK_TICK - ours) * CLOCK_TICK / span
                    if span > 0 else math.nan)
    return cpu
