"""One request's state inside the engine: how much of its prompt is computed, what it has produced."""

from __future__ import annotations

from enum import Enum

import numpy as np


class SeqState(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    """A request as the engine sees it.

    ``num_computed`` counts tokens whose KV entries are in the cache. Prefill runs until
    ``num_computed == prefill_target``; the step that completes it emits a token. Each decode step
    then processes the newest token and emits the next. Preemption by recompute drops the cache
    and makes the prompt plus everything generated so far the new prefill target, as vLLM does.

    With prefix caching, ``block_hashes`` are the hashes of the prompt's full blocks (None: the
    request cannot share blocks); the first ``cached_blocks`` of them are held by reference in
    the pool, and ``hit_tokens`` prompt tokens were found there instead of being computed.
    """

    __slots__ = (
        "request_id", "prompt_tokens", "output_tokens", "arrival_time", "state",
        "num_computed", "prefill_target", "generated", "blocks", "num_preemptions",
        "first_scheduled_at", "finished_at", "token_segments", "tag",
        "block_hashes", "cached_blocks", "hit_tokens",
    )

    def __init__(self, request_id: int, prompt_tokens: int, output_tokens: int,
                 arrival_time: float, tag: object = None,
                 block_hashes: list[int] | None = None):
        if prompt_tokens < 1 or output_tokens < 1:
            raise ValueError(
                f"request {request_id}: prompt and output tokens must be >= 1, "
                f"got {prompt_tokens} and {output_tokens}"
            )
        self.request_id = request_id
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.arrival_time = arrival_time
        self.state = SeqState.WAITING
        self.num_computed = 0
        self.prefill_target = prompt_tokens
        self.generated = 0
        self.blocks = 0
        self.num_preemptions = 0
        self.first_scheduled_at: float | None = None
        self.finished_at: float | None = None
        # Emission times, as a list of float arrays (a fast-forward appends one shared slice).
        self.token_segments: list[np.ndarray | float] = []
        self.tag = tag  # opaque to the engine: the server hangs its stream here
        self.block_hashes = block_hashes
        self.cached_blocks = 0
        self.hit_tokens = 0

    @property
    def in_prefill(self) -> bool:
        return self.num_computed < self.prefill_target

    @property
    def remaining_prefill(self) -> int:
        return self.prefill_target - self.num_computed

    @property
    def remaining_output(self) -> int:
        return self.output_tokens - self.generated

    def token_times(self, out: np.ndarray | None = None) -> np.ndarray:
        """Every emitted token's time, in order (written into ``out``, of ``generated``
        entries, when given)."""
        segments = self.token_segments
        if not segments:
            return np.empty(0) if out is None else out
        # runs of single times become one array each, so concatenate sees a few parts, not one
        # tuple per token
        parts, run = [], []
        for s in segments:
            if type(s) is np.ndarray:
                if run:
                    parts.append(np.array(run))
                    run = []
                parts.append(s)
            else:
                run.append(s)
        if run:
            parts.append(np.array(run))
        # (a copy either way: a fast-forward's array is shared by the batch that decoded it)
        if out is not None:
            return np.concatenate(parts, out=out)
        return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])

    def __repr__(self) -> str:
        return (f"Sequence({self.request_id}, {self.state.value}, computed={self.num_computed}/"
                f"{self.prefill_target}, generated={self.generated}/{self.output_tokens})")
