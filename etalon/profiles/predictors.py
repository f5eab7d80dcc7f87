"""Fitted predictors as plain numbers: evaluated with numpy, stored as JSON, never pickled.

Two kinds, both a handful of coefficients a person can read and check:

- ``linear``: ``intercept + Σ coef_i · feature_i(inputs)`` over named, physically meaningful
  features (``FEATURES``). The prefill features ``prompt_tokens`` and ``attention_pairs``
  (``n (n + 1) / 2`` for an isolated prompt) are exactly ``StepBatch``'s aggregates, so a
  fitted prefill predictor prices any batch, chunked or not, with the same coefficients.
- ``polynomial``: ``intercept + Σ coef_k · Π (x_j / scale_j) ** powers[k][j]``: the flexible
  candidate, exported from scikit-learn's ``PolynomialFeatures`` + ``LinearRegression``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from etalon.cli_errors import UserError
from etalon.profiles.schema import Fields

# Inputs are what a profiler controls and measures; features are what time depends on.
INPUTS: dict[str, tuple[str, ...]] = {
    "prefill": ("prompt_tokens",),
    "decode": ("decode_batch", "decode_context"),
}

FEATURES: dict[str, Callable[[Mapping[str, np.ndarray]], np.ndarray]] = {
    "prompt_tokens": lambda x: x["prompt_tokens"],
    "attention_pairs": lambda x: x["prompt_tokens"] * (x["prompt_tokens"] + 1.0) / 2.0,
    "decode_batch": lambda x: x["decode_batch"],
    "decode_context": lambda x: x["decode_context"],
}

PHYSICAL_FEATURES: dict[str, tuple[str, ...]] = {
    "prefill": ("prompt_tokens", "attention_pairs"),
    "decode": ("decode_batch", "decode_context"),
}


def as_inputs(names: tuple[str, ...], values: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Broadcast arrays of the named inputs; a missing one is a ``KeyError`` naming it."""
    arrays = [np.asarray(values[name], dtype=float) for name in names]
    return dict(zip(names, np.broadcast_arrays(*arrays)))


@dataclass(frozen=True)
class LinearPredictor:
    """``intercept + Σ coefficients[i] · FEATURES[features[i]](inputs)`` (seconds)."""

    inputs: tuple[str, ...]
    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float

    kind = "linear"

    def predict(self, values: Mapping[str, object]) -> np.ndarray:
        x = as_inputs(self.inputs, values)
        out = np.full(np.broadcast(*x.values()).shape, self.intercept, dtype=float)
        for name, coef in zip(self.features, self.coefficients):
            out = out + coef * FEATURES[name](x)
        return out

    def coefficient(self, feature: str) -> float:
        return self.coefficients[self.features.index(feature)]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "inputs": list(self.inputs), "features": list(self.features),
                "coefficients": list(self.coefficients), "intercept": self.intercept}


@dataclass(frozen=True)
class PolynomialPredictor:
    """``intercept + Σ_k coefficients[k] · Π_j (x_j / scale[j]) ** powers[k][j]`` (seconds)."""

    inputs: tuple[str, ...]
    scale: tuple[float, ...]
    powers: tuple[tuple[int, ...], ...]
    coefficients: tuple[float, ...]
    intercept: float

    kind = "polynomial"

    @property
    def degree(self) -> int:
        return max((sum(p) for p in self.powers), default=0)

    def predict(self, values: Mapping[str, object]) -> np.ndarray:
        x = as_inputs(self.inputs, values)
        scaled = [x[name] / s for name, s in zip(self.inputs, self.scale)]
        out = np.full(np.broadcast(*scaled).shape, self.intercept, dtype=float)
        for powers, coef in zip(self.powers, self.coefficients):
            term = np.ones_like(out)
            for value, p in zip(scaled, powers):
                if p:
                    term = term * value ** p
            out = out + coef * term
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "inputs": list(self.inputs), "scale": list(self.scale),
                "powers": [list(p) for p in self.powers],
                "coefficients": list(self.coefficients), "intercept": self.intercept}


Predictor = LinearPredictor | PolynomialPredictor


def predictor_from_dict(data: object, where: str, inputs: tuple[str, ...]) -> Predictor:
    """Validates and builds a predictor; ``inputs`` are the ones its section provides."""
    f = Fields(data, where)
    kind = f.str("kind")
    got_inputs = tuple(f.strings("inputs"))
    if got_inputs != inputs:
        raise UserError(f"{f.at('inputs')}: expected {list(inputs)}, got {list(got_inputs)}")
    intercept = f.num("intercept")
    if kind == "linear":
        f.only({"kind", "inputs", "features", "coefficients", "intercept"})
        features = tuple(f.strings("features"))
        for name in features:
            if name not in FEATURES:
                raise UserError(f"{f.at('features')}: unknown feature {name!r}; "
                                 f"valid: {sorted(FEATURES)}")
            if name not in _features_of(inputs):
                raise UserError(f"{f.at('features')}: feature {name!r} needs inputs this "
                                 f"section does not have ({list(inputs)})")
        coefs = f.numbers("coefficients", length=len(features))
        return LinearPredictor(inputs, features, tuple(coefs), intercept)
    if kind == "polynomial":
        f.only({"kind", "inputs", "scale", "powers", "coefficients", "intercept"})
        scale = f.numbers("scale", length=len(inputs))
        if any(s <= 0 for s in scale):
            raise UserError(f"{f.at('scale')}: every scale must be > 0")
        raw_powers = f.raw("powers")
        if not isinstance(raw_powers, list) or not all(
                isinstance(p, list) and len(p) == len(inputs)
                and all(isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= 6 for e in p)
                for p in raw_powers):
            raise UserError(f"{f.at('powers')}: expected a list of [{len(inputs)} integer "
                             f"exponents 0..6] lists")
        coefs = f.numbers("coefficients", length=len(raw_powers))
        return PolynomialPredictor(inputs, tuple(scale), tuple(tuple(p) for p in raw_powers),
                                   tuple(coefs), intercept)
    raise UserError(f"{f.at('kind')}: unknown predictor kind {kind!r}; valid: linear, polynomial")


def _features_of(inputs: tuple[str, ...]) -> set[str]:
    """The features computable from ``inputs`` (checked by evaluating on ones)."""
    probe = {name: np.ones(1) for name in inputs}
    usable = set()
    for name, fn in FEATURES.items():
        try:
            fn(probe)
        except KeyError:
            continue
        usable.add(name)
    return usable
