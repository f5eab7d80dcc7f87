"""One request's state inside the engine: how much of its prompt is computed, what it has produced."""

from __future__ import annotations

from enum import Enum

import numpy as np

from etalon.engine.kv_cache import blocks_for


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

    While it decodes, a sequence is a member of its engine's ``DecodeCohort`` (``cohort``):
    its counters are then kept as of its ``anchor`` step and read through the properties.
    """

    __slots__ = (
        "request_id", "prompt_tokens", "output_tokens", "arrival_time", "state",
        "_computed", "prefill_target", "_generated", "_blocks", "num_preemptions",
        "first_scheduled_at", "finished_at", "token_segments", "tag",
        "block_hashes", "cached_blocks", "hit_tokens", "cohort", "anchor", "join_id", "order",
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
        self._computed = 0
        self.prefill_target = prompt_tokens
        self._generated = 0
        self._blocks = 0
        self.num_preemptions = 0
        self.first_scheduled_at: float | None = None
        self.finished_at: float | None = None
        # Emission times, as a list of float arrays (a fast-forward appends one shared slice).
        self.token_segments: list[np.ndarray | float] = []
        self.tag = tag  # opaque to the engine: the server hangs its stream here
        self.block_hashes = block_hashes
        self.cached_blocks = 0
        self.hit_tokens = 0
        self.cohort = None  # the engine's decoding batch while this sequence decodes
        self.anchor = self.join_id = 0  # the cohort step it joined at, and that join's number
        self.order = 0  # when the engine last admitted it (its place in the running queue)

    # -- counters: explicit, or implicit in the cohort's step count while decoding ---------------

    def _decoded_in_cohort(self) -> int:
        """Decode steps run since the sequence joined its cohort (0 outside one)."""
        c = self.cohort
        return 0 if c is None else c.steps - self.anchor

    @property
    def num_computed(self) -> int:
        return self._computed + self._decoded_in_cohort()

    @num_computed.setter
    def num_computed(self, value: int) -> None:
        self._explicit("num_computed")
        self._computed = value

    @property
    def generated(self) -> int:
        return self._generated + self._decoded_in_cohort()

    @generated.setter
    def generated(self, value: int) -> None:
        self._explicit("generated")
        self._generated = value

    @property
    def blocks(self) -> int:
        c = self.cohort
        if c is None:
            return self._blocks
        return blocks_for(self.num_computed + c.pending, c.block_size)

    @blocks.setter
    def blocks(self, value: int) -> None:
        self._explicit("blocks")
        self._blocks = value

    def _explicit(self, name: str) -> None:
        if self.cohort is not None:
            raise RuntimeError(f"request {self.request_id}: {name} is kept by the decoding batch; "
                               "the engine must let the sequence leave it first")

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
        if self.cohort is not None and self.cohort.steps > self.anchor:
            segments = segments + [self.cohort.token_times(self)]
        if out is None:
            out = np.empty(sum(len(s) if type(s) is np.ndarray else 1 for s in segments))
        # (a copy either way: a fast-forward's array is shared by the batch that decoded it)
        i = 0
        for s in segments:
            if type(s) is np.ndarray:
                j = i + len(s)
                out[i:j] = s
                i = j
            else:
                out[i] = s
                i += 1
        if i != len(out):
            raise ValueError(f"request {self.request_id}: {i} token times for {len(out)} places")
        return out

    def __repr__(self) -> str:
        return (f"Sequence({self.request_id}, {self.state.value}, computed={self.num_computed}/"
                f"{self.prefill_target}, generated={self.generated}/{self.output_tokens})")
