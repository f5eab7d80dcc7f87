"""The settings of each ``etalon.estimate`` subcommand, declared once as typed configs.

Every field is a flag and a config-file key (``etalon.options``). The shared pieces are embedded,
not declared again: the deployment (model, hardware, dtypes, TP/PP, memory utilization) is
``DeploymentConfig``, the engine limits that size vLLM's profile run and KV blocks are
``EngineConfig``'s (their vLLM spellings ``--max-num-seqs`` / ``--max-num-batched-tokens`` are its
aliases), and the roofline efficiencies are ``RooflineEfficiency``'s, defaults included.

``validate()`` checks what a command needs before it runs (``--model``, ``--hardware``, list
values from a file) and returns the config; the numbers themselves are checked where they are
used, with the same one-line ``EstimatorError``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from etalon.engine.config import EngineConfig
from etalon.estimator.deployment_config import DeploymentConfig
from etalon.estimator.distributed import ROUTES, SPLITS
from etalon.estimator.errors import EstimatorError
from etalon.options import check_required, embed, option
from etalon.perf.config import RooflineEfficiency

if TYPE_CHECKING:
    from etalon.estimator.layout import ParallelConfig
    from etalon.estimator.memory import ServingConfig

# EngineConfig fields the estimator has no use for: it models vLLM's own scheduler and sizes the
# KV cache itself, without prefix caching.
ENGINE_UNUSED = ("scheduler", "chunk_size", "num_kv_blocks", "batch_window",
                 "enable_prefix_caching")


# --- list flags: "128,256,512" -----------------------------------------------------------------

def _number_list(text: str, kind: type, noun: str, low: float, adjective: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {noun}, got '{text}'") from None
    if not values or min(values) < low:
        raise argparse.ArgumentTypeError(f"expected {adjective} {noun}, got '{text}'")
    return values


def int_list(text: str) -> list[int]:
    return _number_list(text, int, "integers", 1, "positive")


def float_list(text: str) -> list[float]:
    return _number_list(text, float, "numbers", 0, "non-negative")


def str_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return values


def _check_list(name: str, values: list, lowest: float | None) -> None:
    """What the list parsers check on the command line, for values that came from a file."""
    if not values:
        raise EstimatorError(f"--{name.replace('_', '-')} must not be empty")
    if lowest is not None and min(values) < lowest:
        kind = "positive integers" if lowest == 1 else "non-negative numbers"
        raise EstimatorError(f"--{name.replace('_', '-')}: expected {kind}, got "
                             f"{','.join(map(str, values))}")


# --- shared pieces -----------------------------------------------------------------------------

@dataclass
class ReportOptions:
    """How a command shows its result."""

    json: bool = option(False, "print machine-readable JSON instead of tables")
    output_dir: str | None = option(None, "write PNG plots into this folder (none: no plots)")


@dataclass
class DeviceCommandConfig:
    """What ``memory``, ``latency`` and ``plan`` share: a model on a device under a layout, the
    batch, and the engine limits of vLLM's startup profile run."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("model", "hardware")

    deployment: DeploymentConfig = embed(DeploymentConfig)
    dp: int = option(1, "data-parallel replicas")
    ep: int = option(1, "expert-parallel size (MoE; must divide TP x DP)")
    context_len: int | None = option(None, "tokens per request (none: the model's maximum "
                                           "context)")
    batch_size: int = option(1, "concurrent requests in the batch")
    engine: EngineConfig = embed(EngineConfig, exclude=ENGINE_UNUSED)
    vllm_version: str = option("latest", "vLLM release whose startup memory accounting to follow, "
                                         "0.10 or later (latest: the newest modelled, 0.21+)")
    enforce_eager: bool = option(False, "vLLM runs with --enforce-eager: no CUDA graphs, so no "
                                        "CUDA-graph memory is reserved")
    report: ReportOptions = embed(ReportOptions)

    def validate(self) -> DeviceCommandConfig:
        check_required(self)
        self.serving()  # a malformed --vllm-version is a one-line error before any work
        return self

    def layout(self) -> ParallelConfig:
        from etalon.estimator.layout import ParallelConfig

        d = self.deployment
        return ParallelConfig(tp=d.tp, pp=d.pp, dp=self.dp, ep=self.ep)

    def serving(self) -> ServingConfig:
        from etalon.estimator.memory import ServingConfig

        return ServingConfig.from_engine(self.engine, self.deployment.gpu_memory_utilization,
                                         vllm_version=self.vllm_version, enforce_eager=self.enforce_eager)


# --- one config per subcommand -----------------------------------------------------------------

@dataclass
class MemoryConfig(DeviceCommandConfig):
    """``memory``: per-device memory, KV pool, blocks and max concurrency."""


