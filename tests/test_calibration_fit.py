"""Fitting and prediction rules of calibration sections, on synthetic measurements whose truth
is a known parametric model (no server: fast and deterministic)."""

from __future__ import annotations

import numpy as np
import pytest

from etalon.calibration.decode import repeatability
from etalon.calibration.fitting import FitSettings, fit_section
from etalon.calibration.prefill import PrefillMeasurements, PrefillPlan, PrefillSettings, fit_prefill, plan_prefill
from etalon.profiles import OutOfRangeError
from etalon.perf import ParametricPerfModel, StepBatch

TRUTH = ParametricPerfModel(step_overhead=0.004, per_prefill_token=2e-5, per_attention_pair=2e-8,
                            per_decode_seq=2e-4, per_context_token=3e-7)
LENGTHS = np.array([256, 512, 1024, 1536, 2048, 3072, 4096])


def prefill_meas(lengths=LENGTHS, reps=3, noise=0.0, seed=0, fn=None) -> PrefillMeasurements:
    rng = np.random.default_rng(seed)
    n = np.repeat(lengths, reps)
    fn = fn or (lambda k: TRUTH.prefill_time(int(k)))
    y = np.array([fn(k) for k in n]) * (1 + noise * rng.standard_normal(len(n)))
    return PrefillMeasurements(n, n.copy(), y, np.tile(np.arange(reps), len(lengths)), True)


def decode_section(noise=0.0, seed=0, batches=(1, 2, 4, 8, 16), prompts=(128, 512, 1024)):
    rng = np.random.default_rng(seed)
    rows = []
    for level, (b, p) in enumerate((b, p) for p in prompts for b in batches):
        for k in range(0, 64, 8):
            ctx = b * (p + k)
            rows.append((b, ctx, TRUTH.step_time(StepBatch.decode(b, ctx)), level))
    a = np.array(rows, dtype=float)
    y = a[:, 2] * (1 + noise * rng.standard_normal(len(a)))
    columns = {"decode_batch": a[:, 0].tolist(), "decode_context": a[:, 1].tolist(),
               "step_time_s": y.tolist(), "level": a[:, 3].tolist()}
    return fit_section("decode", a[:, :2], y, a[:, 3], measurements=columns)


def test_noiseless_physical_fit_recovers_the_parameters_exactly():
    s = fit_prefill(prefill_meas())
    p = s.physical
    assert s.chosen == "physical"
    assert p.intercept == pytest.approx(TRUTH.step_overhead, rel=1e-6)
    assert p.coefficient("prompt_tokens") == pytest.approx(TRUTH.per_prefill_token, rel=1e-6)
    assert p.coefficient("attention_pairs") == pytest.approx(TRUTH.per_attention_pair, rel=1e-6)
    assert s.quality["r2"] == pytest.approx(1.0) and s.quality["cv_mape"] < 1e-6
    d = decode_section().physical
    assert (d.intercept, d.coefficient("decode_batch"), d.coefficient("decode_context")) == \
        pytest.approx((0.004, 2e-4, 3e-7), rel=1e-6)


def test_noisy_fit_stays_within_five_percent_and_reports_its_error():
    s = fit_prefill(prefill_meas(noise=0.01, seed=3))
    assert s.physical.coefficient("attention_pairs") == pytest.approx(2e-8, rel=0.05)
    assert s.physical.coefficient("prompt_tokens") == pytest.approx(2e-5, rel=0.05)
    assert 0.0005 < s.quality["cv_mape"] < 0.03
    d = decode_section(noise=0.01, seed=4).physical
    assert d.coefficient("decode_context") == pytest.approx(3e-7, rel=0.05)
    assert d.coefficient("decode_batch") == pytest.approx(2e-4, rel=0.05)


def test_profile_fitted_up_to_4k_predicts_8k_within_its_stated_error():
    s = fit_prefill(prefill_meas(noise=0.01, seed=5))
    assert s.extrapolation.claimed and s.limit("prompt_tokens") == 8192
    predicted = float(s.predict({"prompt_tokens": 8192}))
    truth = TRUTH.prefill_time(8192)
    assert abs(predicted - truth) / truth <= s.extrapolation.error
    assert s.extrapolation.error >= FitSettings().min_stated_error


def test_beyond_the_claimed_limit_predict_refuses_unless_told_otherwise():
    s = fit_prefill(prefill_meas())
    with pytest.raises(OutOfRangeError, match=r"prompt_tokens=12288 \(profiled 256..4096, claimed up to 8192\)"):
        s.predict({"prompt_tokens": [1024, 12288]})
    assert s.covers({"prompt_tokens": [256, 8192]}) and not s.covers({"prompt_tokens": 12288})
    relaxed = s.predict({"prompt_tokens": 12288}, strict=False)
    assert float(relaxed) == pytest.approx(TRUTH.prefill_time(12288), rel=1e-6)


