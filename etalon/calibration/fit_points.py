"""The points a roofline fit is fitted to, read from a profile: isolated prefills with their
median TTFT, steady-state decode bins with their step times, and the measured join cost; and
how a fit's result is written.

Shared by the global roofline's fit (``roofline_fit``) and the operator roofline's
(``operator_fit``), so both see the same measurements the same way.
"""

from __future__ import annotations

import numpy as np

from etalon.perf.base import StepBatch
from etalon.profiles import Profile


def prefill_measurements(profile: Profile) -> tuple[list[StepBatch], np.ndarray] | None:
    """One isolated prefill per profiled length and its median TTFT (a stray slow repetition
    must not drag the fit), re-anchored; None when the profile has none."""
    if profile.prefill is None or not profile.prefill.measurements:
        return None
    m = profile.prefill.measurements
    n, ttft = np.asarray(m["prompt_tokens"], dtype=int), np.asarray(m["ttft_s"], float)
    lengths = np.unique(n)
    y = np.array([np.median(ttft[n == k]) for k in lengths]) * profile.prefill.scale
    return [StepBatch.prefill(int(k)) for k in lengths], y


def decode_measurements(profile: Profile) -> tuple[list[StepBatch], np.ndarray] | None:
    """The profile's steady-state decode bins and their step times, re-anchored."""
    if profile.decode is None or not profile.decode.measurements:
        return None
    m = profile.decode.measurements
    batches = [StepBatch.decode(int(b), int(round(c)))
               for b, c in zip(m["decode_batch"], m["decode_context"])]
    return batches, np.asarray(m["step_time_s"], float) * profile.decode.scale


def join_cost(profile: Profile) -> float:
    """The profile's measured per-prompt step cost (re-anchored), 0 when it has none."""
    return profile.prefill.join_cost if profile.prefill is not None else 0.0


class FitResult:
    """What both fits' results share: ``to_dict`` writes every field, the fitted model as its
    perf-model description (a file ``--perf-model-file`` reads)."""

    model: object

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "model"}
        out["model"] = self.model.describe()
        return out
