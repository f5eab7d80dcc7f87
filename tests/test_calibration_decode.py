"""Steady-state decode analysis against token times produced by the engine itself (virtual
clock, known parametric step times), with ramp-up, ramp-down and stream jitter."""

from __future__ import annotations

import numpy as np
import pytest

from etalon.calibration.decode import DecodePoints, DecodeSettings, fit_decode, steady_points
from etalon.engine import Engine, EngineConfig, Sequence
from etalon.perf import ParametricPerfModel, StepBatch
from etalon.records import RequestRecord

TRUTH = ParametricPerfModel(step_overhead=0.004, per_prefill_token=4e-5, per_attention_pair=4e-9,
                            per_decode_seq=2e-4, per_context_token=3e-7)


def engine_level(batch: int, prompt: int, outputs: list[int], jitter: float = 0.0, seed: int = 0,
                 budget: int = 2048) -> list[RequestRecord]:
    """Runs one level through the engine with a virtual clock; records as a client sees them."""
    engine = Engine(EngineConfig(scheduler="vllm", max_batched_tokens=budget), TRUTH)
    seqs = [Sequence(i, prompt, outputs[i], 0.0) for i in range(batch)]
    for s in seqs:
        engine.add(s)
    now = 0.0
    while True:
        step = engine.schedule(now)
        if step is None:
            break
        now = step.start + step.duration
        engine.complete(step, now)
    rng = np.random.default_rng(seed)
    records = []
    for s in seqs:
        t = s.token_times() + jitter * rng.exponential(size=s.generated)
        records.append(RequestRecord(request_id=s.request_id, scheduled_at=0.0, sent_at=0.0,
                                     completed_at=float(t[-1]), chunk_times=t.tolist(),
                                     chunk_tokens=[1] * len(t), num_prompt_tokens=prompt,
                                     prompt_tokens_source="usage"))
    return records


def test_steady_points_are_the_engine_decode_steps_of_the_full_batch():
    # 8 x 1024-token prompts with a 2048-token budget: four prefill steps (ramp-up); one
    # request stops early (ramp-down). Only full-batch decode steps may be measured.
    records = engine_level(8, 1024, [48] * 7 + [40])
    level = steady_points(records, 8, 1024, bins=6)
    assert len(level.step_time_s) == 6
    expect = [TRUTH.step_time(StepBatch.decode(8, int(round(c)))) for c in level.context]
    assert level.step_time_s == pytest.approx(expect, rel=2e-3)
    # contexts: all 8 prompts plus tokens so far, within the steady window
    assert level.context.min() > 8 * 1024 and level.context.max() < 8 * (1024 + 40)


def test_stream_jitter_is_averaged_out_by_segments():
    records = engine_level(4, 512, [64] * 4, jitter=0.002, seed=3)
    level = steady_points(records, 4, 512, bins=4)
    expect = [TRUTH.step_time(StepBatch.decode(4, int(round(c)))) for c in level.context]
    assert level.step_time_s == pytest.approx(expect, rel=0.05)


def test_a_level_whose_batch_never_ran_whole_gives_no_points():
    # max batch 2 < 4 requests: the last two start after the first two finish.
    engine = Engine(EngineConfig(max_batch_size=2), TRUTH)
    seqs = [Sequence(i, 128, 16, 0.0) for i in range(4)]
    for s in seqs:
        engine.add(s)
    now = 0.0
    while (step := engine.schedule(now)) is not None:
        now = step.start + step.duration
        engine.complete(step, now)
    records = [RequestRecord(i, 0.0, sent_at=0.0, completed_at=float(s.token_times()[-1]),
                             chunk_times=s.token_times().tolist(), chunk_tokens=[1] * 16,
                             num_prompt_tokens=128) for i, s in enumerate(seqs)]
    assert steady_points(records, 4, 128, bins=4).step_time_s.size == 0


def test_fit_over_engine_levels_recovers_the_decode_parameters():
    points = DecodePoints()
    settings = DecodeSettings(batch_sizes=(1, 4, 16), prompt_lengths=(128, 1024), decode_tokens=48)
    for level, (b, p) in enumerate(sorted(set(settings.levels()))):
        points.add(steady_points(engine_level(b, p, [48] * b, jitter=0.0005, seed=level), b, p, 6), level)
    section = fit_decode(points, settings=settings)
    d = section.physical
    assert d.intercept == pytest.approx(0.004, rel=0.05)
    assert d.coefficient("decode_batch") == pytest.approx(2e-4, rel=0.05)
    assert d.coefficient("decode_context") == pytest.approx(3e-7, rel=0.05)
    assert section.settings["batch_sizes"] == [1, 4, 16]


def test_decode_settings_are_checked_with_flag_names():
    with pytest.raises(ValueError, match="--batch-sizes"):
        DecodeSettings(batch_sizes=(4,)).validate()
    with pytest.raises(ValueError, match="decode-tokens must be >= 8"):
        DecodeSettings(decode_tokens=4).validate()