def test_without_short_lengths_to_test_on_no_extrapolation_is_claimed():
    s = fit_prefill(prefill_meas(lengths=np.array([1024, 3072, 3584, 4096])))
    assert not s.extrapolation.claimed and "needs 3 distinct values" in s.extrapolation.reason
    assert float(s.predict({"prompt_tokens": 4096})) > 0  # the profiled range still answers
    with pytest.raises(OutOfRangeError, match="no extrapolation is claimed"):
        s.predict({"prompt_tokens": 8192})


def test_a_curve_the_physical_model_cannot_follow_refuses_to_extrapolate():
    # A cliff past 2.5k tokens (e.g. a kernel switch): fitted on the short half, the physical
    # model misses the long half by far more than 10 %, so nothing beyond 4k is claimed.
    def cliff(k):
        return TRUTH.prefill_time(int(k)) * (1.0 if k <= 2500 else 1.6)
    s = fit_prefill(prefill_meas(fn=cliff))
    assert not s.extrapolation.claimed and s.extrapolation.holdout_mape > 0.10
    with pytest.raises(OutOfRangeError):
        s.predict({"prompt_tokens": 8192})


def test_flexible_fit_only_inside_the_range_and_physical_outside():
    # A strongly cubic curve: the polynomial wins cross-validation clearly and is chosen, but
    # beyond 4k the physical predictor answers.
    def cubic(k):
        return 0.01 + 1e-5 * k + 3e-12 * k ** 3
    lengths = np.array([256, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4096])
    s = fit_prefill(prefill_meas(lengths=lengths, fn=cubic))
    assert s.chosen == "polynomial-3"
    assert s.quality["candidates"]["polynomial-3"]["cv_mape"] < s.quality["candidates"]["physical"]["cv_mape"]
    inside = float(s.predict({"prompt_tokens": 3000}))
    assert inside == pytest.approx(cubic(3000), rel=0.01)
    outside = float(s.predict({"prompt_tokens": 5000}, strict=False))
    assert outside == pytest.approx(float(s.physical.predict({"prompt_tokens": 5000})))


def test_physical_data_keeps_the_physical_predictor():
    s = fit_prefill(prefill_meas(noise=0.005, seed=1))
    assert s.chosen == "physical" and s.predictor is s.physical
    assert "polynomial-3" in s.quality["candidates"]


def test_prefill_plan_warms_up_then_shuffles_each_repetition_with_its_seed():
    settings = PrefillSettings((256, 1024, 4096), num_repetitions=2, num_warmup=2, seed=7)
    plan = plan_prefill(settings)
    assert [r.prompt_tokens for r in plan.requests[:2]] == [256, 4096]
    assert [plan.repetition[r.request_id] for r in plan.requests] == [-1, -1, 0, 0, 0, 1, 1, 1]
    assert sorted(r.prompt_tokens for r in plan.requests[2:5]) == [256, 1024, 4096]
    assert plan_prefill(settings) == plan
    assert isinstance(plan, PrefillPlan) and all(r.arrival_time == 0.0 for r in plan.requests)


def _levels(steps: dict[tuple[int, int], list[float | None]]) -> list[dict]:
    return [{"batch": b, "prompt_tokens": p, "repetition": r, "median_step_s": t}
            for (b, p), times in steps.items() for r, t in enumerate(times)]


def test_decode_repeatability_measures_drift_between_repetitions_and_scatter_within_levels():
    # worked by hand: level medians 0.10, 0.20, 0.30; repetition 1 runs 10 % slow on the first
    # two levels, repetition 2 20 % slow on the third. Speeds (median of each repetition's
    # ratios): 1.0, 1.1, 1.0 -> drift 10 %; relative ranges 0.1, 0.1, 0.2 -> scatter 10 %
    rep = repeatability(_levels({(1, 64): [0.10, 0.11, 0.10], (2, 64): [0.20, 0.22, 0.20],
                                 (4, 64): [0.30, 0.30, 0.36], (8, 64): [None, None, None]}))
    assert rep["speed_drift"] == pytest.approx(0.10)
    assert rep["level_scatter"] == pytest.approx(0.10)
    # a steady engine: every repetition alike
    steady = repeatability(_levels({(1, 64): [0.1, 0.1], (2, 256): [0.2, 0.2]}))
    assert steady == {"speed_drift": pytest.approx(0.0), "level_scatter": pytest.approx(0.0)}
    # one repetition: nothing to compare
    assert repeatability(_levels({(1, 64): [0.1], (2, 64): [0.2]})) == {"speed_drift": None, "level_scatter": None}
