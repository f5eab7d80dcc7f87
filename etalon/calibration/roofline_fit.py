"""Fits a roofline model's efficiency factors to a profile's measurements (numpy only).

``RooflinePerfModel`` times a step as ``max(compute / (peak · mfu), memory / (bandwidth · mbu))
+ communication + step_overhead``. Prefill is compute-bound, so its TTFTs pin down ``mfu``;
decode is memory-bound, so its step times pin down ``mbu``. The fit minimises the mean squared
*relative* error (each point counts by its percentage miss, as MAPE does):

- ``mbu`` by a bounded 1-D search (a log grid over (0, 1], then golden-section refinement) on
  the decode points, with ``step_overhead`` in closed form at each candidate — the
  non-negative ``o`` minimising ``Σ ((f + o - y) / y)²`` is ``Σ (y - f) / y² / Σ 1 / y²``;
- ``mfu`` by the same search on the prefill points, with the decode-fitted overhead plus a
  closed-form non-negative ``request_overhead``: a TTFT also contains the request path (HTTP,
  tokenization, queueing) that no engine step has;
- alternated a few times, since each phase sees a little of the other factor;
- when the profile measured a join cost (``prefill.join``: what a prompt adds to the step
  that runs it, whatever its length), that much of ``request_overhead`` moves into the steps as
  ``per_prefill_seq`` (capped at it, as ``ProfiledPerfModel`` caps it): an isolated TTFT is
  unchanged, but prompts admitted together now lengthen the step the decoders wait on.

Prefill points are the median TTFT of each profiled length (a stray slow repetition must not
drag ``mfu``); decode points are the profile's steady-state bins; both times the section's
re-anchoring ``scale``, so a re-anchored profile's roofline is the engine's speed now. The
search runs on each point's unscaled compute, memory and communication seconds (read once from
``RooflinePerfModel.breakdown`` at the base model); the errors reported come from the fitted
``RooflinePerfModel`` itself.

    python -m etalon.calibration.roofline_fit profile.json --model llama-3.1-8b --hardware h100-sxm

``--kind operator`` fits ``OperatorRooflinePerfModel`` instead (``etalon.calibration.operator_fit``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from etalon.calibration.fit_points import (
    FitResult,
    decode_measurements,
    join_cost,
    prefill_measurements,
)
from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.estimator.deployment_config import DeploymentConfig
from etalon.options import add_options, apply_namespace, check_required, embed, option
from etalon.perf.base import StepBatch
from etalon.profiles import Profile, load_profile

LOW, HIGH = 1e-3, 1.0
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


@dataclass
class RooflineFit(FitResult):
    """Fitted factors, the fitted model, and its error on the measurements (fractions)."""

    mfu: float
    mbu: float
    step_overhead: float
    request_overhead: float
    per_prefill_seq: float
    prefill_mape: float | None
    decode_mape: float | None
    prefill_points: int
    decode_points: int
    at_bound: list[str]
    model: object

    @property
    def warning(self) -> str | None:
        """What the user should know about the fit, or None."""
        if not self.at_bound:
            return None
        return (f"{', '.join(self.at_bound)} at the search bound: the measurements do not look "
                f"like this model on this hardware")


def minimise_1d(f: Callable[[float], float], lo: float = LOW, hi: float = HIGH,
                grid: int = 64, iterations: int = 48) -> float:
    """The minimiser of ``f`` on ``[lo, hi]``: best point of a log grid, then golden-section
    search between its neighbours (``f`` need only be unimodal near the best grid point)."""
    xs = np.geomspace(lo, hi, grid)
    values = [f(x) for x in xs]
    i = int(np.argmin(values))
    a, b = xs[max(i - 1, 0)], xs[min(i + 1, grid - 1)]
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(d)
    best = min((values[i], xs[i]), (fc, c), (fd, d))
    return float(best[1])


def _offset(y: np.ndarray, f: np.ndarray) -> float:
    """The non-negative constant minimising the squared relative error of ``f + o``."""
    w = 1.0 / y ** 2
    return max(float(np.sum(w * (y - f)) / np.sum(w)), 0.0)


def _sq_rel(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(((f - y) / y) ** 2))


class _Points:
    """Each point's compute, memory and communication seconds at unit efficiency."""

    def __init__(self, model, batches: list[StepBatch], y: np.ndarray):
        parts = [model.breakdown(b) for b in batches]
        self.batches = batches
        self.compute = np.array([p.compute_s for p in parts])
        self.memory = np.array([p.memory_s for p in parts])
        self.comm = np.array([p.comm_s for p in parts])
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def roof(self, mfu: float, mbu: float) -> np.ndarray:
        return np.maximum(self.compute / mfu, self.memory / mbu) + self.comm


