"""The performance-model interface: how long one engine step takes.

The engine, the simulator, the embedded server and the estimator all time steps through a
``PerfModel``; implementations (parametric, roofline, profiled) depend on this module, never the
reverse. All times are seconds; all sizes are tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepBatch:
    """What one engine step computes, reduced to the aggregates step time depends on.

    - ``prefill_tokens``: prompt tokens processed this step, over all prefill chunks.
    - ``prefill_attention``: causal (query, key) pairs of those chunks,
      ``sum(c * (ctx + (c + 1) / 2))`` for a chunk of ``c`` tokens after ``ctx`` cached ones;
      an isolated prompt of ``n`` tokens has ``n (n + 1) / 2``.
    - ``num_prefill_seqs``: sequences with a prefill chunk this step.
    - ``decode_batch``: sequences producing one token each this step.
    - ``decode_context``: sum of those sequences' context lengths (KV tokens read).
    - ``prefill_cross_pairs``: pairs of prompt tokens from *different* sequences in the step,
      ``(T² - Σ c²) / 2`` for chunks ``c`` summing to ``T``. A kernel that attends per sequence
      never computes them; an engine whose prefill cost curves with the step's total tokens
      (measured on vLLM-CPU, docs/real_engine.md) pays for them like attention pairs.
    - ``prefill_context_pairs``: the part of ``prefill_attention`` between a chunk's tokens and
      the tokens already in the cache before it (an earlier chunk, a cached prefix),
      ``sum(c * ctx)``; a profile measures its price apart (``prefill.context``).
    """

    prefill_tokens: int = 0
    prefill_attention: float = 0.0
    num_prefill_seqs: int = 0
    decode_batch: int = 0
    decode_context: int = 0
    prefill_cross_pairs: float = 0.0
    prefill_context_pairs: float = 0.0

    @staticmethod
    def cross_pairs(chunks) -> float:
        """Token pairs across different sequences' chunks: ``(T² - Σ c²) / 2``."""
        total = squares = 0
        for c in chunks:
            total += c
            squares += c * c
        return (total * total - squares) / 2.0

    @staticmethod
    def attention_pairs(chunk: int, context_before: int) -> float:
        return chunk * (context_before + (chunk + 1) / 2.0)

    @classmethod
    def prefill(cls, prompt_tokens: int) -> "StepBatch":
        """An isolated prefill of a whole prompt (what a prefill profiler measures)."""
        return cls(prompt_tokens, cls.attention_pairs(prompt_tokens, 0), 1, 0, 0)

    @classmethod
    def decode(cls, batch_size: int, context_sum: int) -> "StepBatch":
        return cls(0, 0.0, 0, batch_size, context_sum)

    @property
    def prefill_cached_tokens(self) -> float:
        """Cached prefix the prefill chunks read, over all chunks, recovered from the pair count
        (``pairs = c·ctx + c(c+1)/2`` per chunk) taking the chunks as equal."""
        if not (self.prefill_tokens and self.num_prefill_seqs):
            return 0.0
        chunk = self.prefill_tokens / self.num_prefill_seqs
        return max(self.prefill_attention - self.prefill_tokens * (chunk + 1) / 2.0, 0.0) / chunk

    @property
    def empty(self) -> bool:
        return self.prefill_tokens == 0 and self.decode_batch == 0


class PerfModel(ABC):
    """Step time of a serving engine for a batch.

    Postcondition: ``step_time`` is positive for a non-empty batch and never decreases when
    tokens, sequences or context are added.
    """

    name: str = "perf-model"

    @property
    def request_path_s(self) -> float:
        """Seconds a request spends outside the engine before its first step can include it
        (HTTP, tokenization, hand-off to the engine loop). The simulator charges it to every
        request; a live server pays its own. 0 unless the model was measured end to end."""
        return 0.0

    def wake_up_s(self, idle_s: float) -> float:
        """Extra seconds the first step after ``idle_s`` seconds without work takes (caches and
        memory gone cold, a descheduled core; ``idle_s`` may be ``inf``: idle since start).
        0 unless measured."""
        return 0.0

    @abstractmethod
    def step_time(self, batch: StepBatch) -> float:
        """Seconds one engine step takes for ``batch``."""

    def decode_step_times(self, batch_size: int, context_sums: np.ndarray) -> np.ndarray:
        """Durations of consecutive decode-only steps, one per entry of ``context_sums``.

        The simulator advances many identical-shape decode steps at once through this; models
        override it with a vectorised formula. The default loops over ``step_time``.
        """
        return np.array(
            [self.step_time(StepBatch.decode(batch_size, int(c))) for c in context_sums],
            dtype=float,
        )

    def prefill_time(self, prompt_tokens: int) -> float:
        """Seconds to prefill one isolated prompt (convenience for SLOs and reports)."""
        return self.step_time(StepBatch.prefill(prompt_tokens))

    def describe(self) -> dict:
        """A JSON-able description written into configs and summaries."""
        return {"kind": self.name}
