"""Times a model's layer operators with PyTorch: random weights of the per-device shapes, eager kernels.

Imported only by ``etalon profile ops`` (PyTorch is not one of etalon's dependencies). Each
operator is the eager PyTorch a serving engine's layer runs (``F.linear``, ``F.rms_norm``,
``scaled_dot_product_attention``, ...), at the shapes ``OperatorInventory`` counts for one
device under tensor parallelism, so a measured row and the roofline's row describe the same
work. Timing: warm-up calls, then repetitions of a loop long enough to be measured (CUDA events
on a GPU, ``perf_counter`` after a synchronise elsewhere); the row keeps the median and p10/p90
per call. What is not an engine's kernel: no paged KV cache (decode attention reads a dense
``[batch, kv_heads, context, head_dim]``), no fusions, no CUDA graphs — so a fitted kernel floor
is an eager launch's, the upper end of the roofline's range.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from etalon.calibration.operator_profile import PREFILL, GridPoint
from etalon.cli_errors import UserError
from etalon.estimator.spec import ModelSpec

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - the caller reports it
    torch = None  # type: ignore[assignment]

TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def torch_missing_reason() -> str | None:
    """Why operators cannot be timed here, or None."""
    if torch is None:
        return "PyTorch is not installed (pip install torch)"
    return None


def device_name(device: str) -> str:
    """What the operators ran on: the GPU's name, or the CPU's model and thread count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    name = "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({torch.get_num_threads()} threads)"


