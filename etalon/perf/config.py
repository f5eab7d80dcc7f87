"""How a command picks its step-time model: a fitted profile, a perf-model file, or a roofline.

``--perf-model-kind`` picks which analytic model a ``--model`` on a ``--hardware`` gets: the global
roofline or the per-operator one.

Declared once for ``etalon serve``, ``etalon simulate`` and the estimator's latency command. The
roofline efficiencies' defaults are ``RooflinePerfModel``'s own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from etalon.cli_errors import UserError
from etalon.options import embed, option
from etalon.perf.base import PerfModel


def _roofline_default(name: str) -> float:
    from etalon.perf.roofline import RooflinePerfModel

    return next(f.default for f in fields(RooflinePerfModel) if f.name == name)


# The perf-model kinds built from a model and a hardware spec alone (no file).
ANALYTIC_KINDS = ("roofline", "operator_roofline")


@dataclass
class RooflineEfficiency:
    """What fraction of the hardware's peaks a roofline assumes, and its fixed step cost."""

    mfu: float = option(_roofline_default("mfu"), "achieved fraction of peak FLOP/s (roofline)")
    mbu: float = option(_roofline_default("mbu"),
                        "achieved fraction of peak memory bandwidth (roofline)")
    step_overhead_ms: float = option(_roofline_default("step_overhead") * 1e3,
                                     "fixed time per engine step, ms (roofline)")

    def roofline_kwargs(self) -> dict:
        return {"mfu": self.mfu, "mbu": self.mbu, "step_overhead": self.step_overhead_ms / 1e3}


@dataclass
class PerfModelConfig:
    """The timing source: ``--profile``, ``--perf-model-file``, else a roofline of the model on
    the hardware when both are known, else the parametric defaults."""

    profile: str | None = option(None, "fitted profile (JSON): time steps with it",
                                 metavar="FILE")
    perf_model_file: str | None = option(None, "perf-model description (JSON/YAML, {kind: "
                                               "parametric|roofline|operator_roofline|profiled, "
                                               "...})",
                                         metavar="FILE")
    perf_model_kind: str = option("roofline", "analytic model of --model on --hardware: "
                                              "roofline (global MFU/MBU) or operator_roofline "
                                              "(per-operator efficiencies and kernel floors)",
                                  choices=ANALYTIC_KINDS)
    efficiency: RooflineEfficiency = embed(RooflineEfficiency)

    def validate(self) -> PerfModelConfig:
        if self.profile and self.perf_model_file:
            raise UserError("give --profile or --perf-model-file, not both")
        if self.perf_model_kind not in ANALYTIC_KINDS:
            raise UserError(f"--perf-model-kind: unknown {self.perf_model_kind!r}; valid: "
                            f"{', '.join(ANALYTIC_KINDS)}")
        if self.perf_model_kind != "roofline" and (self.profile or self.perf_model_file):
            raise UserError("--perf-model-kind picks the analytic model of --model/--hardware; "
                            "a --profile or --perf-model-file names its own kind")
        if self.perf_model_kind != "roofline" and self.efficiency != RooflineEfficiency():
            raise UserError("--mfu/--mbu/--step-overhead-ms set the global roofline; "
                            f"--perf-model-kind {self.perf_model_kind} takes its efficiencies from "
                            "a --perf-model-file (etalon profile fit-roofline --kind operator writes one)")
        return self

    def build(self, *, model: str | None = None, hardware: str | None = None, tp: int = 1,
              pp: int = 1, dtype: str | None = None, kv_dtype: str | None = None) -> PerfModel:
        from etalon.perf.registry import build_perf_model, load_perf_spec

        if self.profile:
            return build_perf_model({"kind": "profiled", "path": self.profile}, where=self.profile)
        if self.perf_model_file:
            return build_perf_model(load_perf_spec(self.perf_model_file),
                                    where=self.perf_model_file)
        if model and hardware:
            self.validate()
            if self.perf_model_kind == "roofline":
                from etalon.perf.roofline import RooflinePerfModel

                return RooflinePerfModel(model, hardware, tp=tp, pp=pp, dtype=dtype,
                                         kv_dtype=kv_dtype, **self.efficiency.roofline_kwargs())
            return build_perf_model({"kind": self.perf_model_kind, "model": model,
                                     "hardware": hardware, "tp": tp, "pp": pp, "dtype": dtype,
                                     "kv_dtype": kv_dtype}, where="--perf-model-kind")
        if model or hardware:
            raise UserError("roofline timing needs both --model and --hardware "
                            "(or give --profile / --perf-model-file)")
        return build_perf_model({"kind": "parametric"})
