"""TTFT, TPOT and throughput of one batch, from the roofline performance model.

A batch of ``batch_size`` prompts of ``prompt_len`` tokens is prefilled in chunks of at most
``max_num_batched_tokens`` tokens (vLLM's chunked prefill), then decodes ``output_len`` tokens
per request. TTFT is when the whole batch has its first token; TPOT is the mean decode step
over the growing context. With pipeline parallelism, ``micro_batches`` batches in flight hide
all but the fill-and-drain bubble ``(pp - 1) / (micro_batches + pp - 1)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from etalon.estimator.errors import EstimatorError
from etalon.estimator.hardware import HardwareSpec
from etalon.estimator.spec import ModelSpec
from etalon.perf.base import StepBatch


def chunked_prefill(batch_size: int, prompt_len: int, max_tokens: int) -> list[StepBatch]:
    """The prefill steps of ``batch_size`` equal prompts under a per-step token budget: prompts
    are packed in order, a prompt that does not fit continues in the next step."""
    steps: list[StepBatch] = []
    chunks: list[int] = []
    pairs = context = 0.0

    def close() -> None:
        steps.append(StepBatch(sum(chunks), pairs, len(chunks),
                               prefill_cross_pairs=StepBatch.cross_pairs(chunks),
                               prefill_context_pairs=context))

    for _ in range(batch_size):
        done = 0
        while done < prompt_len:
            room = max_tokens - sum(chunks)
            if room <= 0:
                close()
                chunks, pairs, context = [], 0.0, 0.0
                room = max_tokens
            chunk = int(min(room, prompt_len - done))
            chunks.append(chunk)
            pairs += StepBatch.attention_pairs(chunk, done)
            context += chunk * done
            done += chunk
    if chunks:
        close()
    return steps


@dataclass(frozen=True)
class LatencyEstimate:
    """Latency and throughput of one batch; seconds and tokens per second."""

    model: str
    hardware: str
    tp: int
    pp: int
    dtype: str
    kv_dtype: str
    mfu: float
    mbu: float
    batch_size: int
    prompt_len: int
    output_len: int
    ttft_s: float
    tpot_s: float
    e2e_s: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    pipelined_decode_tokens_per_s: float
    pp_bubble_fraction: float
    prefill_bound: str
    decode_bound: str
    first_decode_step: dict
    prefill_steps: int

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_latency(
    model: ModelSpec | str,
    hardware: HardwareSpec | str,
    tp: int = 1,
    pp: int = 1,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    batch_size: int = 1,
    prompt_len: int = 1024,
    output_len: int = 256,
    mfu: float | None = None,
    mbu: float | None = None,
    step_overhead: float | None = None,
    max_num_batched_tokens: int | None = None,
    micro_batches: int | None = None,
) -> LatencyEstimate:
    """TTFT / TPOT / throughput of ``batch_size`` requests on one replica.

    ``mfu``, ``mbu`` and ``step_overhead`` (seconds) default to ``RooflinePerfModel``'s,
    ``max_num_batched_tokens`` to ``EngineConfig.max_batched_tokens``'s default.
    """
    # Imported here: etalon.perf.roofline imports this package, so a top-level import would cycle.
    from etalon.engine.config import EngineConfig
    from etalon.perf.roofline import RooflinePerfModel

    efficiency = {k: v for k, v in (("mfu", mfu), ("mbu", mbu), ("step_overhead", step_overhead))
                  if v is not None}
    if max_num_batched_tokens is None:
        max_num_batched_tokens = EngineConfig.max_batched_tokens

    for key, value in (("batch-size", batch_size), ("context-len", prompt_len), ("output-len", output_len),
                       ("max-num-batched-tokens", max_num_batched_tokens)):
        if value < 1:
            raise EstimatorError(f"--{key} must be positive, got {value}")
    perf = RooflinePerfModel(model, hardware, tp=tp, pp=pp, dtype=dtype, kv_dtype=kv_dtype,
                             **efficiency)
    mfu, mbu = perf.mfu, perf.mbu
    steps = chunked_prefill(batch_size, prompt_len, max_num_batched_tokens)
    prefill = [perf.breakdown(s) for s in steps]
    ttft = sum(b.total_s for b in prefill)
    contexts = batch_size * (prompt_len + np.arange(1, max(output_len, 2), dtype=float))
    decode_times = perf.decode_step_times(batch_size, contexts[: max(output_len - 1, 1)])
    tpot = float(decode_times.mean())
    first = perf.breakdown(StepBatch.decode(batch_size, batch_size * (prompt_len + 1)))
    m = micro_batches or pp
    bubble = (pp - 1) / (m + pp - 1)
    prefill_compute = sum(b.compute_s / mfu for b in prefill)
    prefill_memory = sum(b.memory_s / mbu for b in prefill)
    return LatencyEstimate(
        model=perf.model.name,
        hardware=perf.hardware.key,
        tp=tp,
        pp=pp,
        dtype=perf.dtype,
        kv_dtype=perf.kv_dtype,
        mfu=mfu,
        mbu=mbu,
        batch_size=batch_size,
        prompt_len=prompt_len,
        output_len=output_len,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_s=ttft + (output_len - 1) * tpot,
        prefill_tokens_per_s=batch_size * prompt_len / ttft,
        decode_tokens_per_s=batch_size / tpot,
        pipelined_decode_tokens_per_s=m * batch_size * pp / (tpot * (m + pp - 1)),
        pp_bubble_fraction=bubble,
        prefill_bound="compute" if prefill_compute >= prefill_memory else "memory",
        decode_bound=first.bound,
        first_decode_step=asdict(first),
        prefill_steps=len(steps),
    )
