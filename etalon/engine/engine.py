"""A clock-agnostic continuous-batching serving engine.

The engine is pure logic: requests are added, ``schedule(now)`` plans a step and prices it with a
``PerfModel``, ``complete(step, end)`` applies it and reports the tokens it produced. The
simulator drives it with a virtual clock; ``etalon.serve`` with the wall clock. Between batch
changes decode steps are alike, so ``fast_forward`` advances many of them in one vectorised go.
The sequences past their prefill form a ``DecodeCohort``, so a step that decodes them all costs
the same few Python operations at any batch size.
With ``enable_prefix_caching`` a sequence admitted with a cached prompt prefix (``kv_cache``)
starts with those tokens computed, so its steps are charged only for the rest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from etalon.cli_errors import UserError
from etalon.engine.cohort import DecodeCohort
from etalon.engine.config import EngineConfig
from etalon.engine.kv_cache import BlockPool, blocks_for, synthetic_block_hashes
from etalon.engine.schedulers import StepPlan
from etalon.registry import registry
from etalon.engine.sequence import Sequence, SeqState
from etalon.perf.base import PerfModel, StepBatch


@dataclass
class Step:
    """A planned step: what it computes and how long it takes."""

    plan: StepPlan
    batch: StepBatch
    duration: float
    start: float


@dataclass
class StepOutcome:
    """What a completed step produced: ``emitted`` holds (sequence, tokens) pairs of the
    prefills that produced their first token; each of ``decoded`` produced ``decode_steps``."""

    end: float
    emitted: list[tuple[Sequence, int]] = field(default_factory=list)
    finished: list[Sequence] = field(default_factory=list)
    decoded: list[Sequence] = field(default_factory=list)
    decode_steps: int = 1


class Engine:
    """One serving replica: queues, KV blocks, a batching policy and a performance model."""

    def __init__(self, config: EngineConfig, perf_model: PerfModel):
        self.config = config.validate()
        self.perf = perf_model
        self.pool = BlockPool(config.kv_blocks, config.block_size)
        self._plan = registry("scheduler").get(config.scheduler)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # in admission order
        self.cohort = DecodeCohort(config.block_size)  # the running sequences past prefill ...
        self.prefilling: list[Sequence] = []  # ... and the others, in admission order
        self._reserved: list[Sequence] | None = None  # a whole-cohort decode list with its KV
        self._dissolved = False  # a per-sequence step is under way: the cohort is empty
        self._admissions = 0
        self.num_preemptions = 0
        self.busy_time = 0.0
        self.num_steps = 0
        self.caching = config.enable_prefix_caching
        self.prefix_query_tokens = 0  # prompt tokens of admitted cacheable sequences ...
        self.prefix_hit_tokens = 0  # ... and how many of them the prefix cache held
        # When the engine last ran out of work; None while it is busy. A new engine has been
        # idle "forever", so its first step pays the wake-up of the longest pause.
        self._idle_since: float | None = float("-inf")

    # -- queue and KV bookkeeping used by the policies -------------------------------------

    def add(self, seq: Sequence) -> None:
        max_tokens = seq.prompt_tokens + seq.output_tokens
        if blocks_for(max_tokens, self.pool.block_size) > self.pool.num_blocks:
            raise UserError(
                f"request {seq.request_id}: {max_tokens} tokens can never fit the KV cache "
                f"({self.config.kv_capacity_tokens} tokens)"
            )
        self.waiting.append(seq)

    def block_hashes_of(self, request) -> list[int] | None:
        """The block hashes of a synthetic request (one with ``request_id``, ``prompt_tokens``,
        ``output_tokens``, ``prefix_group`` and ``prefix_tokens``); None without caching.

        A request whose whole prompt is its group's (a session's turn: the next turn resends
        the prompt and this answer) is hashed over its answer too, as the group's tokens, so
        the blocks the answer fills are found by the next turn, as vLLM's hashes of every full
        block of a sequence are. Other requests' hashes cover their prompt.
        """
        if not self.caching:
            return None
        tokens, shared = request.prompt_tokens, request.prefix_tokens
        if request.prefix_group is not None and shared >= tokens:
            tokens = shared = tokens + request.output_tokens
        return synthetic_block_hashes(request.request_id, tokens, request.prefix_group, shared,
                                      self.pool.block_size)

    def next_waiting(self) -> Sequence:
        """The head of the waiting queue, its cached prefix looked up (policies read its
        ``remaining_prefill`` to size its chunk).

        A hit sets ``num_computed`` to the cached tokens: whole blocks, and never the whole
        prompt (the last token is always computed, as vLLM does, to produce logits).
        """
        seq = self.waiting[0]
        if self.caching and seq.block_hashes is not None and seq.blocks == 0:
            bs = self.pool.block_size
            hit = self.pool.match(seq.block_hashes, (seq.prefill_target - 1) // bs) * bs
            seq.num_computed += hit - seq.hit_tokens  # replaces an earlier, stale look-up
            seq.hit_tokens = hit
        return seq

    def admit(self, seq: Sequence, tokens: int) -> bool:
        """Moves the head of the waiting queue to running with KV for ``tokens`` more tokens
        (after its cached prefix, which it takes a reference on)."""
        if seq.hit_tokens and seq.blocks == 0:
            hits = seq.block_hashes[:seq.hit_tokens // self.pool.block_size]
            need = blocks_for(seq.num_computed + tokens, self.pool.block_size) - len(hits)
            if need + self.pool.evictable(hits) > self.pool.free:
                return False
            self.pool.acquire(hits)
            seq.blocks = seq.cached_blocks = len(hits)
            self.pool.allocate(need)
            seq.blocks += need
        elif not self.grow(seq, tokens):
            return False
        if self.caching and seq.block_hashes is not None:
            self.prefix_query_tokens += seq.prefill_target
            self.prefix_hit_tokens += seq.hit_tokens
        self.waiting.popleft()
        seq.state = SeqState.RUNNING
        self._admissions += 1
        seq.order = self._admissions
        self.running.append(seq)
        if seq.in_prefill:
            self.prefilling.append(seq)
        else:  # its KV was computed elsewhere (a decode pool): it decodes from this step on
            self.cohort.join(seq)
        return True

    def grow(self, seq: Sequence, tokens: int) -> bool:
        """Makes room in the KV cache for ``tokens`` more of ``seq``'s tokens, if it can."""
        need = blocks_for(seq.num_computed + tokens, self.pool.block_size) - seq.blocks
        if need <= 0:
            return True
        if not self.pool.can_allocate(need):
            return False
        self.pool.allocate(need)
        seq.blocks += need
        return True

    def free(self, seq: Sequence) -> None:
        """Returns ``seq``'s KV blocks to the pool; its hashed ones stay there as cached."""
        if seq.cached_blocks:
            self.pool.release_hashed(seq.block_hashes[:seq.cached_blocks])
            self.pool.release(seq.blocks - seq.cached_blocks)
            seq.cached_blocks = 0
        else:
            self.pool.release(seq.blocks)
        seq.blocks = 0

    @property
    def decoding(self) -> list[Sequence]:
        """The running sequences past their prefill (what a decode step can decode)."""
        return list(self.cohort.members)

    def _leave_running(self, seq: Sequence) -> None:
        self.running.remove(seq)
        if seq.cohort is not None:
            seq.cohort.leave(seq)
        elif seq._computed < seq.prefill_target:
            self.prefilling.remove(seq)

    def abort(self, seq: Sequence) -> None:
        """Drops a request (its client went away), freeing its KV blocks."""
        if seq.state is SeqState.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        elif seq.state is SeqState.RUNNING and seq in self.running:
            self._leave_running(seq)
            self.free(seq)
        seq.state = SeqState.FINISHED

    def preempt(self, seq: Sequence) -> None:
        """Recompute-style preemption: drop the KV, requeue at the front."""
        self._leave_running(seq)
        self.free(seq)
        seq.num_computed = seq.hit_tokens = 0
        seq.prefill_target = seq.prompt_tokens + seq.generated
        seq.state = SeqState.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def reserve_decodes(self, candidates: list[Sequence]) -> list[Sequence]:
        """Gives each candidate a KV slot for its next token, preempting the most recently
        admitted running sequence when the cache is full (vLLM's rule).

        Candidates are served in admission order, as vLLM's running queue is. When they are the
        whole decoding cohort (every built-in policy's case) the cohort reserves its blocks in
        one count, and only a cache too full for them walks the members that need a block;
        otherwise the cohort dissolves and each candidate is served on its own.
        """
        if not candidates:
            return []
        cohort = self.cohort
        if (len(candidates) == len(cohort) and not cohort.pending
                and all(map(cohort.members.__contains__, candidates))):
            need = cohort.blocks_needed(cohort.steps, 1)
            if need <= self.pool.free:
                self.pool.allocate(need)
            else:
                self._reserve_preempting(cohort.needing_block())
            cohort.pending = 1
            self._reserved = granted = list(cohort.members)
            return granted
        self._dissolve()
        candidates = sorted(candidates, key=lambda s: s.order)
        bs = self.pool.block_size
        # Fast path: every candidate is running and the pool has a block for each one whose
        # last block is full, so nobody is preempted and the order does not matter
        running = SeqState.RUNNING
        if all(s.state is running for s in candidates):
            full = [s for s in candidates if s.num_computed >= s.blocks * bs]
            if len(full) <= self.pool.free:
                for seq in full:
                    self.grow(seq, 1)
                return list(candidates)
        granted: list[Sequence] = []
        for seq in candidates:
            if seq.state is not SeqState.RUNNING:
                continue  # preempted to make room for an earlier one
            if seq.num_computed < seq.blocks * bs:  # fast path: its last block has room
                granted.append(seq)
                continue
            while not self.grow(seq, 1):
                victim = self.running[-1]
                self.preempt(victim)
                if victim is seq:
                    break
                if victim in granted:
                    granted.remove(victim)
            else:
                granted.append(seq)
        return granted

    def _reserve_preempting(self, needy: list[Sequence]) -> None:
        """Gives each member of ``needy`` (in admission order) its block, preempting the most
        recently admitted running sequence while the pool has none (vLLM's rule).

        The cohort's ``pending`` stays 0 meanwhile, so a victim gives back the blocks it holds.
        A member already given its block is never a victim: victims come from the back of the
        admission order, and the member being served comes after every one served before it.
        """
        cohort = self.cohort
        for seq in needy:
            if seq.cohort is not cohort:
                continue  # preempted to make room for an earlier one
            while not self.pool.can_allocate(1):
                victim = self.running[-1]
                self.preempt(victim)
                if victim is seq:
                    break
            else:
                self.pool.allocate(1)

    # -- stepping ----------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def schedule(self, now: float) -> Step | float | None:
        """Plans the next step at ``now``; a float is a time to call again, ``None`` means idle."""
        if self._dissolved:  # a plan that dissolved the cohort and then ran nothing
            self._rejoin()
        result = self._plan(self, now)
        if result is None or isinstance(result, float):
            return result
        batch = self._batch_of(result)  # (dissolves the cohort for a per-sequence decode)
        for seq, _ in result.prefill:
            if seq.first_scheduled_at is None:
                seq.first_scheduled_at = now
        duration = self.perf.step_time(batch)
        if self._idle_since is not None:  # the first step after a pause pays the wake-up
            duration += self.perf.wake_up_s(now - self._idle_since)
            self._idle_since = None
        return Step(result, batch, duration, now)

    def _batch_of(self, plan: StepPlan) -> StepBatch:
        prefill_tokens = 0
        attention = earlier = 0.0
        for seq, chunk in plan.prefill:
            prefill_tokens += chunk
            attention += StepBatch.attention_pairs(chunk, seq.num_computed)
            earlier += chunk * seq.num_computed
        cross = StepBatch.cross_pairs(c for _, c in plan.prefill) if len(plan.prefill) > 1 else 0.0
        if plan.decode and plan.decode is self._reserved:
            context = self.cohort.context()
        elif plan.decode:
            self._dissolve()
            context = sum(seq._computed + 1 for seq in plan.decode)
        else:
            context = 0
        return StepBatch(prefill_tokens, attention, len(plan.prefill), len(plan.decode), context,
                         cross, earlier)

    def complete(self, step: Step, end: float) -> StepOutcome:
        """Applies a step that ended at ``end``: advances prefills, emits tokens, frees finishers."""
        out = StepOutcome(end)
        caching = self.caching
        prefilled = []  # sequences whose prefill this step completed: they decode from the next
        for seq, chunk in step.plan.prefill:
            if seq.state is not SeqState.RUNNING:
                continue  # aborted during the step
            seq._computed += chunk
            if caching and seq.block_hashes is not None:
                self._cache_full_blocks(seq)
            if seq._computed >= seq.prefill_target:
                self.prefilling.remove(seq)
                seq._generated += 1
                seq.token_segments.append(end)
                out.emitted.append((seq, 1))
                if seq._generated >= seq.output_tokens:
                    self._finish(seq, end, out)
                else:
                    prefilled.append(seq)
        decode = out.decoded = step.plan.decode
        if decode and decode is self._reserved:
            self._reserved = None
            for seq in self.cohort.advance(end):
                self._finish(seq, end, out)
            for seq in prefilled:
                self.cohort.join(seq)
        elif decode or self._dissolved:
            finished = []
            for seq in decode:  # per sequence: a policy that decodes a subset, a full KV cache
                if seq.state is not SeqState.RUNNING:
                    continue
                seq._computed += 1
                seq._generated += 1
                seq.token_segments.append(end)
                if seq._generated >= seq.output_tokens:
                    finished.append(seq)
            for seq in finished:
                self._finish(seq, end, out)
            self._rejoin()
        else:
            for seq in prefilled:
                self.cohort.join(seq)
        self._after_finishes(out, end)
        self.busy_time += step.duration
        self.num_steps += 1
        return out

    def _after_finishes(self, out: StepOutcome, end: float) -> None:
        if out.finished:
            running = self.running
            for seq in out.finished:
                running.remove(seq)
            if self.idle:
                self._idle_since = end

    def _dissolve(self) -> None:
        """Makes every decoding sequence's state explicit, for a step run sequence by sequence."""
        self._reserved = None
        self._dissolved = True
        self.cohort.dissolve()

    def _rejoin(self) -> None:
        """After a per-sequence step, the running sequences past prefill form the cohort again
        (a reserved block a policy left unused goes back to the pool)."""
        cohort, bs = self.cohort, self.pool.block_size
        self._dissolved = False
        for seq in self.running:
            if (seq.cohort is None and seq.state is SeqState.RUNNING
                    and seq._computed >= seq.prefill_target):
                spare = seq._blocks - blocks_for(seq._computed, bs)
                if spare > 0:
                    self.pool.release(spare)
                    seq._blocks -= spare
                cohort.join(seq)

    def _cache_full_blocks(self, seq: Sequence) -> None:
        """Publishes the prompt blocks ``seq`` has just filled, so later requests can hit them."""
        full = min(seq.num_computed // self.pool.block_size, len(seq.block_hashes))
        if full > seq.cached_blocks:
            self.pool.register(seq.block_hashes[seq.cached_blocks:full])
            seq.cached_blocks = full

    def _finish(self, seq: Sequence, t: float, out: StepOutcome) -> None:
        if seq.cohort is not None:
            seq.cohort.leave(seq)
        seq.state = SeqState.FINISHED
        seq.finished_at = t
        if self.caching and seq.block_hashes is not None:
            self._cache_full_blocks(seq)  # the answer's full blocks, where it has hashes for them
        self.free(seq)
        out.finished.append(seq)

    # -- fast-forward (simulator) ------------------------------------------------------------

    def decode_horizon(self, plan: StepPlan) -> int:
        """How many identical decode-only steps, starting with ``plan``, can run before the batch
        changes: a sequence finishes, or the KV cache cannot hold the next tokens.

        ``plan`` already holds KV for its first step.
        """
        if plan.decode is self._reserved:
            return self._cohort_horizon()
        seqs = plan.decode
        state = np.array([(s.output_tokens - s.generated, s.num_computed, s.blocks) for s in seqs],
                         dtype=np.int64).reshape(-1, 3)
        k_finish = int(state[:, 0].min())
        if k_finish <= 1:
            return 1
        bs = self.pool.block_size
        computed, held = state[:, 1], state[:, 2]
        free = self.pool.free

        def extra_blocks(k: int) -> int:  # blocks needed beyond those held to run k steps
            return int(np.maximum(blocks_for(computed + k, bs) - held, 0).sum())

        if extra_blocks(k_finish) <= free:
            return k_finish
        lo, hi = 1, k_finish  # extra_blocks(lo) <= free < extra_blocks(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if extra_blocks(mid) <= free:
                lo = mid
            else:
                hi = mid
        return lo

    def _cohort_horizon(self) -> int:
        cohort = self.cohort
        k_finish = cohort.steps_to_finish()
        if k_finish <= 1:
            return 1
        first, free = cohort.steps + 1, self.pool.free  # the first step's blocks are reserved
        if cohort.blocks_needed(first, k_finish - 1) <= free:
            return k_finish
        lo, hi = 1, k_finish  # blocks for lo steps fit, for hi steps they do not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if cohort.blocks_needed(first, mid - 1) <= free:
                lo = mid
            else:
                hi = mid
        return lo

    def decode_times(self, step: Step, num_steps: int) -> np.ndarray:
        """End times of ``num_steps`` decode steps of ``step``'s batch run back to back."""
        n = len(step.plan.decode)
        # floats (exact below 2**53), which the models compute in: no int -> float copy
        contexts = np.arange(num_steps, dtype=float)
        contexts *= n
        contexts += step.batch.decode_context
        times = np.cumsum(self.perf.decode_step_times(n, contexts))
        times += step.start
        return times

    def fast_forward(self, step: Step, times: np.ndarray) -> StepOutcome:
        """Applies ``len(times)`` decode steps of ``step``'s batch that ended at ``times``.

        Precondition: ``step`` is decode-only, ``len(times) <= decode_horizon(step.plan)`` and
        ``times`` is a prefix of ``decode_times(step, ...)``. Every sequence gets one token per
        step; they share the one array of emission times.
        """
        seqs = step.plan.decode
        num_steps = len(times)
        end = float(times[-1])
        out = StepOutcome(end, decoded=seqs, decode_steps=num_steps)
        if seqs is self._reserved:
            self._reserved = None
            cohort = self.cohort
            self.pool.allocate(cohort.blocks_needed(cohort.steps + 1, num_steps - 1))
            for seq in cohort.advance(times):
                self._finish(seq, end, out)
            self._after_finishes(out, end)
            self.busy_time += end - step.start
            self.num_steps += num_steps
            return out
        bs = self.pool.block_size
        new_total = 0
        done = []
        for seq in seqs:
            computed = seq.num_computed + num_steps
            seq.num_computed = computed
            blocks = blocks_for(computed, bs)
            if blocks > seq.blocks:
                new_total += blocks - seq.blocks
                seq.blocks = blocks
            seq.generated += num_steps
            seq.token_segments.append(times)
            if seq.generated >= seq.output_tokens:
                done.append(seq)
        self.pool.allocate(new_total)
        for seq in done:
            self._finish(seq, end, out)
        self._rejoin()
        self._after_finishes(out, end)
        self.busy_time += end - step.start
        self.num_steps += num_steps
        return out
