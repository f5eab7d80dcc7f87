"""Builds a ``PerfModel`` from a plain description (``{"kind": ..., **params}``).

One explicit table of implementations, imported lazily so a caller of the parametric model never
pays for the estimator's catalogs.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import yaml

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
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read perf-model file ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                         f"{str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of perf-model parameters")
    return data
