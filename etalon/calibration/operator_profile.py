"""An operator profile: measured seconds of each layer operator, and the operator roofline fitted to it.

``etalon profile ops`` (``etalon.operator_profiler``) times a model's layer operators on a
device; this module owns what it measures and what is done with it, and needs no PyTorch:

- the grid: prefill points (one prompt of T tokens) and decode points (b sequences, each with
  context C), each a ``StepBatch`` whose kernels ``OperatorInventory`` counts — so every
  measured operator carries the FLOPs, bytes and GEMM rows the roofline would charge it;
- the file (JSON, one row per operator and grid point; never a pickle) and its validation;
- the fit of ``OperatorEfficiency`` to the rows (``operator_fit.fit_kernel_times``: one kernel
  per point, so the shape ramps separate) and the roofline's error per operator, before and
  after the fit.

Collectives are not measured (one device); an all-reduce's constants come from their cited
defaults or a multi-device step profile.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from etalon.calibration.operator_fit import KERNEL_NONLINEAR, fit_kernel_times
from etalon.cli_errors import UserError
from etalon.estimator.dtypes import get_dtype
from etalon.estimator.errors import EstimatorError
from etalon.estimator.models import load_model
from etalon.perf.base import StepBatch
from etalon.perf.operator_roofline import OperatorEfficiency, OperatorRooflinePerfModel
from etalon.perf.operators import COLLECTIVE, Kernel

KIND = "operator_profile"
PREFILL, DECODE = "prefill", "decode"


@dataclass(frozen=True)
class GridPoint:
    """One step shape the operators are timed at: a prompt of ``tokens`` (prefill) or
    ``batch`` sequences each ``context`` tokens long (decode)."""

    phase: str
    tokens: int
    batch: int = 1
    context: int = 0

    @property
    def step(self) -> StepBatch:
        if self.phase == PREFILL:
            return StepBatch.prefill(self.tokens)
        return StepBatch.decode(self.batch, self.batch * self.context)

    def label(self) -> str:
        return (f"prefill {self.tokens}" if self.phase == PREFILL
                else f"decode {self.batch} x {self.context}")


def grid(prefill_tokens: list[int], decode_batches: list[int], contexts: list[int]) -> list[GridPoint]:
    """Every prefill length, then every decode batch at every context."""
    for name, values in (("prefill tokens", prefill_tokens), ("decode batch sizes", decode_batches),
                         ("context lengths", contexts)):
        if any(v < 1 for v in values):
            raise UserError(f"operator profile: {name} must be >= 1, got {values}")
    if not prefill_tokens and not (decode_batches and contexts):
        raise UserError("operator profile: no grid points (give prefill tokens, or decode batch "
                        "sizes with context lengths)")
    points = [GridPoint(PREFILL, t) for t in prefill_tokens]
    points += [GridPoint(DECODE, b, b, c) for b in decode_batches for c in contexts]
    return points


def point_kernels(model: OperatorRooflinePerfModel, point: GridPoint) -> dict[str, Kernel]:
    """The step's kernels by operator name, one launch each (the first layer class's, which is
    every layer's in a dense model without sliding windows); collectives left out."""
    out: dict[str, Kernel] = {}
    for k in model.inventory.kernels(point.step):
        if k.kind != COLLECTIVE and k.name not in out:
            out[k.name] = Kernel(k.name, k.kind, 1, float(k.flops), float(k.bytes), float(k.rows))
    return out


@dataclass
class OperatorMeasurement:
    """One operator at one grid point: what the roofline charges it and what it took."""

    operator: str
    kind: str
    phase: str
    tokens: int
    batch: int
    context: int
    flops: float
    bytes: float
    rows: float
    median_s: float
    p10_s: float
    p90_s: float
    repetitions: int

    @property
    def kernel(self) -> Kernel:
        return Kernel(self.operator, self.kind, 1, self.flops, self.bytes, self.rows)


@dataclass
class OperatorProfile:
    """Measured operator times of one model shape on one device, and where they came from."""

    source: dict
    measurements: list[OperatorMeasurement] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"kind": KIND, "source": self.source,
                "measurements": [asdict(m) for m in self.measurements]}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def model(self, hardware: str | None = None, efficiency: OperatorEfficiency | None = None
              ) -> OperatorRooflinePerfModel:
        """The operator roofline of the profiled shape (model, TP, dtypes) on ``hardware``
        (default: the profile's)."""
        s = self.source
        spec = load_model(s["model"])
        dtype = s.get("dtype") or spec.activation_dtype
        # the profiler runs activations, weights and KV in one dtype (fp32 on a CPU)
        spec = replace(spec, activation_dtype=get_dtype(dtype).name)
        try:
            return OperatorRooflinePerfModel(spec, hardware or s["hardware"], tp=int(s.get("tp", 1)),
                                             dtype=dtype, kv_dtype=dtype,
                                             efficiency=efficiency or OperatorEfficiency())
        except (EstimatorError, KeyError) as e:
            raise UserError(f"operator profile of {s['model']}: {e}") from None


