"""Builds a ``PerfModel`` from a plain description (``{"kind": ..., **params}``).

One explicit table of implementations, imported lazily so a caller of the parametric model never
pays for the estimator's catalogs.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from etalon.config_files import load_mapping

from etalon.perf.base import PerfModel

PERF_MODELS: dict[str, str] = {
    "parametric": "etalon.perf.parametric:ParametricPerfModel.from_spec",
    "roofline": "etalon.perf.roofline:RooflinePerfModel.from_spec",
    "profiled": "etalon.perf.profiled:ProfiledPerfModel.from_spec",
}


def build_perf_model(spec: dict, *, where: str = "perf model") -> PerfModel:
    """``spec["kind"]`` picks the implementation; the other keys are its parameters."""
    spec = dict(spec)
    kind = spec.pop("kind", "parametric")
    if kind not in PERF_MODELS:
        raise ValueError(f"{where}: unknown kind {kind!r}; valid: {', '.join(PERF_MODELS)}")
    module, _, attr = PERF_MODELS[kind].partition(":")
    target = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target(spec, where=where)


def load_perf_spec(path: str | Path) -> dict:
    """Reads a perf-model description from a JSON or YAML file, with one-line errors."""
    return load_mapping(path, "perf-model file")
