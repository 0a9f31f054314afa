"""Facts about the machine a benchmark ran on, recorded beside its numbers."""

import os
from pathlib import Path


def cpu_model() -> str | None:
    """The processor's model name from /proc/cpuinfo (None where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_affinity() -> int | None:
    """How many CPUs this process may run on (None where the OS does not say)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return None
