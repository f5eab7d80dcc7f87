"""Choosing a layout: the fewest devices that hold a model, and a recommended TP x PP (x EP).

The recommendation reasons the way operators do: tensor parallelism is cheap inside a node
(NVLink) and expensive across nodes, so take the smallest valid TP within one node whose KV pool
holds the target concurrency at the target context; if even a full node cannot, keep TP at the
largest valid size within a node and add pipeline stages across nodes. For MoE models the
experts are spread whole over the TP group (EP = TP) when they divide evenly, which avoids
splitting small expert matrices and costs the same memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etalon.estimator.errors import EstimatorError
from etalon.estimator.hardware import HardwareSpec, load_hardware
from etalon.estimator.layout import ParallelConfig, valid_tp_sizes
from etalon.estimator.memory import MemoryPlan, ServingConfig, plan_memory
from etalon.estimator.models import load_model
from etalon.estimator.spec import ModelSpec


@dataclass(frozen=True)
class Candidate:
    """One layout the planner tried and what it found."""

    layout: ParallelConfig
    kv_pool_gib: float
    required_gib: float  # per device: weights + activations + overhead + KV of the target load
    max_concurrency: float
    fits: bool
    reason: str


@dataclass(frozen=True)
class Recommendation:
    """The chosen layout, its memory plan and the reasoning that led to it."""

    layout: ParallelConfig
    plan: MemoryPlan
    concurrency: int
    context_len: int
    devices_per_node: int
    reasons: tuple[str, ...]
    candidates: tuple[Candidate, ...] = field(default=())

    @property
    def gpus(self) -> int:
        return self.layout.gpus

    @property
    def nodes(self) -> int:
        return -(-self.layout.gpus_per_replica // self.devices_per_node)


def _expert_parallel(model: ModelSpec, tp: int) -> int:
    if model.moe is not None and tp > 1 and model.moe.num_experts % tp == 0:
        return tp
    return 1


def _try(model: ModelSpec, hardware: HardwareSpec, layout: ParallelConfig, concurrency: int, context_len: int,
         dtype: str | None, kv_dtype: str | None, config: ServingConfig) -> tuple[Candidate, MemoryPlan]:
    plan = plan_memory(model, hardware, layout, dtype, kv_dtype, config, context_len, concurrency)
    if not plan.fits_weights:
        reason = f"{layout.label()}: weights+activations {plan.weights_gib + plan.activation_gib:.1f} GiB exceed the {plan.budget_gib:.1f} GiB budget"
    elif not plan.fits_batch:
        reason = f"{layout.label()}: KV pool {plan.kv_pool_gib:.1f} GiB holds {plan.max_concurrency:.1f} requests of {context_len} tokens, need {concurrency}"
    else:
        reason = f"{layout.label()}: KV pool {plan.kv_pool_gib:.1f} GiB holds {plan.max_concurrency:.1f} requests of {context_len} tokens >= {concurrency}"
    return Candidate(layout, plan.kv_pool_gib, plan.required_gib, plan.max_concurrency, plan.fits_batch, reason), plan


def recommend_layout(
    model: ModelSpec | str,
    hardware: HardwareSpec | str,
    context_len: int | None = None,
    concurrency: int = 1,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    config: ServingConfig | None = None,
    devices_per_node: int | None = None,
) -> Recommendation:
    """The smallest in-node TP (then PP across nodes) whose KV pool holds ``concurrency``
    requests of ``context_len`` tokens (default: the model's maximum context)."""
    model, hardware = load_model(model), load_hardware(hardware)
    config = config or ServingConfig()
    context_len = model.max_context if context_len is None else context_len
    node = hardware.devices_per_node if devices_per_node is None else devices_per_node
    if concurrency < 1:
        raise EstimatorError(f"--concurrency must be positive, got {concurrency}")
    if context_len < 1 or node < 1:
        raise EstimatorError("--context-len and --devices-per-node must be positive")
    tps = valid_tp_sizes(model, node)
    if not tps:
        raise EstimatorError(f"no valid TP size of {model.name} fits a {node}-device node")
    tried: list[Candidate] = []
    for tp in tps:
        layout = ParallelConfig(tp=tp, ep=_expert_parallel(model, tp))
        cand, plan = _try(model, hardware, layout, concurrency, context_len, dtype, kv_dtype, config)
        tried.append(cand)
        if cand.fits:
            why = f"smallest valid TP within a {node}-device node that fits: {cand.reason}"
            return Recommendation(layout, plan, concurrency, context_len, node, (why,), tuple(tried))
    tp = tps[-1]
    for pp in range(2, model.num_layers + 1):
        layout = ParallelConfig(tp=tp, pp=pp, ep=_expert_parallel(model, tp))
        cand, plan = _try(model, hardware, layout, concurrency, context_len, dtype, kv_dtype, config)
        tried.append(cand)
        if cand.fits:
            why = (f"no TP within a {node}-device node fits, so TP{tp} per node and PP{pp} across "
                   f"{-(-tp * pp // node)} node(s): {cand.reason}")
            return Recommendation(layout, plan, concurrency, context_len, node, (why,), tuple(tried))
    raise EstimatorError(
        f"{model.name} with {concurrency} x {context_len}-token requests does not fit on {hardware.key} even at "
        f"TP{tp} x PP{model.num_layers}; lower --concurrency/--context-len or use a lower --dtype/--kv-dtype"
    )


def min_gpus(
    model: ModelSpec | str,
    hardware: HardwareSpec | str,
    context_len: int | None = None,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    config: ServingConfig | None = None,
) -> Recommendation:
    """The fewest devices (TP within a node first, then PP) that hold the weights and one request
    of ``context_len`` tokens."""
    return recommend_layout(model, hardware, context_len, 1, dtype, kv_dtype, config)
