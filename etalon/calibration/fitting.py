"""Fits a section's predictors with scikit-learn: physical first, flexible only if clearly better.

The physical model is linear in features that time is known to scale with (prefill: tokens and
causal attention pairs; decode: batch size and context tokens read), with non-negative
coefficients and intercept (a non-negative least-squares fit), so it extrapolates the way the
hardware does. A flexible candidate (a polynomial of the inputs) replaces it inside the profiled
range only when its cross-validated MAPE is at most ``margin_ratio`` times the physical one's and
better by at least ``margin_abs``, and when it is non-decreasing over the range; outside the
range the physical model answers regardless (see ``etalon.profiles.section``).

Cross-validation holds out whole groups (a prompt length, or a decode level), so it measures
the error at inputs the fit has not seen. Extrapolation is tested the same way: fit on points
with the key input (prompt tokens, or decode context) at most ``1 / extrapolation_factor`` of
its maximum, predict the rest; only if that error is within ``max_extrapolation_error`` does
the profile claim predictions up to ``extrapolation_factor`` times its maximum.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_percentage_error, r2_score
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.preprocessing import PolynomialFeatures

from etalon.cli_errors import UserError
from etalon.profiles.predictors import (
    FEATURES,
    INPUTS,
    PHYSICAL_FEATURES,
    LinearPredictor,
    PolynomialPredictor,
)
from etalon.profiles.section import Extrapolation, Section

# The input whose growth an extrapolation test holds out.
EXTRAPOLATION_KEY = {"prefill": "prompt_tokens", "decode": "decode_context"}
FLEXIBLE_DEGREE = {"prefill": 3, "decode": 2}


@dataclass(frozen=True)
class FitSettings:
    """How a section is fitted and what it may claim (all errors are fractions, 0.05 = 5 %)."""

    cv_folds: int = 5
    seed: int = 0
    margin_ratio: float = 0.5
    margin_abs: float = 0.01
    extrapolation_factor: float = 2.0
    max_extrapolation_error: float = 0.10
    min_stated_error: float = 0.02


def _scale(X: np.ndarray) -> np.ndarray:
    scale = np.abs(X).max(axis=0)
    return np.where(scale > 0, scale, 1.0)


class PhysicalRegressor(BaseEstimator, RegressorMixin):
    """Non-negative least squares on ``PHYSICAL_FEATURES[section]`` plus a non-negative intercept.

    ``X`` columns are ``INPUTS[section]``. The intercept is a feature column of ones so that it
    is constrained too: a negative fixed cost is not physical and would break monotonicity.
    """

    def __init__(self, section: str = "prefill"):
        self.section = section

    def _features(self, X: np.ndarray) -> np.ndarray:
        x = {name: np.asarray(X[:, i], dtype=float) for i, name in enumerate(INPUTS[self.section])}
        cols = [FEATURES[name](x) for name in PHYSICAL_FEATURES[self.section]]
        return np.column_stack([np.ones(len(X)), *cols])

    def fit(self, X, y):
        F = self._features(np.asarray(X, dtype=float))
        self.scale_ = _scale(F)
        lr = LinearRegression(positive=True, fit_intercept=False).fit(F / self.scale_, y)
        coef = lr.coef_ / self.scale_
        self.intercept_, self.coef_ = float(coef[0]), coef[1:]
        return self

    def predict(self, X):
        F = self._features(np.asarray(X, dtype=float))
        return self.intercept_ + F[:, 1:] @ self.coef_

    def to_predictor(self) -> LinearPredictor:
        return LinearPredictor(INPUTS[self.section], PHYSICAL_FEATURES[self.section],
                               tuple(float(c) for c in self.coef_), self.intercept_)


class PolynomialRegressor(BaseEstimator, RegressorMixin):
    """Ordinary least squares on every monomial of the scaled inputs up to ``degree``."""

    def __init__(self, section: str = "prefill", degree: int = 3):
        self.section = section
        self.degree = degree

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self.scale_ = _scale(X)
        self.poly_ = PolynomialFeatures(self.degree, include_bias=False).fit(X / self.scale_)
        self.lr_ = LinearRegression().fit(self.poly_.transform(X / self.scale_), y)
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        return self.lr_.predict(self.poly_.transform(X / self.scale_))

    def to_predictor(self) -> PolynomialPredictor:
        return PolynomialPredictor(
            INPUTS[self.section], tuple(float(s) for s in self.scale_),
            tuple(tuple(int(p) for p in row) for row in self.poly_.powers_),
            tuple(float(c) for c in self.lr_.coef_), float(self.lr_.intercept_))


def cross_validated_mape(estimator, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                         settings: FitSettings) -> float | None:
    """Mean held-out MAPE over group folds; ``None`` with fewer than 3 groups."""
    n_groups = len(np.unique(groups))
    if n_groups < 3:
        return None
    cv = GroupKFold(n_splits=min(settings.cv_folds, n_groups))
    scores = cross_val_score(estimator, X, y, groups=groups, cv=cv,
                             scoring="neg_mean_absolute_percentage_error")
    return float(-np.mean(scores))


def fit_section(name: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                settings: FitSettings = FitSettings(), *, measurements: dict | None = None,
                profiler_settings: dict | None = None) -> Section:
    """Fits section ``name`` to points ``X`` (columns ``INPUTS[name]``) and times ``y`` (s)."""
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    y = np.asarray(y, dtype=float)
    if len(y) < 3 or not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise UserError(f"{name} fit: need at least 3 positive, finite measurements "
                         f"(got {len(y)})")
    physical = PhysicalRegressor(name).fit(X, y)
    candidates = {"physical": _scores(physical, X, y, groups, settings)}
    chosen_name, chosen = "physical", physical
    flexible = PolynomialRegressor(name, FLEXIBLE_DEGREE[name])
    flex_name = f"polynomial-{flexible.degree}"
    n_params = PolynomialFeatures(flexible.degree).fit(X).n_output_features_
    if len(np.unique(groups)) > n_params:
        flexible.fit(X, y)
        candidates[flex_name] = _scores(flexible, X, y, groups, settings)
        candidates[flex_name]["monotone"] = _monotone(flexible, X)
        if _clearly_better(candidates[flex_name], candidates["physical"], settings):
            chosen_name, chosen = flex_name, flexible
    valid = {key: (float(X[:, i].min()), float(X[:, i].max()))
             for i, key in enumerate(INPUTS[name])}
    quality = {"r2": candidates[chosen_name]["r2"], "mape": candidates[chosen_name]["mape"],
               "cv_mape": candidates[chosen_name]["cv_mape"],
               "cv_folds": min(settings.cv_folds, len(np.unique(groups))),
               "num_points": int(len(y)), "candidates": candidates,
               "selection": (f"flexible only if cv_mape <= {settings.margin_ratio:g} x physical "
                             f"and {settings.margin_abs:g} lower, and non-decreasing")}
    physical_predictor = physical.to_predictor()
    predictor = physical_predictor if chosen is physical else chosen.to_predictor()
    return Section(name=name, predictor=predictor, physical=physical_predictor,
                   chosen=chosen_name, quality=quality, valid_range=valid,
                   extrapolation=_extrapolation(name, X, y, valid, candidates["physical"],
                                                settings),
                   measurements=measurements or {}, settings=profiler_settings or {})


def _scores(est, X: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: FitSettings) -> dict:
    pred = est.predict(X)
    return {"r2": float(r2_score(y, pred)) if len(y) > 1 else None,
            "mape": float(mean_absolute_percentage_error(y, pred)),
            "cv_mape": cross_validated_mape(est, X, y, groups, settings)}


def _clearly_better(flex: dict, phys: dict, settings: FitSettings) -> bool:
    if flex["cv_mape"] is None or phys["cv_mape"] is None or not flex["monotone"]:
        return False
    return (flex["cv_mape"] <= settings.margin_ratio * phys["cv_mape"]
            and phys["cv_mape"] - flex["cv_mape"] >= settings.margin_abs)


def _monotone(est, X: np.ndarray, points: int = 24) -> bool:
    """Non-decreasing along every input over the profiled box (a grid check)."""
    axes = [np.linspace(X[:, i].min(), X[:, i].max(), points) for i in range(X.shape[1])]
    mesh = np.meshgrid(*axes, indexing="ij")
    grid = np.column_stack([m.ravel() for m in mesh])
    values = est.predict(grid).reshape(mesh[0].shape)
    tol = 1e-3 * float(np.abs(values).max())
    return all(bool(np.all(np.diff(values, axis=i) >= -tol)) for i in range(X.shape[1]))


def _extrapolation(name: str, X: np.ndarray, y: np.ndarray, valid: dict, phys_scores: dict,
                   settings: FitSettings) -> Extrapolation:
    inputs = INPUTS[name]
    key = EXTRAPOLATION_KEY[name]
    col = X[:, inputs.index(key)]
    cut = col.max() / settings.extrapolation_factor
    train, test = col <= cut, col > cut
    not_claimed = {k: hi for k, (lo, hi) in valid.items()}
    enough = len(np.unique(col[train])) >= 3 and test.any()
    if name == "decode":
        enough = enough and len(np.unique(X[train, 0])) >= 2
    if not enough:
        need = ("3 distinct values" if name == "prefill" else "3 distinct contexts and 2 batch sizes")
        return Extrapolation(False, not_claimed, None, None,
                             f"an extrapolation test needs {need} of the points with {key} "
                             f"<= {cut:g} (1/{settings.extrapolation_factor:g} of the maximum)")
    model = PhysicalRegressor(name).fit(X[train], y[train])
    holdout = float(mean_absolute_percentage_error(y[test], model.predict(X[test])))
    if holdout > settings.max_extrapolation_error:
        return Extrapolation(False, not_claimed, None, holdout,
                             f"fitted on {key} <= {cut:g}, the physical model missed the longer "
                             f"points by {holdout:.1%} (limit {settings.max_extrapolation_error:.0%})")
    stated = max(holdout, phys_scores["cv_mape"] or 0.0, settings.min_stated_error)
    limits = {k: hi * settings.extrapolation_factor for k, (lo, hi) in valid.items()}
    return Extrapolation(True, limits, stated, holdout,
                         f"fitted on {key} <= {cut:g}, the physical model predicted the longer "
                         f"points within {holdout:.1%}; claimed up to "
                         f"{settings.extrapolation_factor:g}x the profiled maximum at "
                         f"max(that, cv_mape, {settings.min_stated_error:.0%})")


def shift_level(section: Section, delta: float) -> Section:
    """The section with ``delta`` seconds added to every predictor's intercept (recorded in
    ``fit.level_shift_s``); the shape, range and claims are unchanged."""
    physical = replace(section.physical, intercept=section.physical.intercept + delta)
    predictor = (physical if section.predictor is section.physical
                 else replace(section.predictor, intercept=section.predictor.intercept + delta))
    quality = {**section.quality, "level_shift_s": delta}
    return replace(section, physical=physical, predictor=predictor, quality=quality)
