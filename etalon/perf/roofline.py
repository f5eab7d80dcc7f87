"""An analytic performance model: step time from FLOPs, bytes moved and the hardware's peaks.

Each pipeline stage takes ``max(compute / (peak_flops * mfu), memory / (bandwidth * mbu))``
plus its tensor-parallel all-reduces; a step is the sum over stages, the hops between them and a
fixed per-step overhead. ``mfu`` and ``mbu`` are plain constructor arguments because calibration
fits them (and ``step_overhead``) to measured profiles; with ``mfu = mbu = 1`` and no overhead it
is the textbook roofline.

What a step moves and computes, per device (see ``etalon.estimator.shards``):

- compute: matmul FLOPs of every token in the step, attention FLOPs of the prefill pairs and of
  the decode contexts (sliding-window layers capped at their window), LM-head FLOPs of every
  sampled token (one per decode sequence and per prefill chunk);
- memory: weights streamed once per step (MoE: only the experts the step's tokens are expected
  to hit), KV read for decode contexts and the cached prefix of prefill chunks, KV written for
  every new token;
- communication: two ring all-reduces of the hidden states per layer under TP,
  ``2 (n - 1) / n * bytes / bandwidth + 2 (n - 1) * hop latency`` each, and one hidden-state
  transfer between consecutive pipeline stages.

A step through a pipeline is timed as its latency (all stages in turn): with PP the engine keeps
several batches in flight, which raises throughput, not a step's duration.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from etalon.estimator.dtypes import get_dtype
from etalon.estimator.errors import EstimatorError
from etalon.estimator.hardware import HardwareSpec, load_hardware
from etalon.estimator.layout import ParallelConfig, validate_layout
from etalon.estimator.models import load_model
from etalon.estimator.shards import StageShard, resolve_dtypes, stage_shards
from etalon.estimator.spec import ModelSpec
from etalon.perf.base import PerfModel, StepBatch


def ring_allreduce_seconds(nbytes: float, n: int, bandwidth: float, hop_latency: float) -> float:
    """Ring all-reduce of ``nbytes`` over ``n`` devices: ``2(n-1)`` hops, each moving ``1/n`` of
    the data (reduce-scatter then all-gather)."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * nbytes / bandwidth + 2.0 * (n - 1) * hop_latency


def windowed(total: float | np.ndarray, rows: float, window: int | None) -> float | np.ndarray:
    """Cap a sum of per-sequence key counts at ``window`` keys per sequence row."""
    if window is None:
        return total
    return np.minimum(total, rows * window)


def _dense_constants(stages: list[StageShard]) -> list[tuple[float, ...]] | None:
    """Per stage ``(linear FLOPs/token, LM-head FLOPs/sample, FLOPs/attention pair, streamed
    weight bytes, KV bytes written/token, KV bytes read/context token)`` where every stage is
    dense with full attention (no window, no experts: the step's work is then linear in its
    aggregates); None otherwise."""
    out = []
    for s in stages:
        if (s.expert_bytes or set(s.attention_flops_per_pair) != {None}
                or set(s.kv_bytes_per_token) != {None}):
            return None
        out.append((s.linear_flops_per_token, s.lm_head_flops_per_token,
                    s.attention_flops_per_pair[None], s.streamed_weight_bytes(0),
                    s.kv_bytes_per_token_total, s.kv_bytes_per_token[None]))
    return out


