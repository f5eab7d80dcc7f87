"""What each operator of one engine step computes and moves, per device: the operator roofline's inventory.

A step runs, per decoder layer, the kernels of a Megatron-style tensor-parallel transformer:
norm, QKV projection, rotary embedding, attention, O projection, all-reduce, residual add, norm,
gate/up projection, activation, down projection, all-reduce, residual add (MoE layers: router,
the routed experts' grouped GEMMs, their activation, shared experts, and the EP all-to-alls);
once per step the embedding lookup, the final norm, the LM head and the pipeline sends. Each is a
``Kernel``: FLOPs, bytes moved through device memory, the GEMM's row count (tokens) and how many
launches of it the step makes. Timing them is ``operator_roofline``'s job; this module only
counts, from the estimator's parameter counts (``params.LayerParams``) and its sharding rules
(``shards``), so its totals equal the analytic roofline's FLOPs and streamed weight bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from etalon.estimator.dtypes import DType, get_dtype
from etalon.estimator.hardware import HardwareSpec
from etalon.estimator.params import LayerParams
from etalon.estimator.shards import (  # _Sizer: the shards' own weight-dtype rules, reused
    _Sizer,
    attention_flops_per_pair,
    kv_bytes_per_token_layer,
    kv_shard_fraction,
)
from etalon.estimator.spec import ModelSpec
from etalon.perf.base import StepBatch
from etalon.perf.roofline import ring_allreduce_seconds, windowed

GEMM, ATTENTION, MEMORY, COLLECTIVE = "gemm", "attention", "memory", "collective"
KINDS = (GEMM, ATTENTION, MEMORY, COLLECTIVE)

Number = float | np.ndarray


@dataclass(frozen=True)
class Kernel:
    """One operator of a step on one device.

    ``flops`` and ``bytes`` are per launch (``bytes``: device-memory traffic, weights plus
    activations); ``rows`` is the GEMM's M (tokens it multiplies); ``count`` is launches per
    step (layers it runs in). A collective has no FLOPs: its ``wire_s`` is the seconds its bytes
    take on the link at full bandwidth (ring factor included); ``bytes`` is its payload.
    Fields may be numpy arrays (one entry per decode context) for vectorised decode steps.
    """

    name: str
    kind: str
    count: int
    flops: Number = 0.0
    bytes: Number = 0.0
    rows: Number = 1.0
    wire_s: Number = 0.0


@dataclass(frozen=True)
class _LayerClass:
    """Layers that run the same kernels: same sliding window, same dense/MoE MLP."""

    params: LayerParams
    window: int | None
    sparse: bool
    count: int


class OperatorInventory:
    """The kernels of ``model`` on one device under TP x PP (x EP for MoE experts).

    Layers of all pipeline stages are summed (a step's latency runs through every stage);
    per-device shapes follow ``shards``: q/o and MLPs split by TP, k/v by KV heads, experts
    by TP or whole over EP ranks, norms and routers replicated, embedding and LM head
    vocab-parallel.
    """

    def __init__(self, model: ModelSpec, hardware: HardwareSpec, tp: int, pp: int, ep: int,
                 weight: DType, kv: DType) -> None:
        self.model, self.tp, self.pp, self.ep = model, tp, pp, ep
        self.size = _Sizer(model, weight)
        self.act = get_dtype(model.activation_dtype).bytes
        self.kv_layer = kv_bytes_per_token_layer(model, kv) * kv_shard_fraction(model, tp)
        self.pair_flops = attention_flops_per_pair(model) / tp
        devices = hardware.devices_per_node
        self.tp_bw = hardware.link(intra_node=tp <= devices)[0]
        self.pp_bw = hardware.link(intra_node=tp * pp <= devices)[0]
        self.ep_bw = hardware.link(intra_node=ep <= devices)[0]
        groups: dict[tuple, list] = {}
        moe_layers = model.moe.moe_layers if model.moe else (False,) * model.num_layers
        for i, p in enumerate(model.params.layers):
            key = (model.layer_windows[i], moe_layers[i])
            groups.setdefault(key, [p, 0])[1] += 1
        self.classes = [_LayerClass(p, w, s, n) for (w, s), (p, n) in groups.items()]
        h, m = model.hidden_size, model
        # query heads sharing one KV head: the rows a decode attention tile multiplies (MLA: all)
        self.group = float(m.num_heads) if m.mla else m.num_heads / m.num_kv_heads
        v_dim = m.mla.v_head_dim if m.mla else m.head_dim
        self.q_width = m.num_heads * (m.mla.qk_head_dim if m.mla else m.head_dim) / self.tp
        self.o_weights = (m.num_heads * v_dim * h) / self.tp
        self.rope_width = (m.num_heads + (0 if m.mla else m.num_kv_heads * self.tp
                                          * kv_shard_fraction(m, self.tp))) * m.head_dim / self.tp

    # --- per-device weights of one layer, by operator -------------------------------------------

    def qkv_weights(self, p: LayerParams) -> float:
        """QKV (and MLA's down/up) projection weights on one device: the layer's attention
        weights less the O projection."""
        kv_frac = kv_shard_fraction(self.model, self.tp)
        return p.attn_heads / self.tp + p.attn_kv * kv_frac + p.attn_shared - self.o_weights

    def mlp_weights(self, intermediate: int, dense_total: float) -> tuple[float, float]:
        """(gate/up, down) weights on one device of an MLP whose TP-split total is
        ``dense_total`` (biases land in gate/up)."""
        down = intermediate * self.model.hidden_size / self.tp
        return dense_total / self.tp - down, down

    # --- kernels ---------------------------------------------------------------------------------

    def _gemm(self, name: str, count: int, weights: float, rows: Number, out_width: float,
              nbytes: float | None = None) -> Kernel:
        """A linear layer: ``2·rows·weights`` FLOPs; weights read once, input and output
        activations read and written once."""
        wbytes = self.size.linear(weights) if nbytes is None else nbytes
        in_width = weights / out_width
        return Kernel(name, GEMM, count, 2.0 * rows * weights,
                      wbytes + rows * (in_width + out_width) * self.act, rows)

    def _elementwise(self, name: str, count: int, tokens: float, width: float, passes: float,
                     weights: float = 0.0) -> Kernel:
        """A memory-bound kernel touching ``passes`` activation vectors of ``width`` per token."""
        return Kernel(name, MEMORY, count, 0.0, passes * tokens * width * self.act
                      + self.size.plain(weights), tokens)

    def _collective(self, name: str, count: int, payload: float, wire_s: float) -> Kernel:
        return Kernel(name, COLLECTIVE, count, 0.0, payload, 1.0, wire_s)

    def kernels(self, batch: StepBatch, decode_context: Number | None = None) -> list[Kernel]:
        """The step's kernels. ``decode_context`` overrides ``batch.decode_context`` (an array
        gives one value per context for vectorised decode steps)."""
        m, tp, h, a = self.model, self.tp, self.model.hidden_size, self.act
        tokens = float(batch.prefill_tokens + batch.decode_batch)
        if tokens <= 0:
            return []
        sampled = float(batch.num_prefill_seqs + batch.decode_batch)
        ctx = batch.decode_context if decode_context is None else decode_context
        cached = batch.prefill_cached_tokens
        chunk = batch.prefill_tokens / batch.num_prefill_seqs if batch.num_prefill_seqs else 1.0
        out: list[Kernel] = []
        norm_w = h * (2 if m.norm == "layer" else 1)
        payload = tokens * h * a
        for c in self.classes:
            p, n, w = c.params, c.count, c.window
            suffix = "" if w is None else f" (window {w})"
            out.append(self._elementwise("norm", n * m.norms_per_layer, tokens, h, 2.0, norm_w))
            qkv = self.qkv_weights(p)
            out.append(self._gemm("qkv_proj", n, qkv, tokens, qkv / h))
            out.append(self._elementwise("rotary", n, tokens, self.rope_width, 2.0))
            prefill_pairs = windowed(batch.prefill_attention, batch.prefill_tokens, w)
            decode_pairs = windowed(ctx, batch.decode_batch, w)
            kv_read = decode_pairs + windowed(cached, batch.num_prefill_seqs, w)
            att_bytes = self.kv_layer * (kv_read + tokens) + 2.0 * tokens * self.q_width * a
            out.append(Kernel("attention" + suffix, ATTENTION, n, self.pair_flops * (prefill_pairs + decode_pairs),
                              att_bytes, self._attention_rows(prefill_pairs, decode_pairs, chunk)))
            out.append(self._gemm("o_proj", n, self.o_weights, tokens, h))
            if tp > 1:
                out.append(self._collective("tp_all_reduce", 2 * n, payload,
                                            ring_allreduce_seconds(payload, tp, self.tp_bw, 0.0)))
            out.append(self._elementwise("residual_add", 2 * n, tokens, h, 3.0))
            out.extend(self._moe(c, tokens) if c.sparse else self._mlp(c, tokens))
        out.append(self._elementwise("embedding", 1, tokens, h, 2.0))
        out.append(self._elementwise("final_norm", 1, tokens, h, 2.0, norm_w))
        vocab_rows = m.vocab_size * h / tp
        out.append(self._gemm("lm_head", 1, vocab_rows, sampled, m.vocab_size / tp,
                              nbytes=self.size.plain(vocab_rows)))
        if self.pp > 1:
            out.append(self._collective("pp_send", self.pp - 1, payload, payload / self.pp_bw))
        return out

    def _attention_rows(self, prefill_pairs: Number, decode_pairs: Number, chunk: float) -> Number:
        """The attention kernel's row count (queries per KV head and tile): ``chunk × group``
        for prefill pairs, ``group`` for decode pairs. A mixed step gets the pair-weighted
        harmonic mean, so that ``pairs · (1 + half / rows)`` is the sum of the two parts' and
        adding either kind of work never makes the step cheaper."""
        total = prefill_pairs + decode_pairs
        weighted = prefill_pairs / (chunk * self.group) + decode_pairs / self.group
        return np.where(weighted > 0, total / np.maximum(weighted, 1e-300), self.group)

    def _mlp(self, c: _LayerClass, tokens: float) -> list[Kernel]:
        inter = self.model.intermediate_size / self.tp
        up, down = self.mlp_weights(self.model.intermediate_size, c.params.mlp)
        gated = self.model.gated_mlp
        return [self._gemm("gate_up_proj" if gated else "up_proj", c.count, up, tokens, up / self.model.hidden_size),
                self._elementwise("activation", c.count, tokens, inter, 3.0 if gated else 2.0),
                self._gemm("down_proj", c.count, down, tokens, self.model.hidden_size)]

    def _moe(self, c: _LayerClass, tokens: float) -> list[Kernel]:
        """Router, the routed experts (only those the tokens are expected to hit, uniform
        routing: ``E·(1 - (1 - k/E)^T)``), shared experts and, under EP, the two all-to-alls."""
        m, p, n, h = self.model, c.params, c.count, self.model.hidden_size
        moe, ep, tp = m.moe, self.ep, self.tp
        k, experts = moe.experts_per_token, moe.num_experts
        out = [self._gemm("router", n, p.router, tokens, experts, nbytes=self.size.plain(p.router))]
        local = math.ceil(experts / ep) if ep > 1 else experts
        split = 1 if ep > 1 else tp  # an expert's share on this device
        hit = local * (1.0 - (1.0 - k / experts) ** tokens)
        routed_tokens = tokens * k * local / experts  # token-expert pairs landing on this device
        rows = routed_tokens / max(hit, 1e-12)
        inter = moe.expert_intermediate_size / split
        down = moe.expert_intermediate_size * h / split
        up = p.expert_size / split - down
        for name, w, width in (("experts_gate_up", up, up / h), ("experts_down", down, h)):
            out.append(Kernel(name, GEMM, n, 2.0 * routed_tokens * w,
                              self.size.experts(w) * hit + routed_tokens * (w / width + width) * self.act, rows))
        out.append(self._elementwise("experts_activation", n, routed_tokens, inter, 3.0 if m.gated_mlp else 2.0))
        if p.shared_experts:
            s_up, s_down = self.mlp_weights(moe.shared_intermediate_size, p.shared_experts)
            out.append(self._gemm("shared_gate_up", n, s_up, tokens, s_up / h))
            out.append(self._gemm("shared_down", n, s_down, tokens, h))
        if ep > 1:
            payload = tokens * k * h * self.act
            out.append(self._collective("ep_all_to_all", 2 * n, payload,
                                        (ep - 1) / ep * payload / self.ep_bw))
        return out
