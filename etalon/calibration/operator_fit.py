"""Fits the operator roofline's efficiencies and per-kernel floor to measured step times (numpy only).

``OperatorRooflinePerfModel`` times a step as a sum over kernels of ``max(compute / e_gemm,
memory / e_bw) + floor`` plus collectives. The fit sets, by least squares on the *relative*
error of every point (as the global roofline's fit does):

- ``gemm_efficiency`` and ``bandwidth_efficiency`` — nonlinear (they sit inside the max) — by
  Levenberg-Marquardt on their logarithms (bounded to (0, 1]) with a finite-difference Jacobian;
- ``kernel_floor`` and a per-request overhead (what a TTFT holds besides engine steps: HTTP,
  tokenization) — linear given the two efficiencies: a step's floor term is its launch count
  times the floor — in closed form (non-negative weighted least squares) at every candidate,
  so the search runs over two dimensions only (variable projection).

Each point's kernels are counted once at the profile's shapes; a candidate only re-times them.
As in ``roofline_fit``, a measured join cost moves from the request overhead into
``per_prefill_seq``. The other constants (shape half-points, attention efficiency, collective
latency, link efficiency) keep the base model's values: one server's prefill and decode times
do not separate them. ``python -m etalon.calibration.roofline_fit --kind operator`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product

import numpy as np

from etalon.calibration.fit_points import (
    FitResult,
    decode_measurements,
    join_cost,
    prefill_measurements,
)
from etalon.cli_errors import UserError
from etalon.perf.base import StepBatch
from etalon.perf.operator_roofline import OperatorEfficiency
from etalon.perf.operators import COLLECTIVE, KINDS, Kernel
from etalon.profiles import Profile

LOW = 1e-3
NONLINEAR = ("gemm_efficiency", "bandwidth_efficiency")
# what single-kernel timings separate besides those two: the shape ramps and attention's own peak
KERNEL_NONLINEAR = ("gemm_efficiency", "gemm_half_rows", "attention_efficiency",
                    "bandwidth_efficiency", "bandwidth_half_bytes")


@dataclass
class OperatorFit(FitResult):
    """Fitted constants, the fitted model, and its error on the measurements (fractions)."""

    gemm_efficiency: float
    bandwidth_efficiency: float
    kernel_floor: float
    request_overhead: float
    per_prefill_seq: float
    prefill_mape: float | None
    decode_mape: float | None
    max_error: float
    prefill_points: int
    decode_points: int
    unconstrained: list[str]
    iterations: int
    model: object

    @property
    def warning(self) -> str | None:
        """What the user should know about the fit, or None."""
        if not self.unconstrained:
            return None
        return f"the measurements do not constrain {', '.join(self.unconstrained)}; kept at the defaults"


class _Design:
    """Every point's kernels at unit efficiency, flattened, tagged with the point they belong to."""

    def __init__(self, base, arrays: dict[str, np.ndarray], owner: np.ndarray, y: np.ndarray,
                 prefill: np.ndarray, fixed: float) -> None:
        self.arrays, self.owner, self.n = arrays, owner, len(y)
        launches = arrays["count"] * (arrays["kind"] != KINDS.index(COLLECTIVE))
        self.launches = np.bincount(owner, weights=launches, minlength=self.n)
        self.fixed = np.full(self.n, fixed)
        self.y, self.prefill = y, prefill.astype(float)
        self.bandwidth = base.hardware.bandwidth_bytes_s

    @classmethod
    def of_steps(cls, base, batches: list[StepBatch], y: np.ndarray, prefill: np.ndarray) -> "_Design":
        """One point per step: the sum of its kernels plus the base's step overhead."""
        parts, owner = [], []
        for i, b in enumerate(batches):
            arrays = base.kernel_arrays(base.inventory.kernels(b))
            parts.append(arrays)
            owner.append(np.full(len(arrays["kind"]), i))
        arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return cls(base, arrays, np.concatenate(owner), y, prefill, base.step_overhead)

    def times(self, eff) -> np.ndarray:
        """Each point's kernel seconds without the floor, under efficiency constants ``eff``."""
        a = self.arrays
        each = a["count"] * eff.seconds(a["kind"], a["flops_s"], a["bytes_s"], a["rows"],
                                        eff.bandwidth_half_bytes / self.bandwidth, with_floor=False)
        return np.bincount(self.owner, weights=each, minlength=self.n) + self.fixed


