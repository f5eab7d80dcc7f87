"""Parallel layouts (TP x PP x DP, with EP for MoE) and which of them a model admits.

Validity follows what vLLM enforces at startup, so an estimate is never made for a layout the
server would refuse:

- TP must divide ``num_attention_heads``; for GQA/MQA it must also divide ``num_key_value_heads``
  or be a multiple of it (then each KV head is replicated on ``tp / num_kv_heads`` GPUs);
  for MLA the compressed KV is replicated on every rank, so only the heads matter.
- TP must divide the MLP widths it splits: the dense ``intermediate_size``, the shared-expert
  width, and the expert width unless EP spreads whole experts instead.
- The vocabulary is *not* a constraint: vLLM pads the embedding and LM head to a multiple of TP.
- PP needs at least one layer per stage. EP must divide TP x DP (vLLM's expert-parallel group
  is the TP x DP group) and only applies to MoE models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from etalon.estimator.errors import EstimatorError
from etalon.estimator.spec import ModelSpec


@dataclass(frozen=True)
class ParallelConfig:
    """Tensor, pipeline, data and expert parallel sizes of one deployment."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EstimatorError(f"--{key} must be a positive integer, got {value!r}")

    @property
    def gpus(self) -> int:
        """Devices in the whole deployment (all replicas)."""
        return self.tp * self.pp * self.dp

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    def label(self) -> str:
        text = f"TP{self.tp} x PP{self.pp}"
        if self.dp > 1:
            text += f" x DP{self.dp}"
        if self.ep > 1:
            text += f" (EP{self.ep})"
        return text


def tp_problem(model: ModelSpec, tp: int, ep: int = 1) -> str | None:
    """Why ``tp`` is invalid for ``model``, or None when it is valid."""
    if model.num_heads % tp:
        return f"{model.num_heads} attention heads are not divisible by {tp}"
    if model.mla is None:
        kv = model.num_kv_heads
        if kv % tp and tp % kv:
            return f"{kv} KV heads neither divide nor are divisible by {tp}"
    dense_layers = model.moe is None or not all(model.moe.moe_layers)
    if dense_layers and model.intermediate_size % tp:
        return f"intermediate_size {model.intermediate_size} is not divisible by {tp}"
    if model.moe is not None:
        if ep == 1 and model.moe.expert_intermediate_size % tp:
            return f"expert intermediate size {model.moe.expert_intermediate_size} is not divisible by {tp} (use EP)"
        if model.moe.shared_intermediate_size % tp:
            return f"shared-expert intermediate size {model.moe.shared_intermediate_size} is not divisible by {tp}"
    return None


def valid_tp_sizes(model: ModelSpec, max_tp: int | None = None, ep: int = 1) -> list[int]:
    """Every TP size the model admits, up to ``max_tp`` (default: the number of heads)."""
    limit = max_tp or model.num_heads
    return [tp for tp in range(1, limit + 1) if tp_problem(model, tp, ep) is None]


def validate_layout(model: ModelSpec, layout: ParallelConfig) -> None:
    """Raise EstimatorError naming what is wrong with ``layout`` and what would be valid."""
    problem = tp_problem(model, layout.tp, layout.ep)
    if problem:
        valid = ", ".join(map(str, valid_tp_sizes(model, max(64, layout.tp), layout.ep)))
        raise EstimatorError(f"--tp {layout.tp} is invalid for {model.name}: {problem}; valid TP sizes: {valid}")
    if layout.pp > model.num_layers:
        raise EstimatorError(f"--pp {layout.pp} exceeds the {model.num_layers} layers of {model.name}; valid: 1..{model.num_layers}")
    if layout.ep > 1:
        if model.moe is None:
            raise EstimatorError(f"--ep {layout.ep} needs a mixture-of-experts model; {model.name} is dense (use --ep 1)")
        group = layout.tp * layout.dp
        if group % layout.ep:
            divisors = [d for d in range(1, group + 1) if group % d == 0]
            raise EstimatorError(
                f"--ep {layout.ep} must divide TP x DP = {group}; valid: {', '.join(map(str, divisors))}"
            )
        if layout.ep > model.moe.num_experts:
            raise EstimatorError(f"--ep {layout.ep} exceeds the {model.moe.num_experts} experts of {model.name}")


def split_layers(num_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage: as even as possible, earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    return [base + (1 if i < extra else 0) for i in range(pp)]
