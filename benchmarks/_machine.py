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


def torch_machine() -> dict:
    """What a torch benchmark records about where it ran: platform, processor, CPU count, torch's version and
    thread count, and the load average at the time of the call (the CPU may be shared: read timings with it)."""
    import platform

    import torch

    return {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average_end": os.getloadavg()}