def check_spec_keys(cls: type, spec: dict, where: str) -> None:
    """A perf-model file's keys against ``cls``'s fields: an unknown key, or no model or
    hardware, is a one-line error."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise EstimatorError(f"{where}: unknown key(s) {unknown}; valid: {sorted(known)}")
    missing = sorted({"model", "hardware"} - set(spec))
    if missing:
        raise EstimatorError(f"{where}: missing {', '.join(missing)} (a catalog name or path each)")


def check_overheads(model, label: str) -> None:
    """The fitted fixed costs a roofline carries are seconds, never negative."""
    for key in ("step_overhead", "request_path", "per_prefill_seq"):
        if getattr(model, key) < 0:
            raise EstimatorError(f"{label}: {key} must be >= 0, got {getattr(model, key)}")


@dataclass(frozen=True)
class StepBreakdown:
    """Where one step's time goes, in seconds; ``bound`` says whether compute or memory dominated
    summed over stages. ``compute_s`` / ``memory_s`` are before efficiency factors."""

    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float
    total_s: float
    bound: str
    flops: float
    bytes: float


@dataclass
class RooflinePerfModel(PerfModel):
    """Roofline step times of ``model`` on ``hardware`` under TP x PP.

    ``model`` / ``hardware`` accept specs or anything ``load_model`` / ``load_hardware`` resolve
    (catalog names, paths). ``dtype`` is the weight format (default: the checkpoint's),
    ``kv_dtype`` the cache format (default: the activation dtype). ``mfu`` and ``mbu`` are the
    achieved fractions of peak FLOP/s and memory bandwidth, ``comm_efficiency`` that of link
    bandwidth, ``step_overhead`` fixed seconds per step (scheduling, kernel launches),
    ``request_path`` seconds each request spends outside the engine before its first step
    (HTTP, tokenization; fitted by ``etalon.calibration.roofline_fit``, charged by the simulator),
    ``per_prefill_seq`` seconds each prompt (chunk) adds to the step that runs it whatever its
    length (admission, sampling setup: a profile's join probe measures it, and the fit moves it
    out of ``request_path``).
    """

    model: ModelSpec | str
    hardware: HardwareSpec | str
    tp: int = 1
    pp: int = 1
    dtype: str | None = None
    kv_dtype: str | None = None
    mfu: float = 0.5
    mbu: float = 0.8
    step_overhead: float = 0.0005
    comm_efficiency: float = 1.0
    request_path: float = 0.0
    per_prefill_seq: float = 0.0

    name = "roofline"

    def __post_init__(self) -> None:
        self.model = load_model(self.model)
        self.hardware = load_hardware(self.hardware)
        for key in ("mfu", "mbu", "comm_efficiency"):
            value = getattr(self, key)
            if not 0 < value <= 1:
                raise EstimatorError(f"roofline: {key} must be in (0, 1], got {value}")
        check_overheads(self, "roofline")
        validate_layout(self.model, ParallelConfig(tp=self.tp, pp=self.pp))
        weight, kv = resolve_dtypes(self.model, self.dtype, self.kv_dtype)
        self.dtype, self.kv_dtype = weight.name, kv.name
        self._stages: list[StageShard] = stage_shards(self.model, self.tp, self.pp, 1, weight.name, kv.name)
        self._peak = self.hardware.peak_flops(weight.compute)
        self._bandwidth = self.hardware.bandwidth_bytes_s
        devices = self.hardware.devices_per_node
        tp_bw, tp_lat = self.hardware.link(intra_node=self.tp <= devices)
        pp_bw, pp_lat = self.hardware.link(intra_node=self.tp * self.pp <= devices)
        self._tp_link = (tp_bw * self.comm_efficiency, tp_lat)
        self._pp_link = (pp_bw * self.comm_efficiency, pp_lat)
        self._hidden_bytes = self.model.hidden_size * get_dtype(self.model.activation_dtype).bytes
        self._dense = _dense_constants(self._stages)

    @classmethod
    def from_spec(cls, spec: dict, *, where: str = "roofline perf model") -> "RooflinePerfModel":
        """Build from a plain mapping (a perf-model file, or ``describe()`` without ``kind``);
        unknown keys are errors."""
        check_spec_keys(cls, spec, where)
        return cls(**spec)

    @property
    def request_path_s(self) -> float:
        return self.request_path

    # --- pieces -----------------------------------------------------------------------------------

    def _comm(self, tokens: float | np.ndarray) -> float | np.ndarray:
        """TP all-reduces of every stage plus the hops between stages, for ``tokens`` tokens."""
        if self.tp == 1 and self.pp == 1:
            return 0.0 * np.asarray(tokens, dtype=float) if isinstance(tokens, np.ndarray) else 0.0
        payload = np.asarray(tokens, dtype=float) * self._hidden_bytes
        bw, lat = self._tp_link
        per_allreduce = ring_allreduce_seconds(payload, self.tp, bw, lat) if self.tp > 1 else 0.0 * payload
        total = 2 * self.model.num_layers * per_allreduce
        if self.pp > 1:
            bw, lat = self._pp_link
            total = total + (self.pp - 1) * (payload / bw + lat)
        return total

    _windowed = staticmethod(windowed)

    def _stage_work(self, s: StageShard, batch: StepBatch) -> tuple[float, float]:
        """(FLOPs, bytes) of one device of stage ``s`` for ``batch``."""
        tokens = batch.prefill_tokens + batch.decode_batch
        sampled = batch.num_prefill_seqs + batch.decode_batch
        cached = batch.prefill_cached_tokens
        flops = s.linear_flops_per_token * tokens + s.lm_head_flops_per_token * sampled
        nbytes = s.streamed_weight_bytes(tokens) + s.kv_bytes_per_token_total * tokens
        for window, pair_flops in s.attention_flops_per_pair.items():
            pairs = self._windowed(batch.prefill_attention, batch.prefill_tokens, window)
            pairs += self._windowed(batch.decode_context, batch.decode_batch, window)
            flops += pair_flops * pairs
        for window, kv in s.kv_bytes_per_token.items():
            read = self._windowed(batch.decode_context, batch.decode_batch, window)
            read += self._windowed(cached, batch.num_prefill_seqs, window)
            nbytes += kv * read
        return float(flops), float(nbytes)

    # --- PerfModel --------------------------------------------------------------------------------

    def breakdown(self, batch: StepBatch) -> StepBreakdown:
        """Step time of ``batch`` and its parts."""
        if batch.empty:
            return StepBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, "none", 0.0, 0.0)
        total = compute_s = memory_s = flops = nbytes = 0.0
        for s in self._stages:
            f, b = self._stage_work(s, batch)
            c, m = f / self._peak, b / self._bandwidth
            total += max(c / self.mfu, m / self.mbu)
            compute_s, memory_s, flops, nbytes = compute_s + c, memory_s + m, flops + f, nbytes + b
        comm = float(self._comm(batch.prefill_tokens + batch.decode_batch))
        bound = "compute" if compute_s / self.mfu >= memory_s / self.mbu else "memory"
        overhead = self.step_overhead + self.per_prefill_seq * batch.num_prefill_seqs
        total += comm + overhead
        return StepBreakdown(compute_s, memory_s, comm, overhead, total, bound, flops, nbytes)

    def step_time(self, batch: StepBatch) -> float:
        if self._dense is None or batch.empty:
            return self.breakdown(batch).total_s
        # breakdown's arithmetic, in its order (the same float), without its parts: ~2x faster
        # on the simulator's most frequent call
        tokens = batch.prefill_tokens + batch.decode_batch
        sampled = batch.num_prefill_seqs + batch.decode_batch
        pairs = batch.prefill_attention + batch.decode_context
        read = batch.decode_context + batch.prefill_cached_tokens
        total = 0.0
        for linear, lm_head, pair_flops, weight_bytes, kv_total, kv in self._dense:
            flops = float(linear * tokens + lm_head * sampled + pair_flops * pairs)
            nbytes = float(weight_bytes + kv_total * tokens + kv * read)
            total += max(flops / self._peak / self.mfu, nbytes / self._bandwidth / self.mbu)
        comm = float(self._comm(tokens))
        return total + (comm + (self.step_overhead + self.per_prefill_seq * batch.num_prefill_seqs))

    def decode_step_times(self, batch_size: int, context_sums: np.ndarray) -> np.ndarray:
        """Vectorised decode-only steps: one entry per context sum, same batch size."""
        ctx = np.asarray(context_sums, dtype=float)
        if batch_size <= 0:
            return np.zeros_like(ctx)
        if self._dense is not None:  # the loop below without its per-window calls
            total = None
            for linear, lm_head, pair_flops, weight_bytes, kv_total, kv in self._dense:
                flops = (linear + lm_head) * batch_size + pair_flops * ctx
                nbytes = (weight_bytes + kv_total * batch_size) + kv * ctx
                step = np.maximum(flops / self._peak / self.mfu, nbytes / self._bandwidth / self.mbu)
                total = step if total is None else total + step
            comm = self._comm(batch_size)  # 0.0 on one device: adding it changes nothing
            return (total + comm if comm else total) + self.step_overhead
        total = np.zeros_like(ctx)
        for s in self._stages:
            # the parts that do not depend on the context are scalars: one array op fewer each
            flops = (s.linear_flops_per_token + s.lm_head_flops_per_token) * batch_size
            nbytes = s.streamed_weight_bytes(batch_size) + s.kv_bytes_per_token_total * batch_size
            for window, pair_flops in s.attention_flops_per_pair.items():
                flops = flops + pair_flops * self._windowed(ctx, batch_size, window)
            for window, kv in s.kv_bytes_per_token.items():
                nbytes = nbytes + kv * self._windowed(ctx, batch_size, window)
            total += np.maximum(flops / self._peak / self.mfu, nbytes / self._bandwidth / self.mbu)
        return total + self._comm(batch_size) + self.step_overhead

    def describe(self) -> dict:
        return {
            "kind": self.name,
            "model": self.model.reference,
            "hardware": self.hardware.key,
            "tp": self.tp,
            "pp": self.pp,
            "dtype": self.dtype,
            "kv_dtype": self.kv_dtype,
            "mfu": self.mfu,
            "mbu": self.mbu,
            "step_overhead": self.step_overhead,
            "comm_efficiency": self.comm_efficiency,
            "request_path": self.request_path,
            "per_prefill_seq": self.per_prefill_seq,
        }
