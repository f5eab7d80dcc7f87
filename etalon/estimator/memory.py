"""Memory and capacity planning: weights, KV cache, activations and the KV pool per device.

The KV pool follows vLLM's own accounting at startup, so the numbers here can be checked against
its log line "Available KV cache memory":

    pool = total device memory x gpu_memory_utilization
           - weights - peak activation of the profile run - non-torch memory

where the profile run pushes ``max_num_batched_tokens`` tokens through the model and samples
``max_num_seqs`` sequences. The pool is split into blocks of ``block_size`` tokens over all of a
device's layers; a request's footprint caps sliding-window layers at their window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import NamedTuple

from etalon.engine.config import EngineConfig
from etalon.estimator.deployment_config import DeploymentConfig
from etalon.estimator.dtypes import get_dtype
from etalon.estimator.errors import EstimatorError
from etalon.estimator.hardware import GiB, HardwareSpec, load_hardware
from etalon.estimator.layout import ParallelConfig, validate_layout
from etalon.estimator.models import load_model
from etalon.estimator.shards import StageShard, kv_bytes_per_token_layer, resolve_dtypes, stage_shards
from etalon.estimator.spec import ModelSpec


def _default(cls: type, name: str):
    return next(f.default for f in fields(cls) if f.name == name)


@dataclass(frozen=True)
class ServingConfig:
    """The engine settings that decide how much memory is left for the KV cache.

    The engine limits are ``EngineConfig``'s (vLLM's names here: ``max_num_batched_tokens`` is
    its ``max_batched_tokens``, ``max_num_seqs`` its ``max_batch_size``) and the utilization
    ``DeploymentConfig``'s, defaults included; build one from those with ``from_engine``.
    ``non_torch_gib`` covers what PyTorch does not allocate (cuBLAS workspaces, allocator slack;
    vLLM logs 0.1-0.4 GiB) and ``comm_buffer_gib`` the NCCL and custom all-reduce buffers of
    multi-device layouts.
    """

    gpu_memory_utilization: float = _default(DeploymentConfig, "gpu_memory_utilization")
    block_size: int = _default(EngineConfig, "block_size")
    max_num_batched_tokens: int = _default(EngineConfig, "max_batched_tokens")
    max_num_seqs: int = _default(EngineConfig, "max_batch_size")
    non_torch_gib: float = 0.3
    comm_buffer_gib: float = 0.25

    @classmethod
    def from_engine(cls, engine: EngineConfig, gpu_memory_utilization: float | None = None,
                    **extra: float) -> ServingConfig:
        """The memory-relevant settings of ``engine`` (block size, step token budget, sequences
        per step) at ``gpu_memory_utilization`` (default: ``DeploymentConfig``'s);
        ``extra``: ``non_torch_gib`` / ``comm_buffer_gib``."""
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
        if self.non_torch_gib < 0 or self.comm_buffer_gib < 0:
            raise EstimatorError("non_torch_gib and comm_buffer_gib must be >= 0")


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


def activation_bytes(model: ModelSpec, config: ServingConfig, tp: int = 1) -> float:
    """Peak activation memory of vLLM's profile run on one device.

    The forward pass holds, besides the residual stream and its normed copy (``2h``), the widest
    transient of a layer: the attention projections, the gated MLP (``gate_up`` then the
    activation: ``3 * I / tp``) or the fused-MoE caches (``k * (3 * I_e / tp + h)`` per token);
    all for ``max_num_batched_tokens`` tokens in the activation dtype. Sampling ``max_num_seqs``
    sequences then holds fp32 logits, probabilities and a sorted copy (12 bytes per vocab entry).
    """
    a = get_dtype(model.activation_dtype).bytes
    h = model.hidden_size
    attn_width = (model.num_heads * model.head_dim * 2 + 2 * model.num_kv_heads * model.head_dim) / tp
    widest = max(attn_width, 3 * model.intermediate_size / tp)
    if model.moe is not None:
        m = model.moe
        widest = max(widest, m.experts_per_token * (3 * m.expert_intermediate_size / tp + h))
        widest += 3 * m.shared_intermediate_size / tp
    forward = config.max_num_batched_tokens * (2 * h + widest) * a
    sampler = config.max_num_seqs * model.vocab_size * 12
    return forward + sampler


# --- per-device planning ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StageMemory:
    """Memory of one device of one pipeline stage, in bytes."""

    layers: int
    weights: float
    activation: float
    overhead: float
    kv_pool: float
    kv_bytes_per_token: float
    num_blocks: int


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
                  config: ServingConfig) -> StageMemory:
    budget = hardware.memory_bytes * config.gpu_memory_utilization
    overhead = config.non_torch_gib * GiB + (config.comm_buffer_gib * GiB if layout.gpus_per_replica > 1 else 0.0)
    activation = activation_bytes(model, config, layout.tp)
    pool = budget - shard.weight_bytes - activation - overhead
    per_token = shard.kv_bytes_per_token_total
    blocks = max(int(pool // (per_token * config.block_size)), 0) if pool > 0 else 0
    return StageMemory(len(shard.layers), shard.weight_bytes, activation, overhead, pool, per_token, blocks)


def _stages(model: ModelSpec, hardware: HardwareSpec, layout: ParallelConfig, dtype: str | None,
            kv_dtype: str | None, config: ServingConfig) -> tuple[list[StageShard], list[StageMemory]]:
    validate_layout(model, layout)
    shards = stage_shards(model, layout.tp, layout.pp, layout.ep, dtype, kv_dtype)
    return shards, [_stage_memory(s, model, hardware, layout, config) for s in shards]


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
