"""Distribution summaries against hand-computed percentiles of known data."""

import json
import math

import numpy as np
import pytest

from etalon.metrics.distribution import Distribution, percentile


def test_one_to_hundred_matches_hand_computed_linear_percentiles():
    d = Distribution.of(range(1, 101))
    # Linear interpolation: position (n - 1) * q / 100 into the sorted samples 1..100,
    # so the value is 1 + 99 * q / 100.
    assert d.count == 100
    assert d.min == 1 and d.max == 100
    assert d.mean == pytest.approx(50.5)
    assert d.p50 == pytest.approx(50.5)
    assert d.p90 == pytest.approx(90.1)
    assert d.p95 == pytest.approx(95.05)
    assert d.p99 == pytest.approx(99.01)
    assert d.p99_9 == pytest.approx(99.901)
    # Population std of 1..n is sqrt((n^2 - 1) / 12).
    assert d.std == pytest.approx(math.sqrt((100**2 - 1) / 12))


def test_agrees_with_numpy_on_unsorted_data():
    rng = np.random.default_rng(7)
    x = rng.exponential(0.2, size=501)
    d = Distribution.of(x)
    assert d.p90 == pytest.approx(np.percentile(x, 90))
    assert d.p99_9 == pytest.approx(np.percentile(x, 99.9))
    assert d.mean == pytest.approx(x.mean())


def test_empty_input_gives_count_zero_and_none():
    d = Distribution.of([])
    assert d.count == 0
    assert d.to_dict() == {k: (0 if k == "count" else None) for k in d.to_dict()}
    assert percentile([], 50) is None


def test_nan_and_none_samples_are_dropped():
    d = Distribution.of([1.0, float("nan"), None, 3.0])
    assert d.count == 2 and d.mean == 2.0


def test_to_dict_is_strict_json():
    text = json.dumps(Distribution.of([0.1, 0.2]).to_dict(), allow_nan=False)
    assert json.loads(text)["p50"] == pytest.approx(0.15)


@pytest.mark.parametrize("seed", range(4))
def test_sorted_and_counted_fast_paths_equal_numpys_percentiles(seed):
    """Percentiles read off a sorted copy by position, or off integer counts, are numpy's
    linear interpolation exactly; mean and std agree to rounding."""
    rng = np.random.default_rng(seed)
    for n in (1, 2, 3, 7, 10, 101, 1000, 4096):
        floats = rng.gamma(2.0, 0.005, n) * rng.choice([1e-3, 1.0, 1e3])
        ints = rng.integers(0, rng.integers(1, 40), n)
        for fast, reference in ((Distribution.of_sorted(np.sort(floats)), Distribution.of(floats)),
                                (Distribution.of_integers(ints), Distribution.of(ints))):
            for name in ("count", "min", "max", "p50", "p90", "p95", "p99", "p99_9"):
                assert getattr(fast, name) == getattr(reference, name), (n, name)
            assert fast.mean == pytest.approx(reference.mean, rel=1e-12)
            assert fast.std == pytest.approx(reference.std, rel=1e-9, abs=1e-15)
    assert Distribution.of_sorted(np.empty(0)).count == Distribution.of_integers(np.empty(0, int)).count == 0


def test_a_series_summarises_integer_samples_from_their_counts():
    # tokens per chunk 1, 1, 2, 4: p50 by hand = 1 + (2 - 1) * 0.5 = 1.5, mean 2, std sqrt(1.5)
    from etalon.metrics.series import MetricSpec, Series

    d = Series(MetricSpec("tokens_per_chunk", "tokens", ""), values=np.array([4, 1, 2, 1])).distribution()
    assert (d.count, d.min, d.max, d.p50, d.mean) == (4, 1.0, 4.0, 1.5, 2.0)
    assert d.std == pytest.approx(1.5 ** 0.5)


def test_samples_taken_a_block_at_a_time_give_the_same_distribution(monkeypatch):
    """Counts and squared deviations are summed over blocks (bounded memory at 44 M samples);
    block edges anywhere, later blocks holding larger values than the first, change nothing."""
    import etalon.metrics.distribution as distribution

    rng = np.random.default_rng(7)
    ints = np.concatenate([rng.integers(0, 3, 50), rng.integers(5, 60, 50)]).astype(np.int32)
    floats = rng.gamma(2.0, 0.005, 101)
    whole = Distribution.of_integers(ints)
    for block in (1, 3, 64):
        monkeypatch.setattr(distribution, "_COUNT_BLOCK", block)
        assert Distribution.of_integers(ints) == whole == Distribution.of(ints)
        fast, reference = Distribution.of_sorted(np.sort(floats)), Distribution.of(floats)
        assert fast.std == pytest.approx(reference.std, rel=1e-12)
        assert (fast.mean, fast.p99) == (reference.mean, reference.p99)
