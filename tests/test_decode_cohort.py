"""The decoding cohort: its aggregates against sequence-by-sequence arithmetic, and whole runs
through the cohort against the engine's per-sequence path (which a plug-in policy takes)."""

from __future__ import annotations

import numpy as np
import pytest

from etalon.engine import Engine, EngineConfig, Sequence
from etalon.engine.cohort import DecodeCohort
from etalon.engine.kv_cache import blocks_for
from etalon.engine.schedulers import plan_orca, plan_sarathi, plan_static, plan_vllm
from etalon.perf import ParametricPerfModel
from etalon.registry import raw


def _member(i: int, computed: int, generated: int, output: int, bs: int) -> Sequence:
    seq = Sequence(i, computed, output, 0.0)
    seq._computed, seq._generated = computed, generated
    seq._blocks = blocks_for(computed, bs)
    seq.order = i
    return seq


def test_aggregates_match_each_members_own_counts():
    """Members join at different steps; after each step the cohort's new-block count, context
    and next finish equal what walking every member's counters gives."""
    rng = np.random.default_rng(7)
    bs = 16
    cohort = DecodeCohort(bs)
    members = []
    for step in range(60):
        for _ in range(int(rng.integers(0, 3))):
            seq = _member(len(members), int(rng.integers(1, 200)), 1, int(rng.integers(2, 90)), bs)
            cohort.join(seq)
            members.append(seq)
        live = [s for s in members if s.cohort is cohort]
        if not live:
            continue
        computed = np.array([s.num_computed for s in live])
        # a member needs a block before a step when its computed tokens fill its last block
        assert cohort.blocks_needed(cohort.steps, 1) == int(np.sum(computed % bs == 0))
        for k in (1, 5, 17, 40):  # blocks for k steps: every member's growth summed
            expect = int(np.sum([blocks_for(c + k, bs) - blocks_for(c, bs) for c in computed]))
            assert cohort.blocks_needed(cohort.steps, k) == expect
        assert cohort.context() == int(np.sum(computed + 1))
        assert cohort.steps_to_finish() == min(s.output_tokens - s.generated for s in live)
        for seq in cohort.advance(float(step)):
            assert seq.generated == seq.output_tokens
            cohort.leave(seq)
        if step % 7 == 3 and len(cohort):  # someone leaves early (a preemption)
            seq = next(iter(cohort.members))
            before = seq.num_computed, seq.generated
            cohort.leave(seq)
            assert (seq.num_computed, seq.generated) == before
            assert seq.blocks == blocks_for(seq.num_computed, bs)


def test_a_member_reads_its_token_times_from_the_step_ends():
    cohort = DecodeCohort(16)
    seq = _member(0, 40, 1, 4, 16)
    seq.token_segments.append(0.5)  # the token its prefill produced
    cohort.advance(0.6)  # a step before it joined
    cohort.join(seq)
    cohort.advance(np.array([0.7, 0.8]))
    np.testing.assert_allclose(seq.token_times(), [0.5, 0.7, 0.8])  # still a member
    assert cohort.advance(0.9) == [seq]
    cohort.leave(seq)
    np.testing.assert_allclose(seq.token_times(), [0.5, 0.7, 0.8, 0.9])
    assert (seq.num_computed, seq.generated) == (43, 4)


def test_the_step_end_array_keeps_only_what_members_still_need():
    """An embedded server decodes for days: the array of step ends must not grow with uptime."""
    cohort = DecodeCohort(16)
    for i in range(20_000):  # short requests come and go
        if i % 10 == 0:
            cohort.join(_member(i, 16, 1, 10, 16))
        for seq in cohort.advance(float(i)):
            cohort.leave(seq)
    long = _member(1, 16, 1, 3_000, 16)
    cohort.join(long)
    for i in range(20_000, 22_000):
        cohort.advance(float(i))
    assert len(cohort._ends) <= 8192  # ~the span of the longest request, not 22,000 steps
    np.testing.assert_array_equal(cohort.token_times(long), np.arange(20_000, 22_000.0))


def test_counters_of_a_member_cannot_be_set():
    cohort = DecodeCohort(16)
    seq = _member(0, 40, 1, 4, 16)
    cohort.join(seq)
    with pytest.raises(RuntimeError, match="decoding batch"):
        seq.num_computed = 3


