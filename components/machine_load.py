"""How busy the machine is with other work while something is measured: from /proc/stat (all
CPUs' busy time) minus the CPU time of the processes doing the measuring (/proc/<pid>/stat).

Inside a container /proc/stat still counts the whole host's CPUs, which is the point: a noisy
neighbour on the node shows. Where /proc is missing (macOS) the load is unknown (None).
"""
from __future__ import annotations

import dataclasses
import os
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _host_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs, or None without /proc."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)       # idle + iowait
    total = sum(fields[:8])                                        # guest time is already in user
    return total - idle, total


def _process_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclasses.dataclass
class Load:
    cores: int
    other_cores: float | None          # cores' worth of CPU used by other work on average; None = unknown
    seconds: float

    def quiet(self, busy_share: float) -> bool:
        return self.other_cores is not None and self.other_cores <= busy_share * self.cores

    def describe(self) -> str:
        if self.other_cores is None:
            return "machine load unknown"
        return f"other work used {self.other_cores:.1f} of {self.cores} cores"


class Sampler:
    """`with Sampler(pids) as sampler: ...` then `sampler.load`: the other work during the block,
    with the CPU time of `pids` (and this process) left out."""

    def __init__(self, pids: list[int]):
        self.pids = [os.getpid(), *pids]
        self.load: Load | None = None

    def _own(self) -> float:
        return sum(_process_seconds(pid) for pid in self.pids)

    def __enter__(self) -> "Sampler":
        self._host, self._own_start, self._started = _host_ticks(), self._own(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        seconds, cores = time.monotonic() - self._started, os.cpu_count() or 1
        host, own = _host_ticks(), self._own() - self._own_start
        if self._host is None or host is None or host[1] <= self._host[1] or seconds <= 0:
            self.load = Load(cores, None, seconds)
            return
        busy_share = (host[0] - self._host[0]) / (host[1] - self._host[1])     # of all cores
        self.load = Load(cores, max(0.0, busy_share * cores - own / seconds), seconds)
