"""What every benchmark prints about the machine it ran on, before its figures.

Absolute figures mean little without the machine and what else ran on it, so each
benchmark's header names them; the pieces that are the same in every header live here
(each benchmark adds its own: pinned CPUs, the database's version...).
"""
from __future__ import annotations

import os
import platform


def python_note() -> str:
    """Like "Python 3.11.7 (CPython)"."""
    return f"Python {platform.python_version()} ({platform.python_implementation()})"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo; where there is none, what `platform` knows."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return model


def print_load_average() -> None:
    """One line with the load average, where the OS has one: other work on the machine
    shows up in the figures."""
    if hasattr(os, "getloadavg"):
        print("load average before the run: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