def _per_sequence(policy):
    """The same policy, but its decode list is a copy: the engine cannot tell it is the whole
    cohort and runs the step sequence by sequence."""
    def plan(engine, now):
        p = policy(engine, now)
        if p is not None and not isinstance(p, float) and p.decode:
            p.decode = list(p.decode)
        return p
    return plan


POLICIES = {"vllm": plan_vllm, "sarathi": plan_sarathi, "orca": plan_orca, "static": plan_static}
for _name, _policy in POLICIES.items():
    raw("scheduler").register(f"_per_sequence_{_name}", _per_sequence(_policy))


def _run(scheduler: str, seqs: list[Sequence], caching: bool, fast: bool) -> Engine:
    cfg = EngineConfig(scheduler=scheduler, max_batch_size=24, max_batched_tokens=256,
                       num_kv_blocks=70, block_size=8, enable_prefix_caching=caching)
    eng = Engine(cfg, ParametricPerfModel())
    pending = sorted(seqs, key=lambda s: s.arrival_time)
    t = 0.0
    while pending or not eng.idle:
        while pending and pending[0].arrival_time <= t:
            eng.add(pending.pop(0))
        step = eng.schedule(t)
        if step is None:
            t = pending[0].arrival_time
            continue
        if fast and step.plan.decode_only:
            k = eng.decode_horizon(step.plan)
            if pending:  # stop at the next arrival, as the simulator does
                times = eng.decode_times(step, k)
                k = max(1, int(np.searchsorted(times, pending[0].arrival_time)))
            out = eng.fast_forward(step, eng.decode_times(step, k))
        else:
            out = eng.complete(step, t + step.duration)
        t = out.end
    return eng


def _workload(seed: int, caching: bool) -> list[Sequence]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(40):
        prompt, output = int(rng.integers(5, 120)), int(rng.integers(1, 50))
        hashes = None
        if caching:  # three shared 32-token system prompts, as block hashes of 8-token blocks
            group = int(rng.integers(3))
            hashes = [hash(("g", group, b)) for b in range(4)] + [
                hash(("own", i, b)) for b in range((prompt + 32) // 8 - 4)]
            prompt += 32
        out.append(Sequence(i, prompt, output, float(rng.exponential(0.02)) * i,
                            block_hashes=hashes))
    return out


@pytest.mark.parametrize("caching", [False, True])
@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("scheduler", sorted(POLICIES))
def test_cohort_steps_equal_per_sequence_steps(scheduler, fast, caching):
    """A small KV cache (preemptions), arrivals during decoding, and with caching shared
    prefixes: every token time, preemption and pool count is the same either way."""
    a, b = _workload(3, caching), _workload(3, caching)
    cohort = _run(scheduler, a, caching, fast)
    explicit = _run(f"_per_sequence_{scheduler}", b, caching, fast)
    assert cohort.num_steps == explicit.num_steps
    assert scheduler == "static" or cohort.num_preemptions > 0  # the cache ran short
    assert cohort.num_preemptions == explicit.num_preemptions
    assert (cohort.pool.peak, cohort.pool.evictions) == (explicit.pool.peak, explicit.pool.evictions)
    assert cohort.pool.used == explicit.pool.used == 0
    for x, y in zip(a, b):
        assert len(x.token_times()) == x.output_tokens
        np.testing.assert_array_equal(x.token_times(), y.token_times())


def test_a_request_aborted_during_a_step_gives_back_every_block():
    """The embedded server aborts a request whose client left, possibly while a step that
    decodes it is in flight: its blocks, including the one reserved for that step, return."""
    eng = Engine(EngineConfig(scheduler="vllm", block_size=4, num_kv_blocks=100),
                 ParametricPerfModel())
    seqs = [Sequence(i, 10 + i, 20, 0.0) for i in range(4)]
    for s in seqs:
        eng.add(s)
    step = eng.schedule(0.0)
    t = eng.complete(step, step.duration).end  # the prefills: seq 2 fills 3 blocks of 4 tokens
    step = eng.schedule(t)  # a decode step: its 13th token needs a 4th block
    assert seqs[2].blocks == 4
    used = eng.pool.used
    eng.abort(seqs[2])
    assert eng.pool.used == used - 4
    t = eng.complete(step, t + step.duration).end
    while not eng.idle:
        step = eng.schedule(t)
        t = eng.complete(step, t + step.duration).end
    assert eng.pool.used == 0
    assert [len(s.token_times()) for s in seqs] == [20, 20, 1, 20]  # seq 2: its prefill's token