@dataclass(frozen=True)
class Shapes:
    """One device's share of a dense layer under TP: what each weight matrix holds."""

    hidden: int
    q_heads: int
    kv_heads: int
    head_dim: int
    qkv_out: int
    intermediate: int
    gated: bool
    vocab: int

    @classmethod
    def of(cls, model: ModelSpec, tp: int) -> "Shapes":
        if model.moe is not None or model.mla is not None:
            raise UserError(f"etalon profile ops: {model.name} is a "
                            f"{'MoE' if model.moe else 'MLA'} model; the profiler times dense "
                            "attention layers only")
        for name, n in (("attention heads", model.num_heads), ("intermediate size", model.intermediate_size)):
            if n % tp:
                raise UserError(f"etalon profile ops: {model.name}'s {name} ({n}) does not split over TP {tp}")
        q = model.num_heads // tp
        kv = max(1, model.num_kv_heads // tp)  # replicated past the KV heads, as the shards do
        d = model.head_dim
        return cls(model.hidden_size, q, kv, d, (q + 2 * kv) * d, model.intermediate_size // tp,
                   model.gated_mlp, -(-model.vocab_size // tp))


class LayerOperators:
    """Random weights of one device's layer on ``device``; ``calls(point)`` gives, per
    operator name, a no-argument function that runs it once at that grid point."""

    def __init__(self, model: ModelSpec, tp: int, dtype: str, device: str, seed: int = 0) -> None:
        self.s = s = Shapes.of(model, tp)
        self.dtype = getattr(torch, TORCH_DTYPES[dtype])
        self.device = torch.device(device)
        self.rms = model.norm == "rms"
        g = torch.Generator(device="cpu").manual_seed(seed)

        def weight(*shape: int) -> "torch.Tensor":
            w = torch.randn(*shape, generator=g, dtype=torch.float32) * shape[-1] ** -0.5
            return w.to(self.device, self.dtype)

        self.w_qkv = weight(s.qkv_out, s.hidden)
        self.w_o = weight(s.hidden, s.q_heads * s.head_dim)
        self.w_up = weight((2 if s.gated else 1) * s.intermediate, s.hidden)
        self.w_down = weight(s.hidden, s.intermediate)
        self.w_vocab = weight(s.vocab, s.hidden)  # embedding table and LM head (untied: same shape)
        self.w_norm = torch.ones(s.hidden, dtype=self.dtype, device=self.device)
        self.generator = g

    def _tensor(self, *shape: int) -> "torch.Tensor":
        return torch.randn(*shape, generator=self.generator, dtype=torch.float32).to(self.device, self.dtype)

    def calls(self, point: GridPoint) -> dict[str, Callable[[], object]]:
        s = self
        sh = self.s
        t = point.tokens
        x = self._tensor(t, sh.hidden)
        other = self._tensor(t, sh.hidden)
        up_out = self._tensor(t, self.w_up.shape[0])
        mid = self._tensor(t, sh.intermediate)
        ids = torch.randint(0, sh.vocab, (t,), generator=self.generator).to(self.device)
        q = self._tensor(t, sh.q_heads, sh.head_dim)
        k = self._tensor(t, sh.kv_heads, sh.head_dim)
        cos, sin = self._tensor(t, 1, sh.head_dim), self._tensor(t, 1, sh.head_dim)
        sampled = x[-1:] if point.phase == PREFILL else x

        def norm() -> object:
            if s.rms:
                return F.rms_norm(x, (sh.hidden,), s.w_norm, 1e-6)
            return F.layer_norm(x, (sh.hidden,), s.w_norm, s.w_norm)

        def rotary() -> object:
            out = []
            for v in (q, k):
                half = v.shape[-1] // 2
                rotated = torch.cat((-v[..., half:], v[..., :half]), dim=-1)
                out.append(v * cos + rotated * sin)
            return out

        def activation() -> object:
            if sh.gated:
                gate, up = up_out.chunk(2, dim=-1)
                return F.silu(gate) * up
            return F.gelu(up_out)

        return {
            "norm": norm,
            "qkv_proj": lambda: F.linear(x, s.w_qkv),
            "rotary": rotary,
            "attention": self._attention(point),
            "o_proj": lambda: F.linear(x, s.w_o),
            "residual_add": lambda: x + other,
            "gate_up_proj" if sh.gated else "up_proj": lambda: F.linear(x, s.w_up),
            "activation": activation,
            "down_proj": lambda: F.linear(mid, s.w_down),
            "embedding": lambda: F.embedding(ids, s.w_vocab),
            "final_norm": norm,
            "lm_head": lambda: F.linear(sampled, s.w_vocab),
        }

    def _attention(self, point: GridPoint) -> Callable[[], object]:
        """Causal attention over the prompt (prefill), or one query per sequence over its
        context (decode); grouped-query heads share their KV head."""
        sh = self.s
        if point.phase == PREFILL:
            q = self._tensor(1, sh.q_heads, point.tokens, sh.head_dim)
            kv = self._tensor(2, 1, sh.kv_heads, point.tokens, sh.head_dim)
            causal = True
        else:
            q = self._tensor(point.batch, sh.q_heads, 1, sh.head_dim)
            kv = self._tensor(2, point.batch, sh.kv_heads, point.context, sh.head_dim)
            causal = False
        gqa = sh.q_heads != sh.kv_heads
        return lambda: F.scaled_dot_product_attention(q, kv[0], kv[1], is_causal=causal, enable_gqa=gqa)


@dataclass(frozen=True)
class Timing:
    median_s: float
    p10_s: float
    p90_s: float
    repetitions: int


class Timer:
    """Per-call seconds of a function: warm-up, then ``repetitions`` loops of enough calls to
    last ``loop_s`` each (CUDA events on a GPU)."""

    def __init__(self, device: str, repetitions: int, warmup: int, loop_s: float) -> None:
        self.cuda = device.startswith("cuda")
        self.repetitions, self.warmup, self.loop_s = repetitions, warmup, loop_s

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _loop(self, fn: Callable[[], object], n: int) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / n
        started = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - started) / n

    def time(self, fn: Callable[[], object]) -> Timing:
        with torch.inference_mode():
            for _ in range(self.warmup):
                fn()
            self._sync()
            one = max(self._loop(fn, 1), 1e-7)
            n = int(min(1000, max(1, round(self.loop_s / one))))
            each = np.array([self._loop(fn, n) for _ in range(self.repetitions)])
        p10, median, p90 = np.percentile(each, [10, 50, 90])
        return Timing(float(median), float(p10), float(p90), self.repetitions)
