"""The ``PerfModel`` postcondition every implementation must meet, checked on random batches:
a non-empty step takes positive time, an empty one none, and adding decode sequences, context
or prompt tokens never makes a step faster. Used by the roofline tests of each kind."""

from __future__ import annotations

import numpy as np

from etalon.perf import PerfModel, StepBatch


def assert_positive_and_monotone(model: PerfModel, trials: int = 200, max_context: int = 4096,
                                 more_prompt: bool = False, seed: int = 0) -> None:
    assert isinstance(model, PerfModel)
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        p, seqs, d = int(rng.integers(0, 4096)), int(rng.integers(1, 8)), int(rng.integers(0, 64))
        ctx = int(rng.integers(0, max_context))
        base = StepBatch(p, StepBatch.attention_pairs(p, ctx) if p else 0.0, seqs if p else 0, d, d * ctx)
        if base.empty:
            assert model.step_time(base) == 0.0
            continue
        t = model.step_time(base)
        assert t > 0
        more = [StepBatch(p, base.prefill_attention, base.num_prefill_seqs, d + 1, (d + 1) * ctx + 10),
                StepBatch(p, base.prefill_attention, base.num_prefill_seqs, d, d * ctx + 1000)]
        if more_prompt:
            more.append(StepBatch(p + 64, StepBatch.attention_pairs(p + 64, ctx),
                                  max(base.num_prefill_seqs, 1), d, d * ctx))
        for bigger in more:
            assert model.step_time(bigger) >= t
