"""Length generators: Zipf pmf and sampling, ratio split, clipping, trace replay."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from etalon.workload import (
    FixedLengths,
    TraceLengths,
    UniformLengths,
    ZipfLengths,
    clip_total_tokens,
    split_by_ratio,
    zipf_pmf,
)

from shipped_data import PUBLIC_TRACES


def shared_trace(name: str) -> Path:
    path = PUBLIC_TRACES / name
    assert path.is_file(), f"{path} should ship with the repository"
    return path


def test_zipf_pmf_hand_computed_small_case():
    h = 1 + 1 / 2 + 1 / 3  # = 11/6
    np.testing.assert_allclose(zipf_pmf(1.0, 3), [1 / h, 0.5 / h, (1 / 3) / h], rtol=1e-15)
    np.testing.assert_allclose(zipf_pmf(1.0, 3), [6 / 11, 3 / 11, 2 / 11], rtol=1e-15)
    # theta = 2, N = 2: weights 1 and 1/4, normaliser 5/4.
    np.testing.assert_allclose(zipf_pmf(2.0, 2), [0.8, 0.2], rtol=1e-15)
    np.testing.assert_allclose(zipf_pmf(0.0, 4), [0.25] * 4)


def test_zipf_pmf_sums_to_one_over_large_support():
    assert math.fsum(zipf_pmf(0.99, 100_000)) == pytest.approx(1.0, abs=1e-12)


def test_zipf_empirical_frequencies_match_pmf():
    theta, low, high, n = 1.2, 10, 29, 200_000
    gen = ZipfLengths(theta, False, low, high, 1.0, np.random.default_rng(3), cap=10_000)
    p, d = gen.lengths(n)
    totals = p + d
    counts = np.bincount(totals - low, minlength=high - low + 1)
    pmf = zipf_pmf(theta, high - low + 1)
    freq = counts / n
    se = np.sqrt(pmf * (1 - pmf) / n)
    assert np.all(np.abs(freq - pmf) < 5 * se)
    assert totals.min() >= low and totals.max() <= high
    # Rank 1 is the smallest total when not scrambled.
    assert counts.argmax() == 0


def test_zipf_scramble_permutes_values_but_keeps_the_frequencies():
    theta, low, high, n = 1.0, 100, 149, 100_000
    gen = ZipfLengths(theta, True, low, high, 3.0, np.random.default_rng(4), cap=10_000)
    assert sorted(gen.values.tolist()) == list(range(low, high + 1))
    assert gen.values.tolist() != list(range(low, high + 1))
    p, d = gen.lengths(n)
    counts = np.bincount(p + d - low, minlength=high - low + 1)
    # The value holding rank 1 gets rank 1's probability.
    top = gen.values[0] - low
    pmf = zipf_pmf(theta, high - low + 1)
    assert abs(counts[top] / n - pmf[0]) < 5 * math.sqrt(pmf[0] * (1 - pmf[0]) / n)


def test_split_by_ratio_hand_cases():
    p, d = split_by_ratio(np.array([100, 21, 2, 10]), 3.0)
    # 100 / 4 = 25; 21 / 4 = 5.25 -> 5; 2 / 4 = 0.5 -> 1 (half up); 10 / 4 = 2.5 -> 3.
    assert d.tolist() == [25, 5, 1, 3]
    assert p.tolist() == [75, 16, 1, 7]
    p, d = split_by_ratio(np.array([2, 1000]), 1000.0)
    assert d.tolist() == [1, 1] and p.tolist() == [1, 999]  # decode never below 1


def test_uniform_totals_cover_range_uniformly():
    low, high, n = 50, 59, 100_000
    gen = UniformLengths(low, high, 4.0, np.random.default_rng(5), cap=10_000)
    p, d = gen.lengths(n)
    counts = np.bincount(p + d - low, minlength=high - low + 1)
    assert len(counts) == high - low + 1
    expected = 1 / (high - low + 1)
    assert np.all(np.abs(counts / n - expected) < 5 * math.sqrt(expected * (1 - expected) / n))
    assert np.all(p >= 1) and np.all(d >= 1)
    assert np.all(d == np.floor((p + d) / 5 + 0.5))


def test_proportional_clipping_by_hand():
    p, d = clip_total_tokens(np.array([3000, 7, 1, 100, 500]), np.array([1000, 3, 100, 10, 100]), 4)
    # max_tokens = 4: (3000, 1000) -> floor(3000*4/4000) = 3, d = 1; (7, 3) -> floor(2.8) = 2, 2;
    # (1, 100) -> floor(4/101) = 0 -> 1, 3; (100, 10) -> floor(400/110) = 3, 1; (500, 100) -> 3, 1.
    assert p.tolist() == [3, 2, 1, 3, 3]
    assert d.tolist() == [1, 2, 3, 1, 1]
    p, d = clip_total_tokens(np.array([3000, 100, 1999]), np.array([1000, 50, 1]), 2000)
    assert p.tolist() == [1500, 100, 1999]  # under or at the cap: unchanged
    assert d.tolist() == [500, 50, 1]


def test_cap_applies_to_every_provider():
    fixed = FixedLengths(8000, 1000, cap=4500)
    p, d = fixed.lengths(3)
    assert p.tolist() == [4000] * 3 and d.tolist() == [500] * 3
    uni = UniformLengths(5000, 6000, 1.0, np.random.default_rng(0), cap=3000)
    p, d = uni.lengths(1000)
    assert np.all(p + d == 3000)


def _column_means(path: Path) -> tuple[list[int], list[int]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [int(r["num_prefill_tokens"]) for r in rows], [int(r["num_decode_tokens"]) for r in rows]


def test_trace_lengths_reproduce_shared_trace_means_and_scale():
    path = shared_trace("sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
    prefill, decode = _column_means(path)
    gen = TraceLengths(str(path), cap=1_000_000)
    p, d = gen.lengths(len(prefill) + 50)
    assert len(p) == len(prefill)  # no cycling
    assert p.mean() == pytest.approx(sum(prefill) / len(prefill), rel=1e-12)
    assert d.mean() == pytest.approx(sum(decode) / len(decode), rel=1e-12)
    assert p.tolist()[:5] == prefill[:5]
    p2, d2 = TraceLengths(str(path), 2.0, 3.0, cap=1_000_000).lengths(len(prefill))
    assert p2.mean() == pytest.approx(2 * sum(prefill) / len(prefill), rel=1e-12)
    assert d2.mean() == pytest.approx(3 * sum(decode) / len(decode), rel=1e-12)
    p3, _ = TraceLengths(str(path), 0.5, 1.0, cap=1_000_000).lengths(len(prefill))
    assert p3.tolist() == [max(1, math.floor(x * 0.5 + 0.5)) for x in prefill]


def test_trace_lengths_with_cap_clip_long_rows():
    path = shared_trace("arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv")
    prefill, decode = _column_means(path)
    p, d = TraceLengths(str(path), cap=2048).lengths(len(prefill))
    totals = np.array(prefill) + np.array(decode)
    assert np.all(p + d <= 2048)
    over = totals > 2048
    assert over.sum() > 1000  # the cap really bites on this trace
    assert np.all(p[over] + d[over] == 2048)
    assert np.array_equal(p[~over], np.array(prefill)[~over])
    assert np.array_equal(d[~over], np.array(decode)[~over])
    # Proportional: prefill share kept to within one token.
    share = np.array(prefill)[over] / totals[over]
    assert np.all(np.abs(p[over] - share * 2048) < 1.0)


def test_trace_lengths_run_out_cleanly(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n10,2\n0,5\n7,0\n")
    gen = TraceLengths(str(trace))
    p, d = gen.lengths(2)
    assert p.tolist() == [10, 1] and d.tolist() == [2, 5]  # zero counts become 1
    p, d = gen.lengths(5)
    assert p.tolist() == [7] and d.tolist() == [1]
    assert len(gen.lengths(5)[0]) == 0


def test_cycled_trace_starts_over_where_rows_run_out(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n10,2\n20,3\n30,4\n")
    gen = TraceLengths(str(trace), cycle=True)
    assert gen.lengths(2)[0].tolist() == [10, 20]
    p, d = gen.lengths(5)  # rows 3, 1, 2, 3, 1: the next call goes on from the trace's row 2
    assert p.tolist() == [30, 10, 20, 30, 10] and d.tolist() == [4, 2, 3, 4, 2]
    assert gen.lengths(1)[0].tolist() == [20]


@pytest.mark.parametrize(
    "make, flag",
    [
        (
            lambda: ZipfLengths(-0.1, False, 10, 20, 1.0, np.random.default_rng()),
            "--zipf-request-length-generator-theta",
        ),
        (
            lambda: ZipfLengths(1.0, False, 30, 20, 1.0, np.random.default_rng()),
            "--zipf-request-length-generator-min-tokens",
        ),
        (
            lambda: UniformLengths(10, 20, 0.0, np.random.default_rng()),
            "--uniform-request-length-generator-prefill-to-decode-ratio",
        ),
        (
            lambda: UniformLengths(1, 20, 1.0, np.random.default_rng()),
            "--uniform-request-length-generator-min-tokens",
        ),
        (lambda: FixedLengths(0, 10), "--fixed-request-generator-prefill-tokens"),
        (lambda: FixedLengths(10, 10, cap=1), "--request-generator-max-tokens"),
    ],
)
def test_bad_length_parameters_name_the_flag(make, flag):
    with pytest.raises(ValueError, match=flag):
        make()


def test_length_registry():
    from etalon.registry import registry

    lengths = registry("length_generator")
    assert set(lengths.names()) >= {"uniform", "zipf", "fixed", "trace"}
    with pytest.raises(
        ValueError, match="unknown request length generator 'normal'; valid: dataset, fixed, trace, uniform"
    ):
        lengths.get("normal")
