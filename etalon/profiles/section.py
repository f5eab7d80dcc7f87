"""One fitted section of a profile (prefill or decode): its predictors, fit quality, and the
range of inputs it may be trusted on.

Prediction rule (the one place it lives):

- inside the profiled range (every input between its smallest and largest measured value), the
  chosen predictor answers — the physical one, or a flexible one that won cross-validation by a
  clear margin;
- outside it, only the physical predictor answers (a polynomial must never extrapolate);
- every answer is multiplied by the section's ``scale`` (1 unless the profile was re-anchored
  to the machine's current speed: the ``anchor`` entry, ``etalon.calibration.anchor``);
- beyond the claimed extrapolation limit (``extrapolation.limits``: twice the profiled maximum
  when a held-out extrapolation test passed at fit time, else the profiled maximum itself)
  ``predict`` refuses with ``OutOfRangeError`` unless ``strict=False``. The error stated for
  extrapolated predictions is ``extrapolation.error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from etalon.cli_errors import UserError
from etalon.profiles.predictors import (
    FEATURES,
    INPUTS,
    LinearPredictor,
    Predictor,
    as_inputs,
    predictor_from_dict,
)
from etalon.profiles.results import (
    AnchorResult, BatchingResult, ContextResult, JoinResult, ProbeResult, WakeUpResult,
)
from etalon.profiles.schema import Fields

TARGETS = {"prefill": "ttft_s", "decode": "step_time_s"}


class OutOfRangeError(ValueError):
    """A prediction was asked for beyond what the profile claims to know."""


@dataclass
class Extrapolation:
    """What the profile claims beyond its measured range, and why."""

    claimed: bool
    limits: dict[str, float]
    error: float | None
    holdout_mape: float | None
    reason: str

    def to_dict(self) -> dict:
        return {"claimed": self.claimed, "limits": dict(self.limits), "error": self.error,
                "holdout_mape": self.holdout_mape, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: object, where: str, inputs: tuple[str, ...]) -> "Extrapolation":
        f = Fields(data, where)
        f.only({"claimed", "limits", "error", "holdout_mape", "reason"})
        limits = f.obj("limits")
        return cls(claimed=f.bool("claimed"),
                   limits={name: limits.num(name, minimum=0) for name in inputs},
                   error=f.num("error", required=False, minimum=0),
                   holdout_mape=f.num("holdout_mape", required=False, minimum=0),
                   reason=f.str("reason", required=False) or "")


@dataclass
class Section:
    """A fitted predictor of ``TARGETS[name]`` (seconds) from ``INPUTS[name]``."""

    name: str
    predictor: Predictor
    physical: LinearPredictor
    chosen: str
    quality: dict
    valid_range: dict[str, tuple[float, float]]
    extrapolation: Extrapolation
    measurements: dict[str, list] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    #: prefill only: what a token pair across two prompts of one step costs; None: never
    #: measured (0)
    batching: BatchingResult | None = None
    #: prefill only: what a prompt joining decoding sequences adds to their step beyond the
    #: prefill fit's variable terms; None: never measured (0)
    join: JoinResult | None = None
    #: prefill only: what the first step after a pause costs more; None: nothing measured
    wake_up: WakeUpResult | None = None
    #: prefill only: what a new token's attention over a cached prefix costs per pair; None:
    #: never measured (priced like the fit's own attention pairs)
    context: ContextResult | None = None
    #: a later, quick measurement of how fast the engine runs now against when it was profiled;
    #: every time the section predicts (``predict``, ``cross_pair_cost``, ``join_cost``) is
    #: multiplied by its ``scale``; the measured wake-up penalty is not. None: the fit as measured.
    anchor: AnchorResult | None = None

    @property
    def scale(self) -> float:
        """How much slower (> 1) or faster the engine runs now than when it was profiled."""
        return float(self.anchor.scale) if self.anchor is not None else 1.0

    def wake_up_s(self, idle_s: float) -> float:
        """Measured extra seconds of the first step after ``idle_s`` idle seconds: linear
        between the probed gaps, the longest gap's value beyond them, 0 when never measured."""
        return self.wake_up.penalty_at(idle_s) if self.wake_up is not None else 0.0

    @property
    def cross_pair_cost(self) -> float:
        """Seconds per pair of prompt tokens from different sequences in one step (0 for an
        engine that attends per sequence, ``γ`` for one whose prefill cost curves with the
        step's total tokens)."""
        per_pair = self.batching.per_cross_pair if self.batching is not None else 0.0
        return float(per_pair) * self.scale

    def prompt_variable_s(self, prompt_tokens: int) -> float:
        """One prompt's variable terms by the physical fit, ``β n + γ n(n+1)/2``: what it costs a
        step beyond any fixed work (the probes subtract it from what they measure)."""
        phys = self.physical
        pairs = FEATURES["attention_pairs"]({"prompt_tokens": prompt_tokens})
        return (phys.coefficient("prompt_tokens") * prompt_tokens
                + phys.coefficient("attention_pairs") * pairs) * self.scale

    @property
    def context_pair_cost(self) -> float:
        """Seconds per pair of a new prompt token and a token before it in the cache (an earlier
        chunk, a cached prefix): measured by the context probe, else the fit's own attention
        pair, which the isolated prompts it was fitted on determine only loosely."""
        if self.context is not None:
            return float(self.context.per_context_pair) * self.scale
        return self.physical.coefficient("attention_pairs") * self.scale

    @property
    def join_cost(self) -> float:
        """Seconds of engine work a new prompt adds to the step that runs it, beyond its tokens
        and attention (0 when never measured)."""
        per_join = self.join.per_join_s if self.join is not None else 0.0
        return float(per_join) * self.scale

    def results(self) -> list[ProbeResult]:
        """The probe entries this section carries, in file order."""
        return [r for r in (self.batching, self.join, self.wake_up, self.context, self.anchor)
                if r is not None]

    def attach(self, result: ProbeResult) -> None:
        """Stores a probe's result in its entry (replacing an earlier one)."""
        if result.entry != AnchorResult.entry and self.name != "prefill":
            raise ValueError(f"{self.name} section: only a prefill section has a {result.entry!r} entry")
        setattr(self, result.entry, result)

    @property
    def inputs(self) -> tuple[str, ...]:
        return INPUTS[self.name]

    def limit(self, name: str) -> float:
        return self.extrapolation.limits.get(name, self.valid_range[name][1])

    def predict(self, values: Mapping[str, object], *, strict: bool = True) -> np.ndarray:
        """Seconds for each point of ``values`` (arrays broadcast); see the module docstring."""
        x = as_inputs(self.inputs, values)
        beyond = np.zeros(np.broadcast(*x.values()).shape, dtype=bool)
        inside = np.ones_like(beyond)
        for name in self.inputs:
            lo, hi = self.valid_range[name]
            inside &= (x[name] >= lo) & (x[name] <= hi)
            beyond |= x[name] > self.limit(name)
        if strict and beyond.any():
            raise OutOfRangeError(self._refusal(x, beyond))
        physical = self.physical.predict(x)
        if self.predictor is self.physical or inside.all():
            out = self.predictor.predict(x) if inside.all() else physical
        else:
            out = np.where(inside, self.predictor.predict(x), physical)
        return out * self.scale

    def _refusal(self, x: dict[str, np.ndarray], beyond: np.ndarray) -> str:
        parts = []
        for name in self.inputs:
            over = x[name][beyond]
            if over.size and over.max() > self.limit(name):
                lo, hi = self.valid_range[name]
                parts.append(f"{name}={over.max():g} (profiled {lo:g}..{hi:g}, "
                             f"claimed up to {self.limit(name):g})")
        why = ("" if self.extrapolation.claimed else
               f"; no extrapolation is claimed: {self.extrapolation.reason}")
        return f"{self.name} profile does not cover {', '.join(parts)}{why}"

    def covers(self, values: Mapping[str, object]) -> bool:
        """Whether every point lies within the claimed limits (``predict`` would not refuse)."""
        x = as_inputs(self.inputs, values)
        return all(bool(np.all(x[name] <= self.limit(name))) for name in self.inputs)

    # -- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "inputs": list(self.inputs), "target": TARGETS[self.name],
            "predictor": self.predictor.to_dict(), "physical": self.physical.to_dict(),
            "chosen": self.chosen, "fit": self.quality,
            "valid_range": {k: [float(lo), float(hi)] for k, (lo, hi) in self.valid_range.items()},
            "extrapolation": self.extrapolation.to_dict(),
            "settings": self.settings, "measurements": self.measurements,
            **{r.entry: r.to_dict() for r in self.results()},
        }

    @classmethod
    def from_dict(cls, name: str, data: object, where: str) -> "Section":
        f = Fields(data, where)
        f.only({"inputs", "target", "predictor", "physical", "chosen", "fit", "valid_range",
                "extrapolation", "settings", "measurements", "batching", "join", "wake_up",
                "context", "anchor"})
        inputs = INPUTS[name]
        if tuple(f.strings("inputs")) != inputs:
            raise UserError(f"{f.at('inputs')}: expected {list(inputs)}")
        if f.str("target") != TARGETS[name]:
            raise UserError(f"{f.at('target')}: expected {TARGETS[name]!r}")
        predictor = predictor_from_dict(f.raw("predictor"), f.at("predictor"), inputs)
        physical = predictor_from_dict(f.raw("physical"), f.at("physical"), inputs)
        if not isinstance(physical, LinearPredictor):
            raise UserError(f"{f.at('physical')}.kind: the physical predictor must be 'linear'")
        if any(c < 0 for c in physical.coefficients) or physical.intercept < 0:
            raise UserError(f"{f.at('physical')}: coefficients and intercept must be >= 0")
        if predictor.to_dict() == physical.to_dict():
            predictor = physical
        ranges = f.obj("valid_range")
        valid = {}
        for key in inputs:
            lo, hi = ranges.numbers(key, length=2, minimum=0)
            if lo > hi:
                raise UserError(f"{ranges.at(key)}: low end {lo:g} above high end {hi:g}")
            valid[key] = (lo, hi)
        extrap = Extrapolation.from_dict(f.raw("extrapolation"), f.at("extrapolation"), inputs)
        for key in inputs:
            if extrap.limits[key] < valid[key][1]:
                raise UserError(f"{f.at('extrapolation')}.limits.{key}: below the profiled "
                                 f"maximum {valid[key][1]:g}")
        quality = f.obj("fit")
        for key in ("r2", "mape"):
            quality.num(key)
        quality.num("cv_mape", required=False)
        measurements = f.obj("measurements", required=False)
        meas = {}
        if measurements is not None:
            meas = {k: measurements.numbers(k) for k in measurements.data}
            sizes = {len(v) for v in meas.values()}
            if len(sizes) > 1:
                raise UserError(f"{f.at('measurements')}: columns differ in length")
        settings = f.obj("settings", required=False)
        results = {}
        for kind in (BatchingResult, JoinResult, WakeUpResult, ContextResult, AnchorResult):
            if not f.has(kind.entry):
                continue
            if kind is not AnchorResult and name != "prefill":
                raise UserError(f"{f.at(kind.entry)}: only a prefill section has one")
            results[kind.entry] = kind.from_dict(f.raw(kind.entry), f.at(kind.entry))
        return cls(name=name, predictor=predictor, physical=physical,
                   chosen=f.str("chosen"), quality=quality.data, valid_range=valid,
                   extrapolation=extrap, measurements=meas,
                   settings=settings.data if settings is not None else {}, **results)
