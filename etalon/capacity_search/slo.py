"""Service-level objectives a probe must meet, checked on its records (live or simulated alike).

Two kinds, combinable: latency percentiles (``p90 TTFT <= 0.5 s``) and deadlines (token deadlines
with slack carry-over; the ``fluidity_percentile``-th percentile of per-request fluidity-index
must reach ``min_fluidity``). A probe whose load generator fell behind never passes: its server
did not see the load it was asked to take.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from etalon.cli_errors import UserError
from etalon.metrics.columns import RunColumns
from etalon.metrics.latency import latency_series
from etalon.metrics.per_request import request_frame
from etalon.record_table import RecordTable
from etalon.records import RequestRecord


@dataclass
class SLO:
    ttft_percentile: float = 90.0
    ttft_max_s: float | None = None
    tbt_percentile: float = 99.0
    tbt_max_s: float | None = None
    ttft_deadline_s: float | None = None
    tbt_deadline_s: float | None = None
    min_fluidity: float = 0.9
    fluidity_percentile: float = 1.0  # the 1st percentile: 99 % of requests reach min_fluidity
    max_error_rate: float = 0.0

    @classmethod
    def from_mapping(cls, data: dict, where: str) -> "SLO":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise UserError(f"{where}: unknown SLO key(s) {unknown}")
        slo = cls(**data)
        if slo.ttft_max_s is None and slo.tbt_max_s is None and slo.tbt_deadline_s is None:
            raise UserError(f"{where}: the SLO sets no target (ttft_max_s, tbt_max_s or tbt_deadline_s)")
        for name in ("ttft_percentile", "tbt_percentile", "fluidity_percentile"):
            if not 0 <= getattr(slo, name) <= 100:
                raise UserError(f"{where}: {name} must be within 0..100")
        return slo

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self, records: "list[RequestRecord] | RecordTable", fell_behind: bool = False) -> tuple[bool, dict]:
        """``(passed, observed)``: ``observed`` holds each measured value and the reasons it failed."""
        observed: dict = {"reasons": []}
        reasons = observed["reasons"]
        records = RunColumns.of(records)
        n = len(records)
        errors = int(n - records.ok.sum())
        observed["error_rate"] = errors / n if n else None
        if not n or errors / n > self.max_error_rate:
            reasons.append(f"error rate {errors}/{n} > {self.max_error_rate:g}")
        if fell_behind:
            reasons.append("the load generator fell behind its schedule")
        series = latency_series(records)
        for metric, q, limit in (("ttft", self.ttft_percentile, self.ttft_max_s),
                                 ("tbt", self.tbt_percentile, self.tbt_max_s)):
            if limit is None:
                continue
            values = series[metric].values
            value = float(np.percentile(values, q)) if len(values) else float("inf")
            observed[f"{metric}_p{q:g}_s"] = value
            if value > limit:
                reasons.append(f"p{q:g} {metric.upper()} {value * 1e3:.1f} ms > {limit * 1e3:.1f} ms")
        if self.tbt_deadline_s is not None:
            frame = request_frame(records, self.ttft_deadline_s, self.tbt_deadline_s)
            fluidity = frame["fluidity_index"].dropna().to_numpy(float)
            value = float(np.percentile(fluidity, self.fluidity_percentile)) if len(fluidity) else 0.0
            observed[f"fluidity_p{self.fluidity_percentile:g}"] = value
            if value < self.min_fluidity:
                reasons.append(f"p{self.fluidity_percentile:g} fluidity-index {value:.3f} < "
                               f"{self.min_fluidity:g}")
        return not reasons, observed
