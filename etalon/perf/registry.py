"""Builds a ``PerfModel`` from a plain description (``{"kind": ..., **params}``).

The kinds are the ``perf_model`` registry's entries (a plug-in can add one). The built-ins are
registered as lazy ``"module:attr"`` references, so a caller of the parametric model never pays
for importing the estimator's catalogs.
"""

from __future__ import annotations

from pathlib import Path

from etalon.config_files import load_mapping
from etalon.perf.base import PerfModel
from etalon.registry import raw, registry

raw("perf_model").register("parametric", "etalon.perf.parametric:ParametricPerfModel.from_spec")
raw("perf_model").register("roofline", "etalon.perf.roofline:RooflinePerfModel.from_spec")
raw("perf_model").register("operator_roofline",
                          "etalon.perf.operator_roofline:OperatorRooflinePerfModel.from_spec")
raw("perf_model").register("profiled", "etalon.perf.profiled:ProfiledPerfModel.from_spec")


def build_perf_model(spec: dict, *, where: str = "perf model") -> PerfModel:
    """``spec["kind"]`` picks the implementation; the other keys are its parameters."""
    spec = dict(spec)
    kind = spec.pop("kind", "parametric")
    models = registry("perf_model")
    if kind not in models:
        from etalon.cli_errors import UserError

        raise UserError(f"{where}: unknown kind {kind!r}; valid: {', '.join(models.names())}")
    return models.get(kind)(spec, where=where)


def load_perf_spec(path: str | Path) -> dict:
    """Reads a perf-model description from a JSON or YAML file, with one-line errors."""
    return load_mapping(path, "perf-model file")
