"""Memory and capacity planning: weights, KV cache, activations and the KV pool per device.

The KV pool follows vLLM's own startup accounting (``vllm_memory`` has each term and the vLLM
function it mirrors), so the numbers here can be checked against its log lines "Available KV
cache memory" and "GPU KV cache size":

    pool = total device memory x gpu_memory_utilization
           - weights - torch peak of the profile run - non-torch memory - CUDA-graph memory

where the profile run pushes ``max_num_batched_tokens`` tokens through the model and samples
``max_num_seqs`` sequences, and CUDA-graph memory is reserved from vLLM 0.21 on unless it runs
with ``--enforce-eager``. The pool is split into blocks of ``block_size`` tokens over all of a
device's layers; a request's footprint caps sliding-window layers at their window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import NamedTuple

from etalon.engine.config import EngineConfig
from etalon.estimator.deployment_config import DeploymentConfig
from etalon.estimator.errors import EstimatorError
from etalon.estimator.hardware import GiB, HardwareSpec, load_hardware
from etalon.estimator.layout import ParallelConfig, validate_layout
from etalon.estimator.models import load_model
from etalon.estimator.shards import StageShard, kv_bytes_per_token_layer, resolve_dtypes, stage_shards
from etalon.estimator.spec import ModelSpec
from etalon.estimator.vllm_memory import (
    LATEST,
    AccountingProfile,
    accounting_profile,
    activation_dtype_bytes,
    cuda_graph_bytes,
    non_torch_bytes,
    profile_run_peak_bytes,
)


def _default(cls: type, name: str):
    return next(f.default for f in fields(cls) if f.name == name)


@dataclass(frozen=True)
class ServingConfig:
    """The engine settings that decide how much memory is left for the KV cache.

    The engine limits are ``EngineConfig``'s (vLLM's names here: ``max_num_batched_tokens`` is
    its ``max_batched_tokens``, ``max_num_seqs`` its ``max_batch_size``) and the utilization
    ``DeploymentConfig``'s, defaults included; build one from those with ``from_engine``.
    ``vllm_version`` picks the release's accounting (``vllm_memory.PROFILES``; default: the
    newest), ``enforce_eager`` says vLLM captures no CUDA graphs. ``non_torch_gib`` (memory
    outside torch on one device) and ``comm_buffer_gib`` (added per device under TP) override
    the release's measured values when given.
    """

    gpu_memory_utilization: float = _default(DeploymentConfig, "gpu_memory_utilization")
    block_size: int = _default(EngineConfig, "block_size")
    max_num_batched_tokens: int = _default(EngineConfig, "max_batched_tokens")
    max_num_seqs: int = _default(EngineConfig, "max_batch_size")
    vllm_version: str = LATEST
    enforce_eager: bool = False
    non_torch_gib: float | None = None
    comm_buffer_gib: float | None = None

    @classmethod
    def from_engine(cls, engine: EngineConfig, gpu_memory_utilization: float | None = None,
                    **extra) -> ServingConfig:
        """The memory-relevant settings of ``engine`` (block size, step token budget, sequences
        per step) at ``gpu_memory_utilization`` (default: ``DeploymentConfig``'s); ``extra``:
        ``vllm_version``, ``enforce_eager``, ``non_torch_gib``, ``comm_buffer_gib``."""
        if gpu_memory_utilization is None:
            gpu_memory_utilization = cls.gpu_memory_utilization
        return cls(gpu_memory_utilization=gpu_memory_utilization, block_size=engine.block_size,
                   max_num_batched_tokens=engine.max_batched_tokens,
                   max_num_seqs=engine.max_batch_size, **extra)

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise EstimatorError(f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        for key in ("block_size", "max_num_batched_tokens", "max_num_seqs"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise EstimatorError(f"--{key.replace('_', '-')} must be a positive integer, got {value!r}")
        for key in ("non_torch_gib", "comm_buffer_gib"):
            value = getattr(self, key)
            if value is not None and not value >= 0:
                raise EstimatorError(f"{key} must be >= 0, got {value!r}")
        accounting_profile(self.vllm_version)  # raises on a malformed or unmodelled version

    @property
    def profile(self) -> AccountingProfile:
        """The accounting of ``vllm_version``."""
        return accounting_profile(self.vllm_version)

    @property
    def reserves_cuda_graphs(self) -> bool:
        return self.profile.reserves_cuda_graphs and not self.enforce_eager


class KVCapacity(NamedTuple):
    """What ``kv_cache_capacity`` returns: the KV pool of the most constrained device in bytes
    (what vLLM logs per worker) and the number of KV blocks the engine gets (every device of a
    replica holds the same blocks for its own layers/heads)."""

    kv_pool_bytes: float
    num_blocks: int


# --- whole-model figures ---------------------------------------------------------------------------

def weight_bytes(model: ModelSpec, dtype: str | None = None) -> float:
    """Bytes of all weights on one device (no sharding)."""
    return sum(s.weight_bytes for s in stage_shards(model, dtype=dtype))


def kv_bytes_per_token(model: ModelSpec, kv_dtype: str | None = None) -> float:
    """KV bytes one token adds over all layers, unsharded and uncapped by sliding windows:
    ``2 * L * n_kv * head_dim * b`` (MHA/GQA/MQA) or ``L * (kv_lora_rank + qk_rope_head_dim) * b``
    (MLA)."""
    _, kv = resolve_dtypes(model, None, kv_dtype)
    return model.num_layers * kv_bytes_per_token_layer(model, kv)


def kv_bytes_per_request(model: ModelSpec, context_len: int, kv_dtype: str | None = None) -> float:
    """KV bytes of one request holding ``context_len`` tokens, sliding-window layers capped."""
    _, kv = resolve_dtypes(model, None, kv_dtype)
    per_layer = kv_bytes_per_token_layer(model, kv)
    return sum(per_layer * (context_len if w is None else min(context_len, w)) for w in model.layer_windows)


def activation_bytes(model: ModelSpec, config: ServingConfig, tp: int = 1, *, ep: int = 1,
                     dtype: str | None = None, last_stage: bool = True) -> float:
    """Torch peak of vLLM's profile run on one device (``gpu_model_runner.profile_run``): the
    larger of a ``max_num_batched_tokens`` forward pass and the sampling of ``max_num_seqs``
    sequences (last pipeline stage only), plus the persistent fused-MoE workspace. The terms
    are in ``vllm_memory``; ``dtype`` is the weight format (it sets the activation dtype when
    it is a plain float format)."""
    weight, _ = resolve_dtypes(model, dtype, None)
    a = activation_dtype_bytes(model, weight)
    return profile_run_peak_bytes(model, config.max_num_batched_tokens, config.max_num_seqs, tp, ep, a,
                                  config.profile, last_stage, mxfp4_experts=weight.name == "mxfp4")


# --- per-device planning ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StageMemory:
    """Memory of one device of one pipeline stage, in bytes. ``overhead`` is everything besides
    weights, activations and the KV pool: ``non_torch + cuda_graph``."""

    layers: int
    weights: float
    activation: float
    overhead: float
    kv_pool: float
    kv_bytes_per_token: float
    num_blocks: int
    non_torch: float = 0.0
    cuda_graph: float = 0.0


@dataclass(frozen=True)
class MemoryPlan:
    """Per-device memory of a layout and what it buys. Sizes in GiB unless named ``_bytes``;
    "device" figures are the most constrained device (the stage with the smallest pool)."""

    model: str
    hardware: str
    layout: ParallelConfig
    dtype: str
    kv_dtype: str
    gpu_memory_utilization: float
    device_memory_gib: float
    budget_gib: float
    weights_gib: float
    activation_gib: float
    overhead_gib: float
    kv_pool_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    vllm_accounting: str
    model_weights_gib: float
    kv_bytes_per_token: float
    kv_bytes_per_token_per_device: float
    block_size: int
    num_blocks: int
    token_capacity: int
    context_len: int
    kv_per_request_gib: float
    max_concurrency: float
    max_concurrency_all_replicas: float
    batch_size: int
    required_gib: float
    fits_weights: bool
    fits_request: bool
    fits_batch: bool
    stages: tuple[StageMemory, ...] = field(default=())

    def to_dict(self) -> dict:
        out = asdict(self)
        out["layout"] = asdict(self.layout)
        out["total_devices"] = self.layout.gpus
        return out


def _stage_memory(shard: StageShard, model: ModelSpec, hardware: HardwareSpec, layout: ParallelConfig,
                  dtype: str | None, config: ServingConfig) -> StageMemory:
    """One device of one stage as vLLM's ``determine_available_memory`` sees it."""
    budget = hardware.memory_bytes * config.gpu_memory_utilization
    activation = activation_bytes(model, config, layout.tp, ep=layout.ep, dtype=dtype,
                                  last_stage=shard.has_lm_head)
    non_torch = non_torch_bytes(layout.tp, config.profile, config.non_torch_gib, config.comm_buffer_gib)
    graphs = 0.0
    if config.reserves_cuda_graphs:
        a = activation_dtype_bytes(model, resolve_dtypes(model, dtype, None)[0])
        graphs = cuda_graph_bytes(model, len(shard.layers), layout.tp, config.max_num_seqs,
                                  config.max_num_batched_tokens, a)
    overhead = non_torch + graphs
    pool = budget - shard.weight_bytes - activation - overhead
    per_token = shard.kv_bytes_per_token_total
    blocks = max(int(pool // (per_token * config.block_size)), 0) if pool > 0 else 0
    return StageMemory(len(shard.layers), shard.weight_bytes, activation, overhead, pool, per_token, blocks,
                       non_torch, graphs)


def _stages(model: ModelSpec, hardware: HardwareSpec, layout: ParallelConfig, dtype: str | None,
            kv_dtype: str | None, config: ServingConfig) -> tuple[list[StageShard], list[StageMemory]]:
    validate_layout(model, layout)
    shards = stage_shards(model, layout.tp, layout.pp, layout.ep, dtype, kv_dtype)
    return shards, [_stage_memory(s, model, hardware, layout, dtype, config) for s in shards]


def kv_cache_capacity(
    model: ModelSpec | str,
    hardware: HardwareSpec | str,
    tp: int = 1,
    pp: int = 1,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    gpu_memory_utilization: float = ServingConfig.gpu_memory_utilization,
    block_size: int = ServingConfig.block_size,
    *,
    ep: int = 1,
    dp: int = 1,
    config: ServingConfig | None = None,
) -> KVCapacity:
    """KV pool bytes and number of KV blocks of one replica, as vLLM would size them.

    ``config`` (when given) supplies the profile-run settings; its utilization and block size
    are replaced by the explicit arguments. A negative pool means the weights do not fit.
    """
    model, hardware = load_model(model), load_hardware(hardware)
    config = replace(config or ServingConfig(), gpu_memory_utilization=gpu_memory_utilization,
                     block_size=block_size)
    _, stages = _stages(model, hardware, ParallelConfig(tp=tp, pp=pp, dp=dp, ep=ep),
                        dtype, kv_dtype, config)
    worst = min(stages, key=lambda s: (s.num_blocks, s.kv_pool))
    return KVCapacity(worst.kv_pool, worst.num_blocks)


def plan_memory(
    model: ModelSpec | str,
    hardware: HardwareSpec | str,
    layout: ParallelConfig | None = None,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    config: ServingConfig | None = None,
    context_len: int | None = None,
    batch_size: int = 1,
) -> MemoryPlan:
    """The full per-device memory picture of one layout.

    ``context_len`` (default: the model's maximum) sizes one request; ``batch_size`` requests of
    that length must fit for ``fits_batch``. Concurrency counts whole requests per replica.
    """
    model, hardware = load_model(model), load_hardware(hardware)
    layout = layout or ParallelConfig()
    config = config or ServingConfig()
    context_len = model.max_context if context_len is None else context_len
    if context_len < 1:
        raise EstimatorError(f"--context-len must be positive, got {context_len}")
    if batch_size < 1:
        raise EstimatorError(f"--batch-size must be positive, got {batch_size}")
    weight, kv = resolve_dtypes(model, dtype, kv_dtype)
    shards, stages = _stages(model, hardware, layout, dtype, kv_dtype, config)
    per_request = [s.kv_bytes_for_context(context_len) for s in shards]
    # The most constrained stage sets what a replica can hold.
    idx = min(range(len(stages)), key=lambda i: max(stages[i].kv_pool, 0.0) / per_request[i])
    worst = stages[idx]
    concurrency = max(worst.kv_pool, 0.0) / per_request[idx]
    budget = hardware.memory_bytes * config.gpu_memory_utilization
    required = max(st.weights + st.activation + st.overhead + batch_size * r for st, r in zip(stages, per_request))
    num_blocks = min(st.num_blocks for st in stages)
    return MemoryPlan(
        model=model.name,
        hardware=hardware.key,
        layout=layout,
        dtype=weight.name,
        kv_dtype=kv.name,
        gpu_memory_utilization=config.gpu_memory_utilization,
        device_memory_gib=hardware.memory_bytes / GiB,
        budget_gib=budget / GiB,
        weights_gib=worst.weights / GiB,
        activation_gib=worst.activation / GiB,
        overhead_gib=worst.overhead / GiB,
        kv_pool_gib=worst.kv_pool / GiB,
        non_torch_gib=worst.non_torch / GiB,
        cuda_graph_gib=worst.cuda_graph / GiB,
        vllm_accounting=config.profile.label + (" (--enforce-eager)" if config.enforce_eager else ""),
        model_weights_gib=weight_bytes(model, dtype) / GiB,
        kv_bytes_per_token=kv_bytes_per_token(model, kv.name),
        kv_bytes_per_token_per_device=worst.kv_bytes_per_token,
        block_size=config.block_size,
        num_blocks=num_blocks,
        token_capacity=num_blocks * config.block_size,
        context_len=context_len,
        kv_per_request_gib=kv_bytes_per_request(model, context_len, kv.name) / GiB,
        max_concurrency=concurrency,
        max_concurrency_all_replicas=concurrency * layout.dp,
        batch_size=batch_size,
        required_gib=required / GiB,
        fits_weights=all(st.kv_pool > 0 for st in stages),
        fits_request=concurrency >= 1.0,
        fits_batch=concurrency >= batch_size,
        stages=tuple(stages),
    )


def max_concurrency_curve(
    model: ModelSpec | str,
    hardware: HardwareSpec | str,
    context_lens: list[int],
    layout: ParallelConfig | None = None,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    config: ServingConfig | None = None,
) -> list[float]:
    """Max concurrent requests per replica at each context length (whole requests, floored)."""
    model, hardware = load_model(model), load_hardware(hardware)
    layout = layout or ParallelConfig()
    shards, stages = _stages(model, hardware, layout, dtype, kv_dtype, config or ServingConfig())
    out = []
    if min(context_lens, default=1) < 1:
        raise EstimatorError("context lengths must be positive")
    for ctx in context_lens:
        c = min(max(st.kv_pool, 0.0) / s.kv_bytes_for_context(ctx) for st, s in zip(stages, shards))
        out.append(float(math.floor(c)))
    return out
