"""How long each step of the loop took and how many cores other work took meanwhile.

The machine is shared; a timing comparison under foreign load compares two machines, so the
loop records, per step, the cores used by everything but vLLM and the loop's own processes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from etalon.launchers.base import pids_in_group


def _ticks(pid: int | str) -> int:
    """CPU clock ticks a process has used (its own, plus its waited-for children's)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(x) for x in fields[11:15])  # utime stime cutime cstime


class CpuMeter:
    """How many cores other work used: everything busy on the machine minus ``server``'s process
    group (anything with a ``pgid``) and this process with its finished children (the
    profilers and load generators)."""

    def __init__(self, server=None) -> None:
        self.server = server
        self.last = self._snap()

    def _snap(self) -> tuple[float, int, int]:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
        busy = sum(f) - f[3] - f[4]  # all but idle and iowait
        ours = _ticks("self")
        if self.server is not None and self.server.pgid:
            ours += sum(_ticks(pid) for pid in pids_in_group(self.server.pgid))
        return time.monotonic(), busy, ours

    def foreign_cores(self) -> float:
        """Average cores used by other processes since the last call."""
        now = self._snap()
        (t0, b0, o0), (t1, b1, o1) = self.last, now
        self.last = now
        return max(0.0, (b1 - b0) - (o1 - o0)) / os.sysconf("SC_CLK_TCK") / max(t1 - t0, 1e-9)


class Phases:
    """Wall time of each named step, and the cores other work took meanwhile (``rows``)."""

    def __init__(self, prog: str = "etalon.validation") -> None:
        self.prog = prog
        self.meter = CpuMeter()
        self.rows: dict[str, dict] = {}

    @contextmanager
    def __call__(self, name: str, *, metered: bool = True) -> Iterator[None]:
        self.meter.foreign_cores()
        t0 = time.monotonic()
        yield
        row = {"seconds": time.monotonic() - t0,
               "foreign_cores": self.meter.foreign_cores() if metered else None}
        self.rows[name] = row
        other = "" if row["foreign_cores"] is None else f", other work {row['foreign_cores']:.2f} cores"
        print(f"{self.prog}: {name}: {row['seconds']:.1f} s{other}", file=sys.stderr, flush=True)
