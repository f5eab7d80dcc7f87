"""Service-level objectives a probe must meet, checked on its records (live or simulated alike).

Two kinds, combinable: latency percentiles (``p90 TTFT <= 0.5 s``) and deadlines (token deadlines
with slack carry-over; the ``fluidity_percentile``-th percentile of per-request fluidity-index
must reach ``min_fluidity``). A probe whose load generator fell behind never passes: its server
did not see the load it was asked to take.

Besides the verdict, :meth:`SLO.check` reports a signed *margin* that the search interpolates:
the worst target's ``log(value / limit)`` (``log(min_fluidity / value)`` for fluidity, where
higher is better). It is <= 0 exactly when every latency and deadline target is met, and near
the boundary it is roughly linear in log(load). Too many errors or a load generator that fell
behind are *hard* failures (``hard_fail``): the probe fails, but its margin says nothing about
where the boundary is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from etalon.cli_errors import UserError
from etalon.metrics.columns import RunColumns
from etalon.metrics.goodput import good_mask
from etalon.metrics.latency import latency_series
from etalon.metrics.per_request import request_frame
from etalon.record_table import RecordTable
from etalon.records import RequestRecord

MARGIN_CAP = 20.0  # |margin| is clipped here (a ratio of e^20 ~ 5e8) so observed stays JSON-safe
_TINY = 1e-300  # zeros are floored here before taking a log


def log_margin(value: float, limit: float, missed: bool) -> float:
    """``log(value / limit)`` clipped to +-:data:`MARGIN_CAP`, with its sign forced to agree
    with the verdict (> 0 exactly when ``missed``) where rounding or the zero floor would not."""
    raw = math.log(max(value, _TINY)) - math.log(max(limit, _TINY))
    raw = min(max(raw, -MARGIN_CAP), MARGIN_CAP)
    if missed:
        return raw if raw > 0 else math.ulp(0.0)
    return min(raw, 0.0)


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

    def check(self, records: "list[RequestRecord] | RecordTable | RunColumns",
              fell_behind: bool = False) -> tuple[bool, dict]:
        """``(passed, observed)``. ``observed`` holds each measured value, the reasons it failed,
        ``margins`` (per target, see :func:`log_margin`), ``margin`` (their max, <= 0 exactly when
        every target is met; None when the SLO sets no target) and ``hard_fail`` (too many errors,
        the load generator fell behind, or a target had no sample: failed, margin not meaningful).
        A target without samples gets the margin :data:`MARGIN_CAP`. Every value is JSON-safe."""
        observed: dict = {"reasons": []}
        reasons = observed["reasons"]
        margins: dict[str, float] = {}
        hard = False
        records = RunColumns.of(records)
        n = len(records)
        errors = int(n - records.ok.sum())
        observed["error_rate"] = errors / n if n else None
        if not n or errors / n > self.max_error_rate:
            reasons.append(f"error rate {errors}/{n} > {self.max_error_rate:g}")
            hard = True
        if fell_behind:
            reasons.append("the load generator fell behind its schedule")
            hard = True
        series = latency_series(records)
        for metric, q, limit in (("ttft", self.ttft_percentile, self.ttft_max_s),
                                 ("tbt", self.tbt_percentile, self.tbt_max_s)):
            if limit is None:
                continue
            values = series[metric].values
            key = f"{metric}_p{q:g}_s"
            if not len(values):
                observed[key] = None
                margins[metric] = MARGIN_CAP
                hard = True
                reasons.append(f"p{q:g} {metric.upper()}: no samples")
                continue
            value = float(np.percentile(values, q))
            observed[key] = value
            margins[metric] = log_margin(value, limit, value > limit)
            if value > limit:
                reasons.append(f"p{q:g} {metric.upper()} {value * 1e3:.1f} ms > {limit * 1e3:.1f} ms")
        if self.tbt_deadline_s is not None:
            frame = request_frame(records, self.ttft_deadline_s, self.tbt_deadline_s)
            fluidity = frame["fluidity_index"].dropna().to_numpy(float)
            key = f"fluidity_p{self.fluidity_percentile:g}"
            if not len(fluidity):
                observed[key] = None
                margins["fluidity"] = MARGIN_CAP
                hard = True
                reasons.append(f"p{self.fluidity_percentile:g} fluidity-index: no samples")
            else:
                value = float(np.percentile(fluidity, self.fluidity_percentile))
                observed[key] = value
                missed = value < self.min_fluidity
                margins["fluidity"] = log_margin(self.min_fluidity, value, missed)
                if missed:
                    reasons.append(f"p{self.fluidity_percentile:g} fluidity-index {value:.3f} < "
                                   f"{self.min_fluidity:g}")
        if (self.ttft_deadline_s is not None or self.tbt_deadline_s is not None) and n:
            # the share of requests that met their deadlines: x the rate, the probe's goodput
            observed["good_fraction"] = float(np.mean(good_mask(records, self.ttft_deadline_s,
                                                                self.tbt_deadline_s)))
        observed["margins"] = margins
        observed["margin"] = max(margins.values()) if margins else None
        observed["hard_fail"] = hard
        return not reasons, observed
