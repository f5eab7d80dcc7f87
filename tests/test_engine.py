"""The engine against hand-worked schedules: exact token times, chunking, KV preemption."""

from __future__ import annotations

import numpy as np
import pytest

from etalon.engine import Engine, EngineConfig, Sequence
from etalon.perf import ParametricPerfModel

# 10 ms per step plus 1 ms per prompt token; decode steps cost just the overhead.
FLAT = dict(step_overhead=0.01, per_prefill_token=1e-3, per_attention_pair=0.0,
            per_decode_seq=0.0, per_context_token=0.0)


def drive(engine: Engine, seqs: list[Sequence], *, fast: bool = False) -> list[list]:
    """Runs to completion with all requests present at t=0; returns the plans seen."""
    for s in seqs:
        engine.add(s)
    t, plans = 0.0, []
    while not engine.idle:
        step = engine.schedule(t)
        assert step is not None and not isinstance(step, float)
        plans.append(([(q.request_id, c) for q, c in step.plan.prefill],
                      [q.request_id for q in step.plan.decode]))
        if fast and step.plan.decode_only:
            out = engine.fast_forward(step, engine.decode_times(step, engine.decode_horizon(step.plan)))
        else:
            out = engine.complete(step, t + step.duration)
        t = out.end
    return plans


def test_two_requests_exact_token_times():
    # Worked by hand: step 1 prefills both prompts (150 tokens): 0.01 + 0.150 = 0.16 s, each
    # emits its first token then. Step 2 decodes both (0.01 s): A's 2nd and B's 2nd (B done) at
    # 0.17. Step 3 decodes A alone: A's 3rd at 0.18.
    eng = Engine(EngineConfig(scheduler="vllm"), ParametricPerfModel(**FLAT))
    a, b = Sequence(0, 100, 3, 0.0), Sequence(1, 50, 2, 0.0)
    drive(eng, [a, b])
    np.testing.assert_allclose(a.token_times(), [0.16, 0.17, 0.18])
    np.testing.assert_allclose(b.token_times(), [0.16, 0.17])
    assert eng.pool.used == 0


def test_chunked_prefill_splits_prompt_into_expected_steps():
    eng = Engine(EngineConfig(scheduler="sarathi", max_batched_tokens=256), ParametricPerfModel(**FLAT))
    s = Sequence(0, 1000, 2, 0.0)
    plans = drive(eng, [s])
    # ceil(1000 / 256) = 4 prefill chunks: 256, 256, 256, 232; then one decode step.
    assert [p[0] for p in plans] == [[(0, 256)], [(0, 256)], [(0, 256)], [(0, 232)], []]
    first = 4 * 0.01 + 1000 * 1e-3
    np.testing.assert_allclose(s.token_times(), [first, first + 0.01])


def test_sarathi_mixes_decodes_with_prefill_chunks():
    eng = Engine(EngineConfig(scheduler="sarathi", max_batched_tokens=100), ParametricPerfModel(**FLAT))
    a, b = Sequence(0, 50, 4, 0.0), Sequence(1, 300, 2, 0.0)
    plans = drive(eng, [a, b])
    # Step 1: A's whole prompt (50) + B's first 50. Step 2: A decodes (1 token) + 99 of B.
    assert plans[0] == ([(0, 50), (1, 50)], [])
    assert plans[1] == ([(1, 99)], [0])


def test_preemption_exactly_when_kv_runs_out():
    # 10 blocks of 16 tokens. Two 64-token prompts take 4 blocks each; the first decode step needs
    # a 5th block each (token 65), leaving 0 free. Decode steps 2..16 fit (tokens up to 80); the
    # 17th step needs a 6th block for A, so B (the last admitted) is preempted then — not before.
    cfg = EngineConfig(scheduler="vllm", num_kv_blocks=10, block_size=16)
    eng = Engine(cfg, ParametricPerfModel(**FLAT))
    a, b = Sequence(0, 64, 40, 0.0), Sequence(1, 64, 40, 0.0)
    eng.add(a)
    eng.add(b)
    t = 0.0
    step = eng.schedule(t)
    t = eng.complete(step, t + step.duration).end  # prefill
    for _ in range(16):
        step = eng.schedule(t)
        assert [q.request_id for q in step.plan.decode] == [0, 1]
        t = eng.complete(step, t + step.duration).end
    assert eng.num_preemptions == 0 and eng.pool.free == 0
    step = eng.schedule(t)
    assert eng.num_preemptions == 1
    assert [q.request_id for q in step.plan.decode] == [0]
    assert b.prefill_target == 64 + 17 and b.num_computed == 0  # recompute prompt + output so far


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi", "orca", "static"])
def test_fast_forward_matches_step_by_step(scheduler):
    rng = np.random.default_rng(0)

    def seqs():
        return [Sequence(i, int(p), int(o), 0.0)
                for i, (p, o) in enumerate(zip(rng.integers(10, 300, 12), rng.integers(1, 60, 12)))]

    model = ParametricPerfModel()
    cfg = dict(scheduler=scheduler, max_batch_size=5, max_batched_tokens=512, num_kv_blocks=60)
    slow_seqs = seqs()
    rng = np.random.default_rng(0)
    fast_seqs = seqs()
    slow, fast = Engine(EngineConfig(**cfg), model), Engine(EngineConfig(**cfg), model)
    drive(slow, slow_seqs)
    drive(fast, fast_seqs, fast=True)
    assert fast.num_steps == slow.num_steps
    assert fast.num_preemptions == slow.num_preemptions
    for s, f in zip(slow_seqs, fast_seqs):
        np.testing.assert_allclose(f.token_times(), s.token_times(), rtol=1e-12, atol=1e-12)
        assert len(s.token_times()) == s.output_tokens


def test_windowed_waits_for_batch_to_fill():
    eng = Engine(EngineConfig(scheduler="windowed", max_batch_size=4, batch_window=0.5),
                 ParametricPerfModel(**FLAT))
    eng.add(Sequence(0, 10, 1, 0.0))
    assert eng.schedule(0.1) == 0.5  # wait until the window closes
    step = eng.schedule(0.5)
    assert [q.request_id for q, _ in step.plan.prefill] == [0]


def test_request_that_can_never_fit_is_rejected():
    eng = Engine(EngineConfig(num_kv_blocks=4, block_size=16), ParametricPerfModel())
    with pytest.raises(ValueError, match="never fit"):
        eng.add(Sequence(0, 60, 10, 0.0))
