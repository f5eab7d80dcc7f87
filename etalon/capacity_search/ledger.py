"""What makes a job resumable: every finished probe, one JSON line, appended as it finishes.

A rerun reads the configuration's ``probes.jsonl`` and answers a probe from it when the line's
key (the configuration's full identity: deployment, workload, SLO, request count, mode) and rate
match (the n-th probe at a rate, for a search that repeats one); the search is deterministic given its probes, so it walks the same path and runs only
what is missing. A killed job loses at most the probe it was running.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from etalon.capacity_search.search import Probe


class ProbeLedger:
    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.stored: dict[float, list[Probe]] = {}
        self.calls: dict[float, int] = {}
        self.other_keys = 0  # lines left by a different configuration (not reused)
        self.reused = 0
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    if entry.get("key") != self.key:
                        self.other_keys += 1
                        continue
                    probe = Probe(**entry["probe"])
                except (ValueError, TypeError, KeyError):
                    continue  # a line cut short by a kill: that probe runs again
                self.stored.setdefault(probe.qps, []).append(probe)

    def wrap(self, probe: Callable[[float], Probe]) -> Callable[[float], Probe]:
        """``probe`` answered from the ledger where it can, every new result appended."""

        def cached(qps: float) -> Probe:
            n = self.calls.get(qps, 0)
            self.calls[qps] = n + 1
            done = self.stored.setdefault(qps, [])
            if n < len(done):
                self.reused += 1
                return done[n]
            result = probe(qps)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"key": self.key, "probe": asdict(result)}) + "\n")
                fh.flush()
            done.append(result)
            return result

        return cached