@dataclass
class LatencyConfig(DeviceCommandConfig):
    """``latency``: FLOPs and roofline TTFT / TPOT / throughput."""

    context_len: int = option(1024, "prompt tokens per request")
    output_len: int = option(256, "generated tokens per request")
    efficiency: RooflineEfficiency = embed(RooflineEfficiency)
    micro_batches: int | None = option(None, "batches in flight under PP (none: PP)")
    operators: bool = option(False, "also time one prefill step and one decode step with the "
                                    "operator roofline and print each operator's share")


@dataclass
class PlanConfig(DeviceCommandConfig):
    """``plan``: valid TP sizes, minimum devices and a recommended TP x PP (x EP)."""

    context_len: int | None = option(None, "tokens per request to plan for (none: the model's "
                                           "maximum context)")
    concurrency: int = option(1, "concurrent requests of --context-len the layout must hold")
    devices_per_node: int | None = option(None, "devices per node (none: the hardware's)")


@dataclass
class DistributedConfig:
    """``distributed``: a Petals-style pipeline over internet-connected servers, with sweeps.

    The servers' hardware is ``--server-hardware`` (alias ``--hardware``), so the deployment's
    own hardware, TP/PP and memory utilization are left out.
    """

    REQUIRED: ClassVar[tuple[str, ...]] = ("model",)

    deployment: DeploymentConfig = embed(
        DeploymentConfig, exclude=("hardware", "tp", "pp", "gpu_memory_utilization"))
    servers: int = option(4, "number of servers")
    server_hardware: list[str] = option(
        default_factory=lambda: ["rtx-4090"], parse=str_list, aliases=("--hardware",),
        help="server GPU types, comma-separated, cycled over servers")
    client_hardware: str = option("cpu-16core", "device running the embeddings and LM head")
    rtt_ms: float = option(50.0, "round-trip time between parties")
    bandwidth_mbps: float = option(100.0, "link bandwidth both ways, Mbit/s")
    upload_mbps: float | None = option(None, "upload bandwidth (none: --bandwidth-mbps)")
    download_mbps: float | None = option(None, "download bandwidth (none: --bandwidth-mbps)")
    route: str = option("chain", "chain: server to server (N+1 hops); client: via the client "
                                 "(2N hops)", choices=sorted(ROUTES))
    split: str = option("even", "blocks per server: even, or memory (proportional to device "
                                "memory)", choices=sorted(SPLITS))
    batch_size: int = option(1, "sequences decoded together")
    seq_lens: list[int] = option(default_factory=lambda: [128, 256, 512, 1024, 2048, 4096, 8192],
                                 parse=int_list, help="sequence lengths, comma-separated")
    efficiency: RooflineEfficiency = embed(RooflineEfficiency, exclude=("step_overhead_ms",))
    network_efficiency: float = option(0.8, "fraction of nominal link bandwidth achieved")
    sweep_servers: list[int] = option(default_factory=lambda: [2, 4, 8, 16], parse=int_list,
                                      help="server counts to compare, comma-separated")
    sweep_hardware: list[str] = option(
        default_factory=lambda: ["rtx-2060", "rtx-4060", "rtx-4070-ti", "rtx-4090"],
        parse=str_list, help="server GPU types to compare, comma-separated")
    sweep_rtt_ms: list[float] = option(default_factory=lambda: [5.0, 25.0, 50.0, 100.0, 200.0],
                                       parse=float_list, help="RTTs to compare, comma-separated")
    sweep_bandwidth_mbps: list[float] = option(
        default_factory=lambda: [10.0, 100.0, 1000.0], parse=float_list,
        help="bandwidths to compare, comma-separated")
    report: ReportOptions = embed(ReportOptions)

    def validate(self) -> DistributedConfig:
        check_required(self)
        for name, lowest in (("seq_lens", 1), ("sweep_servers", 1), ("sweep_rtt_ms", 0),
                             ("sweep_bandwidth_mbps", 0)):
            _check_list(name, getattr(self, name), lowest)
        for name in ("server_hardware", "sweep_hardware"):
            _check_list(name, getattr(self, name), None)
        for name, choices in (("route", ROUTES), ("split", SPLITS)):
            if getattr(self, name) not in choices:
                raise EstimatorError(f"unknown --{name} '{getattr(self, name)}'; valid: "
                                     f"{', '.join(sorted(choices))}")
        return self


@dataclass
class CatalogConfig:
    """``catalog``: the built-in models and hardware."""

    report: ReportOptions = embed(ReportOptions, exclude=("output_dir",))

    def validate(self) -> CatalogConfig:
        return self
