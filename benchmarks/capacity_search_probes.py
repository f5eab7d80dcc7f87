"""Probes the capacity search spends, and how close it lands, on synthetic margin curves.

Each curve is a known SLO margin as a function of the request rate, so its true boundary (margin
0) is known. Three searches run on each, from several start rates (and seeds, for noisy curves):

* ``bisect``: the old search, reproduced by probes that report pass/fail only (no margin);
* ``interp``: the margin-guided search without repeats (``repeats_near_boundary: 1``);
* ``interp+rep``: the same with the default repeats near the boundary.

Printed per curve and search, as medians over the runs: probes used, the capacity's error
against the true boundary, the error of the interpolated boundary estimate (``boundary_qps``;
nan for pass/fail-only probes), the reported interval's width (all relative to the boundary),
and the fraction of runs whose interval holds the true boundary (an unbounded side holds it).

    python benchmarks/capacity_search_probes.py [--tolerance 0.05] [--seeds 40]
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np

from etalon.capacity_search import Probe, SearchSettings, search_capacity

LN10 = math.log(10)


def mm1(mu: float, t: float):
    """M/M/1 with service rate mu: p90 sojourn ln(10)/(mu - lam), SLO p90 <= t; capacity
    mu - ln(10)/t. Above saturation a finite run's p90 is large but finite: floor mu - lam at
    mu/1000."""
    def margin(lam: float) -> float:
        return math.log(LN10 / (t * max(mu - lam, mu / 1000)))
    return margin, mu - LN10 / t


def cliff(c: float):
    return (lambda lam: -0.5 if lam <= c else 2.0), c


def linear(c: float, k: float = 1.0):
    """margin = k (lam / c - 1): linear in the rate, not in its log."""
    return (lambda lam: k * (lam / c - 1)), c


CURVES = [  # name, (margin(lam), true boundary), noise SD of one probe's margin
    ("mm1 mu=10 T=0.5", mm1(10, 0.5), 0.0),
    ("mm1 mu=100 T=0.5", mm1(100, 0.5), 0.0),
    ("mm1 mu=40 T=0.1", mm1(40, 0.1), 0.0),
    ("cliff at 37", cliff(37.0), 0.0),
    ("linear at 3.3", linear(3.3), 0.0),
    ("mm1 mu=10 T=0.5 +noise 0.05", mm1(10, 0.5), 0.05),
    ("mm1 mu=100 T=0.5 +noise 0.1", mm1(100, 0.5), 0.1),
    ("linear at 3.3 +noise 0.05", linear(3.3), 0.05),
]
STARTS = (0.07, 0.3, 0.9, 1.3, 3.7)  # start_qps as a multiple of the true boundary


def make_probe(margin, sd: float, rng: np.random.Generator, with_margin: bool):
    def probe(qps: float) -> Probe:
        m = margin(qps) + (rng.normal(0, sd) if sd else 0.0)
        return Probe(qps, m <= 0, {"reasons": [], **({"margin": m} if with_margin else {})})
    return probe


def one(curve, start: float, seed: int, with_margin: bool, repeats: int, tol: float) -> dict:
    _, (margin, truth), sd = curve
    s = SearchSettings(start_qps=start * truth, max_qps=1e4, min_qps=1e-3, tolerance=tol,
                       max_probes=30, repeats_near_boundary=repeats)
    res = search_capacity(make_probe(margin, sd, np.random.default_rng(seed), with_margin), s)
    low, high = res.interval
    return {"probes": res.num_probes,
            "error": abs(res.capacity_qps - truth) / truth if res.capacity_qps else math.inf,
            "estimate": abs(res.boundary_qps - truth) / truth if res.boundary_qps else math.nan,
            "width": (high - low) / truth if low and high else math.inf,  # None: unbounded
            "covers": (low or 0) <= truth <= (high or math.inf)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--seeds", type=int, default=40, help="seeds per start rate on noisy curves")
    args = ap.parse_args()
    default_repeats = SearchSettings().repeats_near_boundary
    searches = [("bisect", False, 1), ("interp", True, 1), ("interp+rep", True, default_repeats)]
    print(f"tolerance {args.tolerance:g}; starts at {', '.join(f'{s:g}' for s in STARTS)} x boundary; "
          f"noisy curves: {args.seeds} seeds per start; repeats_near_boundary={default_repeats}\n")
    print(f"{'curve':<30} {'search':<11} {'probes':>6} {'error %':>8} {'est. %':>7} {'width %':>8} "
          f"{'covers':>7}")
    totals: dict[str, list[int]] = {name: [] for name, _, _ in searches}
    for curve in CURVES:
        seeds = range(args.seeds) if curve[2] else range(1)
        for name, with_margin, repeats in searches:
            runs = [one(curve, st, seed, with_margin, repeats, args.tolerance)
                    for st in STARTS for seed in seeds]
            totals[name] += [r["probes"] for r in runs]
            print(f"{curve[0]:<30} {name:<11} {statistics.median(r['probes'] for r in runs):>6g} "
                  f"{100 * statistics.median(r['error'] for r in runs):>8.2f} "
                  f"{100 * statistics.median(r['estimate'] for r in runs):>7.2f} "
                  f"{100 * statistics.median(r['width'] for r in runs):>8.2f} "
                  f"{statistics.mean(r['covers'] for r in runs):>7.0%}")
    print("\nmean probes over every run: " +
          ", ".join(f"{name} {statistics.mean(v):.2f}" for name, v in totals.items()))


if __name__ == "__main__":
    main()