def _linear_offsets(y: np.ndarray, g: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    """Non-negative ``c`` minimising ``Σ ((g + Σ c_j col_j - y) / y)²``: the unconstrained
    solution over every subset of the columns, the best feasible one kept."""
    best, best_cost = np.zeros(len(columns)), np.inf
    for keep in product((False, True), repeat=len(columns)):
        idx = [j for j, k in enumerate(keep) if k]
        c = np.zeros(len(columns))
        if idx:
            a = np.stack([columns[j] / y for j in idx], axis=1)
            sol, *_ = np.linalg.lstsq(a, (y - g) / y, rcond=None)
            if np.any(sol < 0):
                continue
            c[idx] = sol
        pred = g + sum(cj * col for cj, col in zip(c, columns))
        cost = float(np.sum(((pred - y) / y) ** 2))
        if cost < best_cost:
            best, best_cost = c, cost
    return best


def _log_bounds(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on the logarithms: efficiencies in [LOW, 1], shape constants (half rows, half
    bytes) in [1e-3, 1e12]."""
    lo = np.array([np.log(LOW) if n in OperatorEfficiency.FRACTIONS else np.log(1e-3) for n in names])
    hi = np.array([0.0 if n in OperatorEfficiency.FRACTIONS else np.log(1e12) for n in names])
    return lo, hi


def _solve(design: _Design, start, names: list[str], columns: list[np.ndarray],
           iterations: int) -> tuple[object, np.ndarray, int, list[str]]:
    """Levenberg-Marquardt over the logarithms of the efficiency constants ``names`` with the
    linear ``columns`` (floor, request overhead) solved in closed form at every candidate.
    Returns (efficiency, linear coefficients, iterations, names the data did not move)."""
    y = design.y

    def solve(x: np.ndarray, keys: list[str]):
        eff = replace(start, **{k: float(np.exp(v)) for k, v in zip(keys, x)})
        g = design.times(eff)
        c = _linear_offsets(y, g, columns)
        pred = g + sum(cj * col for cj, col in zip(c, columns))
        return (pred - y) / y, eff, c

    x = np.log([getattr(start, k) for k in names])
    lo, hi = _log_bounds(names)
    jac = _jacobian(lambda v: solve(v, names)[0], np.clip(x, lo, hi), hi)
    unconstrained = [k for k, col in zip(names, jac.T) if np.linalg.norm(col) < 1e-9]
    names = [k for k in names if k not in unconstrained]
    lo, hi = _log_bounds(names)
    x = np.clip(np.log([getattr(start, k) for k in names]), lo, hi)
    lam, steps = 1e-3, 0
    res = solve(x, names)[0]
    for steps in range(1, iterations + 1):
        if not names:
            break
        jac = _jacobian(lambda v: solve(v, names)[0], x, hi)
        jtj, grad = jac.T @ jac, jac.T @ res
        improved = False
        while lam < 1e10:
            step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), -grad)
            trial = np.clip(x + step, lo, hi)
            trial_res = solve(trial, names)[0]
            if trial_res @ trial_res < res @ res:
                improved, lam = True, max(lam / 3.0, 1e-9)
                moved = np.max(np.abs(trial - x))
                x, res = trial, trial_res
                break
            lam *= 4.0
        if not improved or moved < 1e-10:
            break
    _, eff, c = solve(x, names)
    return eff, c, steps, unconstrained


def fit_operator_points(base, batches: list[StepBatch], y: np.ndarray, prefill: np.ndarray, *,
                        fit_request: bool = True, iterations: int = 100):
    """Fits ``base``'s (an ``OperatorRooflinePerfModel``) GEMM and bandwidth efficiencies, its
    kernel floor and, with ``fit_request``, a per-request overhead charged to the ``prefill``
    points (TTFTs) to measured seconds ``y``. Returns (efficiency, request overhead, iterations,
    names the data did not constrain)."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or np.any(y <= 0):
        raise UserError("operator fit: needs positive measured step times")
    design = _Design.of_steps(base, batches, y, np.asarray(prefill, dtype=bool))
    columns = [design.launches] + ([design.prefill] if fit_request and design.prefill.any() else [])
    eff, c, steps, unconstrained = _solve(design, base.efficiency, list(NONLINEAR), columns, iterations)
    eff = replace(eff, kernel_floor=float(c[0]))
    request = float(c[1]) if len(c) > 1 else 0.0
    return eff, request, steps, unconstrained


def fit_kernel_times(base, kernels: list[Kernel], y: np.ndarray, *,
                     names: tuple[str, ...] = KERNEL_NONLINEAR, iterations: int = 200):
    """Fits ``base``'s efficiency constants ``names`` and its kernel floor to the measured
    seconds ``y`` of single kernel launches (an operator profile: one kernel per point, so
    the shape constants that a step's sum blurs are separable). Returns (efficiency,
    iterations, names the data did not constrain)."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or np.any(y <= 0):
        raise UserError("operator fit: needs positive measured kernel times")
    one = [replace(k, count=1) for k in kernels]
    design = _Design(base, base.kernel_arrays(one), np.arange(len(one)), y,
                     np.zeros(len(one), bool), 0.0)
    eff, c, steps, unconstrained = _solve(design, base.efficiency, list(names),
                                          [design.launches], iterations)
    return replace(eff, kernel_floor=float(c[0])), steps, unconstrained


def _jacobian(f, x: np.ndarray, hi: np.ndarray, h: float = 1e-6) -> np.ndarray:
    f0 = f(x)
    cols = []
    for j in range(len(x)):
        dx = np.zeros_like(x)
        dx[j] = h if x[j] + h <= hi[j] else -h  # stay inside the upper bound
        cols.append((f(x + dx) - f0) / dx[j])
    return np.stack(cols, axis=1) if cols else np.zeros((len(f0), 0))


def fit_operator_roofline(base, profile: Profile, *, fit_overheads: bool = True) -> OperatorFit:
    """Fits ``base`` (an ``OperatorRooflinePerfModel``) to ``profile``'s raw measurements:
    median TTFT per prompt length and the steady-state decode bins."""
    pre, dec = prefill_measurements(profile), decode_measurements(profile)
    if pre is None and dec is None:
        raise UserError(f"{profile.label}: no raw measurements to fit an operator roofline to")
    batches, y, is_prefill = [], [], []
    for found, flag in ((pre, True), (dec, False)):
        if found is not None:
            batches += found[0]
            y += list(found[1])
            is_prefill += [flag] * len(found[0])
    prefill = np.array(is_prefill)
    eff, request, steps, unconstrained = fit_operator_points(
        base, batches, np.array(y), prefill, fit_request=fit_overheads)
    join = min(join_cost(profile), request) if fit_overheads else 0.0
    fitted = replace(base, efficiency=eff,
                     request_path=request - join, per_prefill_seq=join)
    y = np.array(y)
    pred = np.array([fitted.step_time(b) for b in batches]) + prefill * fitted.request_path
    err = np.abs(pred - y) / y
    return OperatorFit(
        gemm_efficiency=eff.gemm_efficiency, bandwidth_efficiency=eff.bandwidth_efficiency,
        kernel_floor=eff.kernel_floor, request_overhead=request, per_prefill_seq=join,
        prefill_mape=float(err[prefill].mean()) if prefill.any() else None,
        decode_mape=float(err[~prefill].mean()) if (~prefill).any() else None,
        max_error=float(err.max()), prefill_points=int(prefill.sum()),
        decode_points=int((~prefill).sum()), unconstrained=unconstrained, iterations=steps,
        model=fitted)
