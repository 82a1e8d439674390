"""How many CPU threads torch should use here: one per physical core, fewer on a busy machine.

Why: torch's default takes every logical core for intra-op work and as many again for inter-op
work. On a 2-core machine shared with another busy process, training then ran 8 times slower
(21 min against 2.5 min; 14.5 min of CPU against 4.5: the threads wait on each other). One
intra-op thread per *physical* core that is not already busy (CPU use sampled for 0.1 s when
the command starts), and one inter-op thread, keeps a quiet machine fully used and lets a busy
one slow down gracefully.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

__all__ = ["busy_cores", "configure_torch_threads", "default_threads", "physical_cores"]


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        physical = core = ""
        processor = -1
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor":
                processor = int(value)
            elif key == "physical id":
                physical = value
            elif key == "core id":
                core = value
            elif not key and processor in allowed:  # the end of one processor's block
                cores.add((physical, core))
        if processor in allowed:
            cores.add((physical, core))
    except (OSError, ValueError):
        cores = set()
    return max(1, min(len(cores) or len(allowed), len(allowed)))


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [int(v) for v in fields]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_cores(sample_s: float = 0.1) -> float:
    """How many cores other work keeps busy *now*: CPU use over ``sample_s`` (/proc/stat),
    else the 1-minute load average. The load average lags by a minute: right after another
    command it still counts that command, so it is only the fallback."""
    first = _cpu_times()
    if first is not None:
        time.sleep(sample_s)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            share = (second[0] - first[0]) / (second[1] - first[1])
            return share * (os.cpu_count() or 1)
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def default_threads() -> int:
    """One thread per physical core, less the cores other work keeps busy
    (:func:`busy_cores`), at least one."""
    cores = physical_cores()
    return max(1, min(cores, math.floor(cores - busy_cores() + 0.5)))


def configure_torch_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (``None``: :func:`default_threads`) and one inter-op
    thread; returns the intra-op count."""
    import torch

    n = int(threads) if threads is not None else default_threads()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel work; then it stays
        pass
    return n
