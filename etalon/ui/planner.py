"""The capacity planner's numbers: what the planner page and the desktop window show for a model,
an accelerator and a layout. Every number comes from ``etalon.estimator``; this module only
gathers the inputs, calls it, and names the results for display and for the history.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from etalon.estimator import (
    EstimatorError,
    MemoryPlan,
    ModelSpec,
    ParallelConfig,
    Recommendation,
    ServingConfig,
    load_hardware,
    load_model,
    max_concurrency_curve,
    plan_memory,
    recommend_layout,
    valid_tp_sizes,
)
from etalon.estimator.commands import context_grid
from etalon.estimator.hardware import GiB

DTYPE_CHOICES = ("", "bf16", "fp16", "fp32", "fp8", "int8", "int4", "mxfp4")  # "" = the checkpoint's
KV_DTYPE_CHOICES = ("", "bf16", "fp16", "fp32", "fp8")  # "" = the activation dtype


@dataclass
class PlannerInputs:
    """What the planner form asks. ``model`` is a catalog name, a config.json path or a Hub id;
    ``config_json`` (pasted or uploaded text of a Hugging Face config.json) wins when set."""

    model: str = "llama-3.1-8b"
    hardware: str = "h100-sxm"
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    dtype: str = ""
    kv_dtype: str = ""
    context_len: int | None = None  # None: the model's maximum
    gpu_memory_utilization: float = 0.9
    concurrency: int = 1  # requests of context_len the recommended layout must hold
    config_json: str = ""

    def history_inputs(self) -> dict:
        """The inputs as stored; a pasted config.json is kept whole, so the entry can be
        re-checked later (its secret-looking keys, if any, are dropped by the history)."""
        return asdict(self)


@dataclass
class PlannerResult:
    """What the planner page shows. ``recommendation`` is None when no layout fits; then
    ``recommendation_error`` says why (the estimator's own message)."""

    model: ModelSpec
    plan: MemoryPlan
    valid_tp: list[int]
    context_grid: list[int]
    concurrency_curve: list[float]
    recommendation: Recommendation | None = None
    recommendation_error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def kv_bytes_per_token(self) -> float:
        return self.plan.kv_bytes_per_token

    def memory_rows(self) -> list[tuple[str, float]]:
        """Per-device memory in GiB, the parts that fill the budget."""
        p = self.plan
        return [("weights", p.weights_gib), ("peak activation", p.activation_gib),
                ("non-torch + CUDA graphs", p.overhead_gib), ("KV pool", max(p.kv_pool_gib, 0.0))]

    def facts(self) -> list[tuple[str, str]]:
        """The headline numbers, labelled and formatted as the page shows them."""
        p = self.plan
        rec = self.recommendation
        return [
            ("KV bytes per token (model)", f"{p.kv_bytes_per_token:,.0f}"),
            ("KV bytes per token (per device)", f"{p.kv_bytes_per_token_per_device:,.0f}"),
            ("KV pool per device", f"{p.kv_pool_gib:.2f} GiB"),
            (f"KV blocks ({p.block_size} tokens)", f"{p.num_blocks:,}"),
            ("KV token capacity", f"{p.token_capacity:,}"),
            (f"max concurrency @ {p.context_len:,} tokens", f"{p.max_concurrency:.2f} per replica"),
            (f"max concurrency over DP{p.layout.dp}", f"{p.max_concurrency_all_replicas:.2f}"),
            ("valid TP sizes", ", ".join(map(str, self.valid_tp))),
            ("recommended layout", f"{rec.layout.label()} on {rec.gpus} device(s)" if rec
             else f"none: {self.recommendation_error}"),
        ]

    def history_outputs(self) -> dict:
        """The same keys ``etalon estimate memory --json`` has (``plan.*``), so app and CLI
        calculations compare directly in the history."""
        rec = self.recommendation
        return {
            "plan": self.plan.to_dict(),
            "valid_tp_sizes": self.valid_tp,
            "recommended": None if rec is None else {
                "tp": rec.layout.tp, "pp": rec.layout.pp, "ep": rec.layout.ep, "gpus": rec.gpus,
                "reasons": list(rec.reasons)},
            "max_concurrency_by_context": [{"context_len": c, "max_concurrency": v}
                                           for c, v in zip(self.context_grid, self.concurrency_curve)],
        }


def model_from_config_text(text: str) -> ModelSpec:
    """A ModelSpec from the text of a Hugging Face config.json; bad text is one EstimatorError."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EstimatorError(f"config.json is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise EstimatorError("config.json must be a JSON object of model settings")
    try:
        return load_model(data)
    except EstimatorError:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # a field of the wrong shape
        raise EstimatorError(f"config.json cannot be read as a model: {type(exc).__name__}: {exc}") from None


def resolve_model(inputs: PlannerInputs) -> ModelSpec:
    if inputs.config_json.strip():
        return model_from_config_text(inputs.config_json)
    if not inputs.model.strip():
        raise EstimatorError("choose a model or paste a config.json")
    return load_model(inputs.model)


def compute(inputs: PlannerInputs) -> PlannerResult:
    """Everything the planner shows for ``inputs``; a bad input raises EstimatorError with the
    estimator's message (a layout the model does not admit names the valid TP sizes)."""
    model = resolve_model(inputs)
    hardware = load_hardware(inputs.hardware)
    layout = ParallelConfig(tp=inputs.tp, pp=inputs.pp, dp=inputs.dp, ep=inputs.ep)
    config = ServingConfig(gpu_memory_utilization=inputs.gpu_memory_utilization)
    dtype, kv_dtype = inputs.dtype or None, inputs.kv_dtype or None
    plan = plan_memory(model, hardware, layout, dtype, kv_dtype, config, inputs.context_len,
                       inputs.concurrency)
    grid = context_grid(model.max_context)
    curve = max_concurrency_curve(model, hardware, grid, layout, dtype, kv_dtype, config)
    result = PlannerResult(model, plan, valid_tp_sizes(model, max(64, hardware.devices_per_node)),
                           grid, curve)
    try:
        result.recommendation = recommend_layout(model, hardware, plan.context_len,
                                                 inputs.concurrency, dtype, kv_dtype, config)
    except EstimatorError as exc:
        result.recommendation_error = str(exc)
    if not plan.fits_weights:
        result.notes.append(f"the weights do not fit: {plan.weights_gib:.1f} GiB of weights and "
                            f"{plan.activation_gib:.1f} GiB of activations exceed the "
                            f"{plan.budget_gib:.1f} GiB budget per device")
    if plan.context_len > model.max_context:
        result.notes.append(f"{plan.context_len:,} tokens is beyond the model's maximum context "
                            f"({model.max_context:,})")
    return result


def device_memory_gib(hardware: str) -> float:
    """The accelerator's visible memory, for the page's budget line."""
    return load_hardware(hardware).memory_bytes / GiB
