"""The simulator page's work: a deployment and a workload from the form become a ``SimConfig``
(the same strict config ``etalon simulate`` reads, so an unknown or ill-typed setting is a
one-line error), ``etalon.simulate.simulate`` runs it into a folder, and the folder's HTML report
comes from ``etalon.report.html.render``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etalon.cli_errors import UserError
from etalon.options import from_mapping
from etalon.simulator.config import SimConfig


@dataclass
class SimForm:
    """The simulator form: what most what-if questions change. ``extra``: any other
    ``etalon simulate`` setting by its file key (``{"scheduler": "sarathi"}``)."""

    model: str = "llama-3.1-8b"
    hardware: str = "h100-sxm"
    tp: int = 1
    num_replicas: int = 1
    qps: float = 4.0
    num_requests: int = 100
    prefill_tokens: int = 512
    decode_tokens: int = 128
    seed: int = 42
    output_dir: str = "simulator_output"
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """The form as a simulator config file would hold it; ``extra`` goes on top (its
        ``workload`` keys into the workload section)."""
        extra = dict(self.extra)
        workload = extra.pop("workload", None) or {}
        if not isinstance(workload, Mapping):
            raise UserError("more settings: 'workload' must be a mapping of workload settings")
        return {
            "model": self.model, "hardware": self.hardware, "tp": self.tp,
            "num_replicas": self.num_replicas, "output_dir": self.output_dir, **extra,
            "workload": {
                "seed": self.seed,
                "max_num_completed_requests": self.num_requests,
                "request_interval_generator_provider": "poisson",
                "poisson_request_interval_generator_qps": self.qps,
                "request_length_generator_provider": "fixed",
                "fixed_request_generator_prefill_tokens": self.prefill_tokens,
                "fixed_request_generator_decode_tokens": self.decode_tokens,
                **workload,
            },
        }


@dataclass
class SimRun:
    """A finished simulation: its config, summary, folder and that folder's report page."""

    config: SimConfig
    summary: dict
    folder: Path
    report_html: str

    def headline(self) -> list[tuple[str, str]]:
        """The numbers the page shows first (from summary.json's sections)."""
        s = self.summary
        counts, tput, lat = s.get("counts", {}), s.get("throughput", {}), s.get("latency", {})
        rows = [("requests completed", f"{counts.get('num_completed')} of {counts.get('num_requests')}"),
                ("requests/s", f"{tput.get('requests_per_s', 0):.2f}"),
                ("output tokens/s", f"{tput.get('output_tokens_per_s', 0):,.0f}")]
        for key, name in (("ttft", "TTFT"), ("tbt", "TBT"), ("e2e_latency", "E2E")):
            part = lat.get(key) or {}
            for q in ("p50", "p99"):
                if isinstance(part.get(q), (int, float)):
                    rows.append((f"{name} {q}", f"{part[q] * 1e3:.1f} ms"))
        return rows


def parse_extra(text: str) -> dict[str, Any]:
    """The form's "more settings" box: a JSON object of ``etalon simulate`` config keys."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"more settings: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UserError("more settings: expected a JSON object such as {\"scheduler\": \"sarathi\"}")
    return data


def build_config(settings: Mapping[str, Any]) -> SimConfig:
    """The strict simulator config of ``settings`` (a ``ConfigError`` names a bad key)."""
    return from_mapping(SimConfig, dict(settings), "simulator form").validate()


def run(form: SimForm | Mapping[str, Any]) -> SimRun:
    """Runs the simulation into its folder (report.html included) and renders the report."""
    from etalon.report.html import render
    from etalon.simulate import simulate

    cfg = build_config(form.settings() if isinstance(form, SimForm) else form)
    cfg.outputs.should_use_given_dir = True  # the page must know the folder it shows
    summary = simulate(cfg, quiet=True, report=True)
    folder = Path(cfg.outputs.output_dir).resolve()
    return SimRun(cfg, summary, folder, render([folder]))
