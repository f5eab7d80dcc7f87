"""The simulator's configuration: one strict dataclass behind both the CLI flags and config files.

It *contains* the shared configs — what is deployed (``DeploymentConfig``), how steps are timed
(``PerfModelConfig``), the engine (``EngineConfig``), the deadlines, the outputs and the
workload — and adds only what is the simulator's own: replicas and routing, disaggregated
pools, the run window. Every setting is a flag (``--num-replicas``) and a file key
(``num_replicas`` or ``num-replicas``); workload settings sit under ``workload:`` in a file.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etalon.cli_errors import UserError
from etalon.engine.config import EngineConfig
from etalon.estimator.deployment_config import DeploymentConfig
from etalon.metrics.intervals import IntervalConfig
from etalon.metrics.targets import DeadlineTargets
from etalon.options import embed, from_mapping, option, to_mapping
from etalon.perf.config import PerfModelConfig
from etalon.report.outputs import OutputConfig
from etalon.workload.config import WorkloadConfig


@dataclass
class DisaggregationConfig:
    """Separate prefill and decode pools joined by a KV-transfer link."""

    disaggregated: bool = option(False, "separate prefill and decode pools joined by a "
                                        "KV-transfer link")
    prefill_hardware: str | None = option(None, "prefill pool accelerator (none: --hardware)")
    decode_hardware: str | None = option(None, "decode pool accelerator (none: --hardware)")
    prefill_replicas: int = option(1, "prefill pool replicas")
    decode_replicas: int = option(1, "decode pool replicas")
    prefill_tp: int | None = option(None, "prefill pool TP (none: --tp)")
    decode_tp: int | None = option(None, "decode pool TP (none: --tp)")
    transfer_bandwidth: float = option(50.0, "KV-transfer link bandwidth, GB/s")
    transfer_latency: float = option(1.0, "KV-transfer link latency, ms")


@dataclass
class SimConfig:
    deployment: DeploymentConfig = embed(DeploymentConfig, title="deployment")
    num_replicas: int = option(1, "data-parallel replicas (aggregated mode)")
    router: str = option("round_robin", "how requests are spread over replicas",
                         choices="router")
    kv_bytes_per_token: float | None = option(None, "override KV bytes per token (none: from "
                                                    "--model)")
    perf: PerfModelConfig = embed(PerfModelConfig, title="timing (perf model)")
    engine: EngineConfig = embed(EngineConfig, title="engine (per replica)")
    disaggregation: DisaggregationConfig = embed(DisaggregationConfig,
                                                 title="disaggregated serving")
    replay: str | None = option(None, "replay a live run's records (its directory, "
                                      "requests.jsonl or requests.parquet: its arrivals and "
                                      "lengths)", metavar="PATH")
    duration: float | None = option(None, "only requests arriving before this many seconds")
    warm_up: float = option(0.0, "leave requests arriving before this many seconds out of the "
                                 "summary")
    deadlines: DeadlineTargets = embed(DeadlineTargets, title="deadlines (SLOs)")
    intervals: IntervalConfig = embed(IntervalConfig, title="intervals (error bars)")
    outputs: OutputConfig = embed(OutputConfig, title="outputs",
                                  defaults={"output_dir": "simulator_output"})
    workload: WorkloadConfig = embed(WorkloadConfig, section=True, title="workload")

    @classmethod
    def of(cls, **settings: Any) -> SimConfig:
        """A config from flat setting names, as a file would give them (``tp=2``)."""
        return from_mapping(cls, settings, "simulator config")

    def validate(self) -> SimConfig:
        d = self.disaggregation
        for name, value in (("tp", self.deployment.tp), ("pp", self.deployment.pp),
                            ("num_replicas", self.num_replicas),
                            ("prefill_replicas", d.prefill_replicas),
                            ("decode_replicas", d.decode_replicas)):
            if value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if d.transfer_bandwidth <= 0 or d.transfer_latency < 0:
            raise UserError("--transfer-bandwidth must be > 0 and --transfer-latency >= 0")
        if self.warm_up < 0 or (self.duration is not None and self.duration <= self.warm_up):
            raise UserError("--duration must be greater than --warm-up (>= 0)")
        self.perf.validate()
        self.engine.validate()
        self.deadlines.validate()
        self.intervals.validate()
        if not self.replay:
            self.workload.validate()
        return self

    def to_dict(self) -> dict:
        return to_mapping(self)
