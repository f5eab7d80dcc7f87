"""Batching policies: given the engine's queues, decide what the next step computes.

Each policy is a function ``plan(engine, now) -> StepPlan | float | None``: a plan to run, a
time to wake up at (the windowed policy waiting for its batch to fill), or ``None`` when there
is nothing to do. Policies admit sequences and grow their KV allocation through the engine's
methods, so KV accounting stays in one place; they read the head of the waiting queue through
``engine.next_waiting()``, which first looks up its cached prefix.

A decode-only plan is *stable*: every policy produces one only when no waiting sequence can be
admitted, and nothing but a finish, an arrival or a full KV cache changes that. The engine's
fast-forward relies on this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from etalon.engine.sequence import SeqState
from etalon.registry import raw

if TYPE_CHECKING:
    from etalon.engine.engine import Engine
    from etalon.engine.sequence import Sequence


@dataclass
class StepPlan:
    prefill: list[tuple["Sequence", int]] = field(default_factory=list)  # (sequence, chunk tokens)
    decode: list["Sequence"] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.prefill and not self.decode

    @property
    def decode_only(self) -> bool:
        return not self.prefill and bool(self.decode)


# A policy is ``plan(engine, now) -> StepPlan | float | None`` (a step, a time to wake, or
# nothing to do), registered under the name ``--scheduler`` takes.
register = raw("scheduler").register


def _admit_ready(engine: "Engine") -> None:
    """Admits waiting sequences whose KV is already computed (handed over by a disaggregated
    prefill pool, or a decode-only request), so they decode in this very step."""
    while (engine.waiting and engine.waiting[0].remaining_prefill == 0
           and len(engine.running) < engine.config.max_batch_size):
        if not engine.admit(engine.waiting[0], 0):
            break


def _admit_whole_prompts(engine: "Engine", plan: StepPlan, budget: int) -> int:
    """Admits waiting sequences FCFS with their whole prompt while slots, tokens and KV allow.

    A prompt longer than the whole budget is admitted alone rather than starving forever.
    Returns the budget left.
    """
    cfg = engine.config
    while engine.waiting and len(engine.running) < cfg.max_batch_size:
        seq = engine.next_waiting()
        need = seq.remaining_prefill
        if need > budget and (plan.prefill or plan.decode or budget < cfg.max_batched_tokens):
            break
        if not engine.admit(seq, need):
            break
        plan.prefill.append((seq, need))
        budget -= need
    return budget


@register("vllm")
def plan_vllm(engine: "Engine", now: float) -> "StepPlan | None":
    """vLLM's classic policy: prefill first (whole prompts), otherwise decode everything running."""
    _admit_ready(engine)
    plan = StepPlan()
    _admit_whole_prompts(engine, plan, engine.config.max_batched_tokens)
    if plan.prefill:
        return plan
    plan.decode = engine.reserve_decodes(list(engine.running))
    return plan if plan.decode else None


@register("orca")
def plan_orca(engine: "Engine", now: float) -> "StepPlan | None":
    """Orca's iteration-level batching: every step decodes the running sequences and admits new
    ones with their whole prompt in the same step."""
    _admit_ready(engine)
    plan = StepPlan()
    plan.decode = engine.reserve_decodes(engine.decoding)
    _admit_whole_prompts(engine, plan, engine.config.max_batched_tokens - len(plan.decode))
    return None if plan.empty else plan


@register("sarathi")
def plan_sarathi(engine: "Engine", now: float) -> "StepPlan | None":
    """Sarathi-style chunked prefill: decodes first, then prefill chunks fill the token budget
    (vLLM's chunked-prefill scheduler behaves this way)."""
    _admit_ready(engine)
    cfg = engine.config
    chunk_cap = cfg.chunk_size or cfg.max_batched_tokens
    plan = StepPlan()
    prefilling = list(engine.prefilling)  # (a copy: the decodes' reservations may preempt)
    plan.decode = engine.reserve_decodes(engine.decoding)
    budget = cfg.max_batched_tokens - len(plan.decode)
    for seq in prefilling:
        if budget <= 0:
            break
        if seq.state is SeqState.RUNNING:  # not preempted by the decodes' reservations
            chunk = min(seq.remaining_prefill, budget, chunk_cap)
            if not engine.grow(seq, chunk):
                break
            plan.prefill.append((seq, chunk))
            budget -= chunk
    while budget > 0 and engine.waiting and len(engine.running) < cfg.max_batch_size:
        seq = engine.next_waiting()
        chunk = min(seq.remaining_prefill, budget, chunk_cap)
        if not engine.admit(seq, chunk):
            break
        plan.prefill.append((seq, chunk))
        budget -= chunk
    return None if plan.empty else plan


@register("static")
def plan_static(engine: "Engine", now: float) -> "StepPlan | None":
    """Static (greedy) batching: take as many waiting requests as fit, run the batch until every
    member finishes, and only then form the next batch."""
    if engine.running:
        decode = engine.reserve_decodes(engine.decoding)
        return StepPlan(decode=decode) if decode else None
    plan = StepPlan()
    _admit_whole_prompts(engine, plan, engine.config.max_batched_tokens)
    return plan if plan.prefill else None


@register("windowed")
def plan_windowed(engine: "Engine", now: float) -> "StepPlan | float | None":
    """Static batching that waits up to ``batch_window`` seconds after the oldest waiting
    request for the batch to fill before starting it."""
    cfg = engine.config
    if not engine.running and engine.waiting and len(engine.waiting) < cfg.max_batch_size:
        start_by = engine.waiting[0].arrival_time + cfg.batch_window
        if now < start_by:
            return start_by
    return plan_static(engine, now)
