"""Inter-arrival generators: distributions checked against their definitions."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from etalon.workload import (
    GammaIntervals,
    PoissonIntervals,
    StaticIntervals,
    TraceIntervals,
)

from etalon.registry import Registry, registry

from shipped_data import PUBLIC_TRACES


def shared_trace(name: str) -> Path:
    path = PUBLIC_TRACES / name
    assert path.is_file(), f"{path} should ship with the repository"
    return path


def test_poisson_gaps_are_exponential_with_mean_one_over_qps():
    qps, n = 4.0, 400_000
    gaps = PoissonIntervals(qps, np.random.default_rng(1)).intervals(n)
    assert gaps.shape == (n,)
    mean = 1.0 / qps
    # Exponential: sd = mean, so se(mean) = mean / sqrt(n) and se(sd) ~= mean * sqrt(2 / n)
    # (fourth central moment 9 sd^4).
    assert abs(gaps.mean() - mean) < 4 * mean / math.sqrt(n)
    assert abs(gaps.std(ddof=1) - mean) < 4 * mean * math.sqrt(2.0 / n)
    # Shape, not just moments: P(gap > t) = exp(-qps t) at t = mean and at 3 * mean.
    for t in (mean, 3 * mean):
        p = math.exp(-qps * t)
        frac = float(np.mean(gaps > t))
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert gaps.min() >= 0


def test_gamma_gaps_have_requested_mean_and_cv():
    for qps, cv in ((2.0, 0.5), (0.5, 2.0)):
        n = 400_000
        gaps = GammaIntervals(qps, cv, np.random.default_rng(2)).intervals(n)
        mean = 1.0 / qps
        sd = cv * mean
        assert abs(gaps.mean() - mean) < 4 * sd / math.sqrt(n)
        # Standard error of the cv estimate from 200 independent batches.
        batches = gaps.reshape(200, -1)
        batch_cv = batches.std(axis=1, ddof=1) / batches.mean(axis=1)
        se = batch_cv.std(ddof=1) / math.sqrt(len(batch_cv))
        est = gaps.std(ddof=1) / gaps.mean()
        assert abs(est - cv) < 4 * se + 1e-3


def test_gamma_shape_and_scale_formulas():
    g = GammaIntervals(qps=5.0, cv=0.25, rng=np.random.default_rng(0))
    assert g.shape == pytest.approx(16.0)
    assert g.scale == pytest.approx(1.0 / (5.0 * 16.0))


def test_static_gaps_are_zero():
    assert np.array_equal(StaticIntervals().intervals(5), np.zeros(5))
    assert len(StaticIntervals().intervals(0)) == 0


def _arrived_at(path: Path) -> np.ndarray:
    with open(path, newline="") as fh:
        return np.array([float(row["arrived_at"]) for row in csv.DictReader(fh)])


def test_trace_intervals_reproduce_splitwise_gaps():
    path = shared_trace("splitwise_conv.csv")
    times = np.sort(_arrived_at(path))
    expected = np.diff(times)
    gen = TraceIntervals(str(path))
    gaps = gen.intervals(len(times) + 100)
    assert len(gaps) == len(times) - 1  # m rows -> m - 1 gaps, never cycled
    np.testing.assert_allclose(gaps, expected, rtol=0, atol=1e-9)
    assert len(gen.intervals(10)) == 0


def test_trace_time_scale_factor_multiplies_gaps():
    path = shared_trace("splitwise_code.csv")
    base = TraceIntervals(str(path)).intervals(1000)
    slow = TraceIntervals(str(path), time_scale_factor=2.0).intervals(1000)
    np.testing.assert_allclose(slow, 2.0 * base)
    # Half the rate: the same number of requests spans twice the time.
    assert slow.sum() == pytest.approx(2.0 * base.sum())


def test_trace_intervals_continue_across_calls_and_sort(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(
        "arrival_time,num_prefill_tokens,num_decode_tokens\n5,1,1\n1,1,1\n2.5,1,1\n9,1,1\n"
    )
    gen = TraceIntervals(str(trace), time_scale_factor=0.5)
    assert gen.intervals(2).tolist() == pytest.approx([0.75, 1.25])
    assert gen.intervals(5).tolist() == pytest.approx([2.0])


@pytest.mark.parametrize(
    "make, flag",
    [
        (
            lambda: PoissonIntervals(-1, np.random.default_rng()),
            "--poisson-request-interval-generator-qps",
        ),
        (
            lambda: PoissonIntervals(0, np.random.default_rng()),
            "--poisson-request-interval-generator-qps",
        ),
        (
            lambda: GammaIntervals(-2, 1, np.random.default_rng()),
            "--gamma-request-interval-generator-qps",
        ),
        (
            lambda: GammaIntervals(1, 0, np.random.default_rng()),
            "--gamma-request-interval-generator-cv",
        ),
        (
            lambda: PoissonIntervals(float("nan"), np.random.default_rng()),
            "--poisson-request-interval-generator-qps",
        ),
    ],
)
def test_bad_parameters_name_the_flag(make, flag):
    with pytest.raises(ValueError, match=f"^{flag} must be > 0"):
        make()


def test_negative_qps_message_is_exact():
    with pytest.raises(ValueError) as err:
        PoissonIntervals(-1, np.random.default_rng())
    assert str(err.value) == "--poisson-request-interval-generator-qps must be > 0, got -1"


def test_bad_time_scale_factor_names_flag(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrived_at\n0\n1\n")
    with pytest.raises(ValueError, match="--trace-request-interval-generator-time-scale-factor"):
        TraceIntervals(str(trace), time_scale_factor=0)


def test_registry_lists_providers_and_rejects_unknown_and_duplicates():
    intervals = registry("interval_generator")
    assert set(intervals.names()) >= {"poisson", "gamma", "static", "trace", "closed_loop"}
    with pytest.raises(ValueError, match="valid: closed_loop, gamma, poisson, static, trace"):
        intervals.get("uniform")
    reg = Registry("thing")
    reg.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="registered already"):
        reg.register("a")(type("B", (), {}))