_NUMBERS = {f.name for f in fields(OperatorMeasurement)} - {"operator", "kind", "phase"}


def load_operator_profile(path: Path | str) -> OperatorProfile:
    """Reads and checks an operator profile; a malformed one is one line naming the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable operator profile ({e})") from None
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise UserError(f"{path}: not an operator profile (expected \"kind\": \"{KIND}\")")
    source = raw.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("model"), str):
        raise UserError(f"{path}: source.model is missing")
    rows = raw.get("measurements")
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{path}: measurements must be a non-empty list")
    out = []
    for i, row in enumerate(rows):
        where = f"{path}: measurements[{i}]"
        if not isinstance(row, dict):
            raise UserError(f"{where} is not an object")
        missing = sorted({f.name for f in fields(OperatorMeasurement)} - set(row))
        if missing:
            raise UserError(f"{where}: missing {', '.join(missing)}")
        for name in _NUMBERS:
            v = row[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise UserError(f"{where}.{name}: must be a finite number >= 0, got {v!r}")
        if row["median_s"] <= 0:
            raise UserError(f"{where}.median_s: must be > 0, got {row['median_s']!r}")
        if row["phase"] not in (PREFILL, DECODE):
            raise UserError(f"{where}.phase: must be {PREFILL!r} or {DECODE!r}, got {row['phase']!r}")
        out.append(OperatorMeasurement(**{f.name: row[f.name] for f in fields(OperatorMeasurement)}))
    return OperatorProfile(source, out)


@dataclass
class OperatorError:
    """How far a roofline's times are from an operator's measurements (fractions)."""

    operator: str
    points: int
    measured_s: float  # summed over the points
    mean_abs_error: float
    mean_signed_error: float


def relative_errors(model: OperatorRooflinePerfModel, profile: OperatorProfile) -> np.ndarray:
    """(predicted − measured) / measured of every measured row, in the profile's order."""
    arrays = model.kernel_arrays([m.kernel for m in profile.measurements])
    y = np.array([m.median_s for m in profile.measurements])
    return (model.seconds_each(arrays) - y) / y


def operator_errors(profile: OperatorProfile, rel: np.ndarray) -> list[OperatorError]:
    """Per operator: mean |relative error| and its sign over the grid, from ``rel``
    (``relative_errors`` of one model)."""
    names = np.array([m.operator for m in profile.measurements])
    y = np.array([m.median_s for m in profile.measurements])
    out = []
    for name in dict.fromkeys(names.tolist()):  # operators in profile order
        mine = names == name
        out.append(OperatorError(name, int(mine.sum()), float(y[mine].sum()),
                                 float(np.abs(rel[mine]).mean()), float(rel[mine].mean())))
    return out


@dataclass
class OperatorProfileFit:
    """The fitted constants, the fitted model, and the roofline's error before and after."""

    efficiency: OperatorEfficiency
    model: OperatorRooflinePerfModel
    unconstrained: list[str]
    iterations: int
    default_error: float
    fitted_error: float
    per_operator: dict[str, dict[str, float]]

    def to_dict(self) -> dict:
        return {"efficiency": asdict(self.efficiency), "unconstrained": self.unconstrained,
                "iterations": self.iterations, "default_mean_abs_error": self.default_error,
                "fitted_mean_abs_error": self.fitted_error, "per_operator": self.per_operator,
                "model": self.model.describe()}


def fit_operator_profile(profile: OperatorProfile, hardware: str | None = None,
                         names: tuple[str, ...] = KERNEL_NONLINEAR) -> OperatorProfileFit:
    """Fits the operator roofline's efficiencies and kernel floor to ``profile``; reports the
    default constants' error and the fitted ones' per operator."""
    base = profile.model(hardware)
    kernels = [m.kernel for m in profile.measurements]
    y = np.array([m.median_s for m in profile.measurements])
    eff, steps, unconstrained = fit_kernel_times(base, kernels, y, names=names)
    fitted = base.with_efficiency(**asdict(eff))
    rel_before, rel_after = relative_errors(base, profile), relative_errors(fitted, profile)
    before = {e.operator: e for e in operator_errors(profile, rel_before)}
    after = operator_errors(profile, rel_after)
    per_op = {e.operator: {"points": e.points, "measured_s": e.measured_s,
                           "default_mean_abs_error": before[e.operator].mean_abs_error,
                           "default_mean_signed_error": before[e.operator].mean_signed_error,
                           "fitted_mean_abs_error": e.mean_abs_error,
                           "fitted_mean_signed_error": e.mean_signed_error} for e in after}
    return OperatorProfileFit(eff, fitted, unconstrained, steps, float(np.abs(rel_before).mean()),
                              float(np.abs(rel_after).mean()), per_op)
