"""The decoding sequences of one engine, advanced together in O(1) Python work per step.

Every built-in policy's decode step gives each running sequence past its prefill one token. So
a member's counters need not be touched step by step: it keeps them as they were when it joined
(at its *anchor*, a count of the cohort's decode steps) and reads ``counter + steps - anchor``.
What the engine needs of the whole batch each step is kept as aggregates instead:

* **KV blocks.** A member needs a new block before a step when its computed tokens are a
  multiple of the block size. With ``offset = computed at join - anchor``, that is at step
  ``j`` exactly when ``offset + j ≡ 0 (mod block size)``, so members are counted by
  ``offset mod block size`` and a step's new blocks is one count.
* **Context.** The batch's attended tokens, ``sum(computed + 1)``, is a running sum of offsets
  plus ``n * (steps + 1)``.
* **Finishes.** A member ends at the step that gives its last token, known when it joins: a
  heap of those steps gives the finishers of a step and the steps until the next finish.
* **Token times.** A member's tokens are a contiguous run of the cohort's decode-step end
  times, which the cohort keeps in one growing array; a leaving member takes a view of it.

A member's counters are materialised when it leaves (finish, preemption, abort); the engine
falls back to per-sequence steps for a policy that decodes a subset or a KV cache too full for
the whole batch, after ``dissolve`` makes every member explicit again.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

import numpy as np

from etalon.engine.kv_cache import blocks_for

if TYPE_CHECKING:
    from etalon.engine.sequence import Sequence


class DecodeCohort:
    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.members: dict[Sequence, None] = {}  # insertion-ordered: join order
        self.steps = 0  # decode steps completed
        self.pending = 0  # 1 while the next step's KV blocks are reserved
        self._ends = np.empty(1024)  # end times of decode steps _base, _base + 1, ...
        self._base = 0  # (steps before every member joined are dropped when the array grows)
        self._offsets = 0  # sum over members of (computed at join - anchor)
        self._by_phase = [0] * block_size  # members by offset mod block size
        self._finish: list[tuple[int, int, int, Sequence]] = []  # (end step, order, join, seq)
        self._joins = 0

    def __len__(self) -> int:
        return len(self.members)

    # -- membership ----------------------------------------------------------------------------

    def join(self, seq: Sequence) -> None:
        """Makes ``seq`` (running, past its prefill, with KV for exactly its computed tokens)
        a member from the next decode step on."""
        if self.pending:
            raise RuntimeError("a sequence cannot join the decoding batch while a step is reserved")
        computed = seq._computed
        if seq._blocks != blocks_for(computed, self.block_size):
            raise RuntimeError(f"request {seq.request_id}: holds {seq._blocks} KV blocks for "
                               f"{computed} tokens; the decoding batch needs an exact fit")
        offset = computed - self.steps
        self._offsets += offset
        self._by_phase[offset % self.block_size] += 1
        self._joins += 1
        seq.cohort, seq.anchor, seq.join_id = self, self.steps, self._joins
        heapq.heappush(self._finish, (self.steps + seq.output_tokens - seq._generated,
                                      seq.order, self._joins, seq))
        self.members[seq] = None

    def leave(self, seq: Sequence) -> None:
        """Makes ``seq``'s counters, blocks and token times explicit and drops it."""
        done = self.steps - seq.anchor
        offset = seq._computed - seq.anchor
        self._offsets -= offset
        self._by_phase[offset % self.block_size] -= 1
        seq._computed += done
        seq._generated += done
        seq._blocks = blocks_for(seq._computed + self.pending, self.block_size)
        if done:
            seq.token_segments.append(self.token_times(seq))
        seq.cohort = None
        del self.members[seq]

    def dissolve(self) -> list[Sequence]:
        """Every member leaves (for a step the engine runs sequence by sequence)."""
        left = list(self.members)
        for seq in left:
            self.leave(seq)
        self._finish.clear()
        self.pending = 0
        return left

    # -- what the next steps need ----------------------------------------------------------------

    def needing_block(self) -> list[Sequence]:
        """The members that need a new block for the next step, in admission order."""
        bs = self.block_size
        phase = -self.steps % bs
        needy = [s for s in self.members if (s._computed - s.anchor) % bs == phase]
        return sorted(needy, key=lambda s: s.order)

    def blocks_needed(self, first: int, count: int) -> int:
        """New KV blocks the members need to run decode steps ``first .. first + count - 1``."""
        bs = self.block_size
        cycles, rest = divmod(max(count, 0), bs)
        total = cycles * len(self.members)  # each member needs one block per bs steps
        if rest:
            # step j needs the members of phase -j mod bs: for the rest steps a run of phases
            # going down from -first mod bs, which may wrap past 0
            by_phase = self._by_phase
            hi = -first % bs
            lo = hi - rest + 1
            total += sum(by_phase[max(lo, 0):hi + 1])
            if lo < 0:
                total += sum(by_phase[lo % bs:])
        return total

    def context(self) -> int:
        """``sum(computed + 1)`` over the members at the next step: what its attention reads."""
        return self._offsets + len(self.members) * (self.steps + 1)

    def steps_to_finish(self) -> int:
        """Decode steps until the first member finishes (the step that ends it included)."""
        self._drop_stale()
        return self._finish[0][0] - self.steps

    def token_times(self, seq: Sequence) -> np.ndarray:
        """The end times of the steps a member has decoded so far (a view)."""
        return self._ends[seq.anchor - self._base:self.steps - self._base]

    # -- stepping ------------------------------------------------------------------------------

    def advance(self, ends: np.ndarray | float) -> list[Sequence]:
        """Records one or more decode steps that ended at ``ends``; returns the members that
        finished, in admission order (their counters still implicit: the engine lets them
        ``leave``)."""
        times = np.atleast_1d(ends)
        n = len(times)
        used = self.steps - self._base
        if used + n > len(self._ends):
            # keep only the steps a member still needs (a long-running server's array stays
            # as long as its longest-decoding request, not its uptime); views handed out keep
            # the old array alive as long as they need it
            keep = min((s.anchor for s in self.members), default=self.steps) - self._base
            grown = np.empty(max(2 * (used - keep + n), 1024))
            grown[:used - keep] = self._ends[keep:used]
            self._ends, self._base, used = grown, self._base + keep, used - keep
        self._ends[used:used + n] = times
        self.steps += n
        self.pending = 0
        finished = []
        heap = self._finish
        while heap and heap[0][0] <= self.steps:
            end, _order, join, seq = heapq.heappop(heap)
            if seq.cohort is self and seq.join_id == join:
                if end != self.steps:
                    raise RuntimeError(f"request {seq.request_id} ran past its last token")
                finished.append(seq)
        return finished

    def _drop_stale(self) -> None:
        heap = self._finish
        while heap and not (heap[0][3].cohort is self and heap[0][3].join_id == heap[0][2]):
            heapq.heappop(heap)
