"""Finds the highest request rate that meets an SLO: expand by doubling, then bisect.

The search only assumes that passing is monotone in the rate (more load never helps latency).
It is generic over the probe, so live servers and the simulator share it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from etalon.cli_errors import UserError


@dataclass
class Probe:
    qps: float
    passed: bool
    observed: dict
    output_dir: str | None = None


@dataclass
class SearchResult:
    capacity_qps: float | None  # highest passing rate seen; None when even the lowest failed
    bracket: tuple[float | None, float | None]  # (highest pass, lowest fail)
    probes: list[Probe] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict:
        return {"capacity_qps": self.capacity_qps, "bracket": list(self.bracket),
                "note": self.note, "probes": [asdict(p) for p in self.probes]}


@dataclass
class SearchSettings:
    start_qps: float = 1.0
    max_qps: float = 1024.0
    min_qps: float = 0.01
    tolerance: float = 0.05  # stop when (fail - pass) / fail <= tolerance
    max_probes: int = 16

    def validate(self, where: str = "search") -> "SearchSettings":
        if not 0 < self.min_qps <= self.start_qps <= self.max_qps:
            raise UserError(f"{where}: need 0 < min_qps <= start_qps <= max_qps")
        if not 0 < self.tolerance < 1 or self.max_probes < 1:
            raise UserError(f"{where}: tolerance must be in (0, 1) and max_probes >= 1")
        return self


def search_capacity(probe: Callable[[float], Probe], s: SearchSettings,
                    on_probe: Callable[[Probe], None] | None = None) -> SearchResult:
    good: float | None = None
    bad: float | None = None
    probes: list[Probe] = []
    qps = s.start_qps
    note = None
    while len(probes) < s.max_probes:
        result = probe(qps)
        probes.append(result)
        if on_probe:
            on_probe(result)
        if result.passed:
            good = qps
        else:
            bad = qps
        if good is not None and bad is not None and (bad - good) / bad <= s.tolerance:
            break
        if bad is None:  # still expanding upwards
            if qps >= s.max_qps:
                note = f"passed at max_qps {s.max_qps:g}; the capacity may be higher"
                break
            qps = min(qps * 2, s.max_qps)
        elif good is None:  # still expanding downwards
            if qps <= s.min_qps:
                note = f"failed even at min_qps {s.min_qps:g}"
                break
            qps = max(qps / 2, s.min_qps)
        else:
            qps = (good + bad) / 2
    else:
        note = f"stopped after max_probes={s.max_probes}"
    return SearchResult(good, (good, bad), probes, note)