def _prefill_points(model, profile: Profile) -> _Points | None:
    found = prefill_measurements(profile)
    return None if found is None else _Points(model, *found)


def _decode_points(model, profile: Profile) -> _Points | None:
    found = decode_measurements(profile)
    return None if found is None else _Points(model, *found)


def fit_roofline(base, profile: Profile, *, fit_overheads: bool = True,
                 rounds: int = 4) -> RooflineFit:
    """Fits ``base``'s (a ``RooflinePerfModel``) ``mfu``, ``mbu`` and, with ``fit_overheads``,
    its ``step_overhead`` plus a per-request overhead to ``profile``'s raw measurements (part of
    which becomes ``per_prefill_seq`` when the profile measured a join cost)."""
    unit = replace(base, mfu=1.0, mbu=1.0, step_overhead=0.0)
    pre, dec = _prefill_points(unit, profile), _decode_points(unit, profile)
    if pre is None and dec is None:
        raise UserError(f"{profile.label}: no raw measurements to fit a roofline to")
    mfu, mbu, o, r = base.mfu, base.mbu, base.step_overhead, 0.0

    def decode_obj(x: float) -> float:
        f = dec.roof(mfu, x)
        return _sq_rel(dec.y, f + (_offset(dec.y, f) if fit_overheads else o))

    def prefill_obj(x: float) -> float:
        f = pre.roof(x, mbu) + o
        return _sq_rel(pre.y, f + (_offset(pre.y, f) if fit_overheads else 0.0))

    for _ in range(rounds):
        if dec is not None:
            mbu = minimise_1d(decode_obj)
            if fit_overheads:
                o = _offset(dec.y, dec.roof(mfu, mbu))
        if pre is not None:
            mfu = minimise_1d(prefill_obj)
            if fit_overheads:
                r = _offset(pre.y, pre.roof(mfu, mbu) + o)
    join = min(join_cost(profile), r) if fit_overheads else 0.0
    fitted = replace(base, mfu=mfu, mbu=mbu, step_overhead=o, request_path=r - join,
                     per_prefill_seq=join)
    pre_mape = dec_mape = None
    if pre is not None:
        pred = np.array([fitted.step_time(b) for b in pre.batches]) + fitted.request_path
        pre_mape = float(np.mean(np.abs(pred - pre.y) / pre.y))
    if dec is not None:
        pred = np.array([fitted.step_time(b) for b in dec.batches])
        dec_mape = float(np.mean(np.abs(pred - dec.y) / dec.y))
    at_bound = [name for name, v in (("mfu", mfu), ("mbu", mbu)) if v >= 0.999 or v <= 1.001 * LOW]
    return RooflineFit(mfu, mbu, o, r, join, pre_mape, dec_mape, len(pre or []), len(dec or []),
                       at_bound, fitted)


PROG = "etalon.calibration.roofline_fit"
DESCRIPTION = ("Fit a roofline model's MFU/MBU (or, with --kind operator, the operator roofline's "
               "efficiencies and per-kernel floor) to a profile.")


@dataclass
class RooflineFitConfig:
    REQUIRED = ("model", "hardware")

    deployment: DeploymentConfig = embed(DeploymentConfig, exclude=("gpu_memory_utilization",))
    keep_overhead: bool = option(False, "keep the model's step_overhead; fit no per-request "
                                        "overhead")
    kind: str = option("roofline", "roofline: fit the global MFU/MBU; operator: fit the "
                                   "operator roofline's GEMM and bandwidth efficiencies and "
                                   "per-kernel floor", choices=("roofline", "operator"))


def configure(parser) -> None:
    parser.add_argument("profile", help="profile JSON with raw measurements")
    add_options(parser, RooflineFitConfig)


def _kinds() -> dict:
    """``--kind`` -> (the model to start from, its fit); imported only when run."""
    from etalon.calibration.operator_fit import fit_operator_roofline
    from etalon.perf.operator_roofline import OperatorRooflinePerfModel
    from etalon.perf.roofline import RooflinePerfModel

    return {"roofline": (RooflinePerfModel, fit_roofline),
            "operator": (OperatorRooflinePerfModel, fit_operator_roofline)}


def execute(ns) -> int:
    cfg = check_required(apply_namespace(RooflineFitConfig(), ns))
    d = cfg.deployment
    profile = load_profile(ns.profile)
    model, fit = _kinds()[cfg.kind]
    base = model(d.model, d.hardware, tp=d.tp, pp=d.pp, dtype=d.dtype, kv_dtype=d.kv_dtype_or_none)
    result = fit(base, profile, fit_overheads=not cfg.keep_overhead)
    print(json.dumps(result.to_dict(), indent=1))
    if result.warning:
        print(f"roofline_fit: {result.warning}", file=sys.stderr)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
