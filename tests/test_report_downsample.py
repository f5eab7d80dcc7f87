"""What the plots and the report draw from: quantiles read off sorted samples and binned rates,
against numpy's own functions on the full samples."""

from __future__ import annotations

import numpy as np
import pytest

from etalon.report.downsample import bin_edges, cdf_points, rate_per_bin, sorted_quantiles


@pytest.mark.parametrize("seed", range(3))
def test_quantiles_of_sorted_samples_are_numpys(seed):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 5, 999, 5000):
        v = np.sort(rng.lognormal(-4, 1, n))
        q = np.concatenate([[0.0, 1.0], rng.random(50)])
        assert np.array_equal(sorted_quantiles(v, q), np.quantile(v, q, method="linear"))
    x, frac = cdf_points(rng.random(10_000), limit=500)
    assert len(x) <= 500 and frac[-1] == 1.0 and np.all(np.diff(x) >= 0)


@pytest.mark.parametrize("seed", range(3))
def test_binned_rates_equal_a_histogram_over_the_edges(seed):
    rng = np.random.default_rng(seed)
    edges = bin_edges(2.0, 12.0, 40)
    times = np.concatenate([rng.uniform(0.0, 14.0, 20_000), edges, [2.0, 12.0, 12.0]])
    weights = rng.integers(1, 5, len(times)).astype(float)
    for w in (None, weights):
        counts, _ = np.histogram(times, bins=edges, weights=w)
        assert np.array_equal(rate_per_bin(times, w, edges), counts / 0.25)
    # unequal bins take the general path
    uneven = np.array([0.0, 1.0, 5.0, 6.5])
    assert np.array_equal(rate_per_bin(times, None, uneven),
                          np.histogram(times, bins=uneven)[0] / np.diff(uneven))
