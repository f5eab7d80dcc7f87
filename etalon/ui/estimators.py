"""The latency and distributed-pipeline pages' numbers: the estimator's own ``latency`` and
``distributed`` commands run on a config built from the form (so the page and
``etalon estimate latency|distributed`` agree by construction), plus the curves the pages plot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from etalon.estimator.command_configs import DistributedConfig, LatencyConfig
from etalon.estimator.commands import run_latency
from etalon.estimator.commands_distributed import run_distributed
from etalon.estimator.latency import estimate_latency
from etalon.options import from_mapping, to_mapping

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Estimate:
    """One estimator command's result as the app uses it: the config (for the history),
    the command's JSON data and the curves to plot (one DataFrame per chart)."""

    kind: str
    config: Any
    data: dict
    charts: dict[str, pd.DataFrame]

    def history_inputs(self) -> dict:
        return to_mapping(self.config)


def latency(settings: Mapping[str, Any]) -> Estimate:
    """``etalon estimate latency`` with ``settings`` (its file keys: model, hardware, tp,
    context_len, output_len, batch_size, mfu, mbu, ...), and decode throughput against the batch
    size, theoretical (MFU = MBU = 1, no step overhead) and with the efficiencies."""
    cfg = from_mapping(LatencyConfig, dict(settings), "latency form").validate()
    report = run_latency(cfg)
    d, eff = cfg.deployment, cfg.efficiency
    common = dict(tp=d.tp, pp=d.pp, dtype=d.dtype, kv_dtype=d.kv_dtype, prompt_len=cfg.context_len,
                  output_len=2, max_num_batched_tokens=cfg.engine.max_batched_tokens,
                  micro_batches=cfg.micro_batches)
    curves = {}
    for label, kwargs in (("theoretical", dict(mfu=1.0, mbu=1.0, step_overhead=0.0)),
                          ("with efficiencies", eff.roofline_kwargs())):
        curves[label] = [estimate_latency(d.model, d.hardware, batch_size=b, **kwargs, **common)
                         .decode_tokens_per_s for b in BATCHES]
    chart = pd.DataFrame(curves, index=pd.Index(BATCHES, name="batch size"))
    return Estimate("estimate latency", cfg, report.data, {"decode tokens/s by batch size": chart})


def distributed(settings: Mapping[str, Any]) -> Estimate:
    """``etalon estimate distributed`` with ``settings`` (model, servers, server_hardware,
    rtt_ms, bandwidth_mbps, seq_lens, sweep_*, ...): one chart of tokens/s against sequence
    length per sweep (servers, GPU, RTT, bandwidth), with efficiencies."""
    cfg = from_mapping(DistributedConfig, dict(settings), "distributed form").validate()
    report = run_distributed(cfg)
    seq_lens = report.data["seq_lens"]
    charts = {}
    for sweep, curves in report.data["sweeps"].items():
        frame = {(value if c["fits"] else f"{value} (does not fit)"): c["with_efficiency"]
                 for value, c in curves.items()}
        charts[f"tokens/s by {sweep}"] = pd.DataFrame(frame, index=pd.Index(seq_lens, name="sequence length"))
    base = [entry["with_efficiency"]["tokens_per_s"] for entry in report.data["latency"]]
    ideal = [entry["theoretical"]["tokens_per_s"] for entry in report.data["latency"]]
    charts["base scenario"] = pd.DataFrame({"theoretical": ideal, "with efficiencies": base},
                                           index=pd.Index(seq_lens, name="sequence length"))
    return Estimate("estimate distributed", cfg, report.data, charts)
