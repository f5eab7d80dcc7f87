"""The simulator's configuration: one strict dataclass behind both the CLI flags and config files.

Every field is a flag (``--num-replicas``) and a file key (``num_replicas`` or ``num-replicas``);
workload options sit under ``workload:`` in a file. Unknown keys are errors, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

from etalon.cli_errors import UserError

import argparse
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path


from etalon.config_files import load_mapping
from etalon.engine import EngineConfig
from etalon.workload.config import WorkloadConfig


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class SimConfig:
    # deployment
    model: str | None = _f(None, "model: catalog name or config.json path (roofline timing, KV size)")
    hardware: str | None = _f(None, "accelerator from the hardware catalog, e.g. h100-sxm")
    tp: int = _f(1, "tensor-parallel degree per replica")
    pp: int = _f(1, "pipeline-parallel degree per replica")
    num_replicas: int = _f(1, "data-parallel replicas (aggregated mode)")
    router: str = _f("round_robin", "round_robin | least_outstanding | random")
    dtype: str | None = _f(None, "weight dtype (default: the model's)")
    kv_dtype: str | None = _f(None, "KV-cache dtype (default: the activation dtype)")
    gpu_memory_utilization: float = _f(0.9, "fraction of device memory the engine may use")
    mfu: float | None = _f(None, "roofline compute efficiency (default: the roofline's)")
    mbu: float | None = _f(None, "roofline bandwidth efficiency (default: the roofline's)")
    profile: str | None = _f(None, "fitted profile (JSON): time steps with it instead of the roofline")
    perf_model_file: str | None = _f(None, "perf-model description (JSON/YAML, {kind: ...})")
    kv_bytes_per_token: float | None = _f(None, "override KV bytes per token (default: from --model)")
    # engine
    scheduler: str = _f("vllm", "batching policy: vllm | sarathi | orca | static | windowed")
    max_batch_size: int = _f(256, "sequences running at once per replica")
    max_batched_tokens: int = _f(8192, "tokens per step (chunked-prefill budget)")
    chunk_size: int | None = _f(None, "largest prefill chunk per sequence per step")
    block_size: int = _f(16, "tokens per KV block")
    num_kv_blocks: int | None = _f(None, "KV blocks per replica (default: sized from model and hardware, else 4096)")
    batch_window: float = _f(0.0, "seconds the windowed policy waits to fill a batch")
    # disaggregated serving
    disaggregated: bool = _f(False, "separate prefill and decode pools joined by a KV-transfer link")
    prefill_hardware: str | None = _f(None, "prefill pool accelerator (default: --hardware)")
    decode_hardware: str | None = _f(None, "decode pool accelerator (default: --hardware)")
    prefill_replicas: int = _f(1, "prefill pool replicas")
    decode_replicas: int = _f(1, "decode pool replicas")
    prefill_tp: int | None = _f(None, "prefill pool TP (default: --tp)")
    decode_tp: int | None = _f(None, "decode pool TP (default: --tp)")
    transfer_bandwidth: float = _f(50.0, "KV-transfer link bandwidth, GB/s")
    transfer_latency: float = _f(1.0, "KV-transfer link latency, ms")
    # run
    replay: str | None = _f(None, "replay a live run's requests.jsonl (its arrivals and lengths)")
    duration: float | None = _f(None, "only requests arriving before this many seconds")
    warm_up: float = _f(0.0, "leave requests arriving before this many seconds out of the summary")
    ttft_deadline: float | None = _f(None, "TTFT deadline (s) for deadline metrics")
    tbt_deadline: float | None = _f(None, "TBT deadline (s) for deadline metrics")
    output_dir: str = _f("simulator_output", "where results go")
    no_plots: bool = _f(False, "skip PNG plots")
    workload: WorkloadConfig = field(default_factory=WorkloadConfig, metadata={"help": ""})

    def engine_config(self, num_kv_blocks: int) -> EngineConfig:
        return EngineConfig(scheduler=self.scheduler, max_batch_size=self.max_batch_size,
                            max_batched_tokens=self.max_batched_tokens, chunk_size=self.chunk_size,
                            num_kv_blocks=num_kv_blocks, block_size=self.block_size,
                            batch_window=self.batch_window).validate()

    def validate(self) -> "SimConfig":
        for name in ("tp", "pp", "num_replicas", "prefill_replicas", "decode_replicas"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.transfer_bandwidth <= 0 or self.transfer_latency < 0:
            raise UserError("--transfer-bandwidth must be > 0 and --transfer-latency >= 0")
        if self.warm_up < 0 or (self.duration is not None and self.duration <= self.warm_up):
            raise UserError("--duration must be greater than --warm-up (>= 0)")
        if self.profile and self.perf_model_file:
            raise UserError("give --profile or --perf-model-file, not both")
        self.engine_config(self.num_kv_blocks or 1)
        if not self.replay:
            self.workload.validate()
        return self

    def to_dict(self) -> dict:
        return asdict(self)


SIM_FIELDS = [f for f in fields(SimConfig) if f.name != "workload"]


def add_sim_args(parser: argparse.ArgumentParser) -> None:
    """One flag per field; defaults are suppressed so a config file's values survive."""
    g = parser.add_argument_group("simulation")
    for f in SIM_FIELDS:
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f"{f.metadata['help']} (default: {default})"
        if isinstance(default, bool):
            g.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        g.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)


def load_config_file(path: str | Path) -> dict:
    return load_mapping(path, "simulator config")


def config_from_mapping(data: dict, *, where: str) -> SimConfig:
    """Builds a ``SimConfig`` from a file's mapping; unknown keys name themselves."""
    data = {k.replace("-", "_"): v for k, v in data.items()}
    workload = data.pop("workload", None) or {}
    known = {f.name for f in SIM_FIELDS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}")
    if not isinstance(workload, dict):
        raise UserError(f"{where}: 'workload' must be a mapping")
    workload = {k.replace("-", "_"): v for k, v in workload.items()}
    wl_known = {f.name for f in fields(WorkloadConfig)}
    wl_unknown = sorted(set(workload) - wl_known)
    if wl_unknown:
        raise UserError(f"{where}: unknown workload key(s) {wl_unknown}")
    return SimConfig(**data, workload=WorkloadConfig(**workload))
