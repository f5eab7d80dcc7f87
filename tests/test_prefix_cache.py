"""Prefix caching in the engine against hand-worked hits, LRU eviction, the pool's bounds and
queueing theory: a fully cached prefix leaves only its suffix to compute."""

from __future__ import annotations

import numpy as np
import pytest

from etalon.engine import Engine, EngineConfig, Sequence
from etalon.engine.kv_cache import BlockPool, synthetic_block_hashes, token_block_hashes
from etalon.perf import ParametricPerfModel
from etalon.simulator import Replica, Simulation, make_router
from etalon.simulator.results import simulation_summary
from etalon.workload.request import Request

# 10 ms per step plus 1 ms per prompt token computed; decode steps cost just the overhead.
FLAT = dict(step_overhead=0.01, per_prefill_token=1e-3, per_attention_pair=0.0,
            per_decode_seq=0.0, per_context_token=0.0)
BS = 16


def simulation(model: ParametricPerfModel, *, caching: bool = True, **engine) -> Simulation:
    cfg = EngineConfig(enable_prefix_caching=caching, block_size=BS,
                       **{"num_kv_blocks": 10**5, **engine})
    return Simulation([Replica(0, Engine(cfg, model))],
                      router=make_router("round_robin", np.random.default_rng(0)))


def ttfts(result) -> np.ndarray:
    return np.array([r.chunk_times[0] - r.scheduled_at for r in result.records])


def test_two_requests_sharing_k_full_blocks_hit_exactly_k():
    # Prefix 40 tokens = 2 full blocks + 8 tokens; the third block straddles the prefix and
    # the request's own tokens, so it is the request's own and cannot hit. B arrives after A
    # finished: it finds 2 blocks = 32 tokens and computes 60 - 32 = 28.
    sim = simulation(ParametricPerfModel(**FLAT))
    a, b = Request(0, 0.0, 60, 2, prefix_group=7, prefix_tokens=40), \
        Request(1, 1.0, 60, 2, prefix_group=7, prefix_tokens=40)
    res = sim.run([a, b])
    eng = res.replicas[0].engine
    assert eng.prefix_hit_tokens == 32
    assert eng.prefix_query_tokens == 120
    np.testing.assert_allclose(ttfts(res), [0.01 + 0.060, 0.01 + 0.028])
    # A's 3 full prompt blocks (48 of 60 tokens) and B's own third block stay cached; the
    # blocks A and B shared are one block each, not two.
    assert eng.pool.cached == 4 and eng.pool.used == 0


def test_other_groups_and_partial_blocks_never_hit():
    # A 12-token prefix fills no block: nothing to share. Another group's 40-token prefix
    # shares nothing with group 7's.
    sim = simulation(ParametricPerfModel(**FLAT))
    reqs = [Request(0, 0.0, 30, 1, 3, 12), Request(1, 1.0, 30, 1, 3, 12),
            Request(2, 2.0, 60, 1, 7, 40), Request(3, 3.0, 60, 1, 8, 40)]
    res = sim.run(reqs)
    assert res.replicas[0].engine.prefix_hit_tokens == 0
    assert synthetic_block_hashes(0, 15, 3, 12, BS) == []  # a partial block has no hash


def test_identical_prompts_still_compute_their_last_token():
    # Two identical 32-token prompts (2 full blocks, hashed from token ids as the server does):
    # the second may reuse at most (32 - 1) // 16 = 1 block, and computes 16 tokens.
    eng = Engine(EngineConfig(enable_prefix_caching=True, block_size=BS),
                 ParametricPerfModel(**FLAT))
    hashes = token_block_hashes(list(range(100, 132)), BS)
    assert len(hashes) == 2
    first = Sequence(0, 32, 1, 0.0, block_hashes=hashes)
    eng.add(first)
    step = eng.schedule(0.0)
    eng.complete(step, step.duration)
    second = Sequence(1, 32, 1, 1.0, block_hashes=list(hashes))
    eng.add(second)
    step = eng.schedule(1.0)
    assert [(s.request_id, c) for s, c in step.plan.prefill] == [(1, 16)]
    assert step.duration == pytest.approx(0.01 + 0.016)
    # the attention of the 16 computed tokens covers the 16 cached ones before them
    assert step.batch.prefill_attention == 16 * (16 + 17 / 2)
    eng.complete(step, 1.0 + step.duration)
    assert second.hit_tokens == 16 and eng.pool.cached == 2  # the duplicate block was merged


def test_eviction_is_least_recently_freed_first_and_tail_first():
    pool = BlockPool(4, BS)
    for h in (1, 2, 3):  # three sequences each fill one block and publish it
        pool.allocate(1)
        pool.register([h])
    pool.release_hashed([1])
    pool.release_hashed([3])
    pool.release_hashed([2])  # LRU order now 1, 3, 2
    assert (pool.used, pool.cached, pool.free) == (0, 3, 4)
    pool.allocate(2)  # one empty block, then one eviction: 1
    assert pool.evictions == 1 and [pool.match([h], 1) for h in (1, 2, 3)] == [0, 1, 1]
    pool.acquire([3])  # a hit takes 3 out of the LRU; freeing it makes it the most recent
    pool.release_hashed([3])  # LRU order 2, 3
    pool.allocate(1)
    assert pool.evictions == 2 and pool.match([2], 1) == 0 and pool.match([3], 1) == 1
    pool.release(3)
    # a sequence's blocks are freed tail first: its last block goes before its first
    pool.allocate(3)
    pool.register([10, 11, 12])
    pool.release_hashed([10, 11, 12])
    pool.allocate(2)  # one empty (3 and the chain cached: 4 of 4), so evict 3, then 12
    assert pool.evictions == 4 and [pool.match([h], 1) for h in (10, 11, 12)] == [1, 1, 0]


def test_pool_never_exceeds_its_blocks_and_accounts_every_block():
    # A small pool, many groups and long outputs: preemptions, evictions and shared blocks all
    # happen. After every step the pool's count must equal an independent recount: one block
    # per distinct hashed block in use plus each running sequence's private blocks.
    rng = np.random.default_rng(5)
    n = 300
    groups = rng.integers(0, 6, n)
    reqs = [Request(i, float(t), 64 + int(s), int(o), int(g), 64)
            for i, (t, s, o, g) in enumerate(zip(np.cumsum(rng.exponential(0.02, n)),
                                                 rng.integers(1, 60, n), rng.integers(1, 80, n),
                                                 groups))]
    sim = simulation(ParametricPerfModel(), scheduler="sarathi", max_batched_tokens=256,
                     num_kv_blocks=60)
    eng = sim.front[0].engine
    complete, forward = eng.complete, eng.fast_forward
    checks = {"steps": 0}

    def check(out):
        pool = eng.pool
        assert pool.used + pool.cached <= pool.num_blocks
        shared = {h for s in eng.running for h in s.block_hashes[:s.cached_blocks]}
        private = sum(s.blocks - s.cached_blocks for s in eng.running)
        assert pool.used == len(shared) + private
        checks["steps"] += 1
        return out

    eng.complete = lambda step, end: check(complete(step, end))
    eng.fast_forward = lambda step, times: check(forward(step, times))
    res = sim.run(reqs)
    assert checks["steps"] > 100
    assert len(res.records) == n and all(r.completed_at is not None for r in res.records)
    assert eng.num_preemptions > 0 and eng.pool.evictions > 0 and eng.prefix_hit_tokens > 0
    assert eng.pool.used == 0 and eng.pool.peak <= 60


def test_fully_cached_prefix_leaves_the_suffix_time_md1():
    # Batch size 1, one output token: each request is one prefill step. Its 64-token prefix
    # (4 blocks) is cached after the first request, so the step computes the 20-token suffix
    # attending to 64 cached tokens: D = 5 ms + 20 x 0.1 ms + (20 x (64 + 21/2)) pairs x 1 us.
    model = ParametricPerfModel(step_overhead=0.005, per_prefill_token=1e-4,
                                per_attention_pair=1e-6, per_decode_seq=0.0,
                                per_context_token=0.0)
    d = 0.005 + 20 * 1e-4 + 20 * (64 + 10.5) * 1e-6
    cold = 0.005 + 84 * 1e-4 + 84 * 85 / 2 * 1e-6
    spaced = [Request(i, float(i), 84, 1, 0, 64) for i in range(20)]
    res = simulation(model, max_batch_size=1).run(spaced)
    np.testing.assert_allclose(ttfts(res), [cold] + [d] * 19, rtol=1e-12)
    # Poisson arrivals at rho = 0.6 of 1/D: M/D/1, mean wait rho D / (2 (1 - rho)).
    rho, n = 0.6, 60_000
    arrivals = np.cumsum(np.random.default_rng(3).exponential(d / rho, n))
    res = simulation(model, max_batch_size=1).run(
        [Request(i, float(t), 84, 1, 0, 64) for i, t in enumerate(arrivals)])
    summary = simulation_summary(res)["prefix_cache"]
    assert summary["hit_tokens"] == (n - 1) * 64 and summary["query_tokens"] == n * 84
    wait = ttfts(res)[100:] - d
    assert wait.mean() == pytest.approx(rho * d / (2 * (1 - rho)), rel=0.06)


def test_caching_without_shared_prefixes_changes_nothing():
    # Unique prompts never hit (and the cache is large enough that nobody is preempted), so
    # token times are those of the engine without caching, to the bit.
    rng = np.random.default_rng(8)
    reqs = [Request(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(
        zip(np.cumsum(rng.exponential(0.05, 200)), rng.integers(1, 400, 200),
            rng.integers(1, 50, 200)))]
    on = simulation(ParametricPerfModel(), scheduler="sarathi", max_batched_tokens=512).run(reqs)
    off = simulation(ParametricPerfModel(), caching=False, scheduler="sarathi",
                     max_batched_tokens=512).run(reqs)
    assert [list(r.chunk_times) for r in on.records] == [list(r.chunk_times) for r in off.records]
    assert simulation_summary(on)["prefix_cache"]["hit_rate"] == 0.0
    assert "prefix_cache" not in simulation_summary(off)


def test_summary_hit_rate_is_hit_over_looked_up_tokens():
    # 10 spaced requests of one group, 64-token prefix + 20 own tokens: all but the first
    # hit 64 tokens, so the hit rate is 9 x 64 / (10 x 84).
    res = simulation(ParametricPerfModel(**FLAT)).run(
        [Request(i, float(i), 84, 3, 0, 64) for i in range(10)])
    pc = simulation_summary(res)["prefix_cache"]
    assert pc["hit_rate"] == pytest.approx(9 * 64 / 840)
    assert pc["hit_tokens"] == 576 and pc["evicted_blocks"] == 0
    # one shared 4-block prefix plus each request's own full block (64..80)
    assert pc["cached_blocks_at_end"] == 4 + 10


def test_hit_rate_over_time_from_the_simulated_counters():
    # Request i (one group, 64-token prefix + 20 own tokens) arrives at i + 0.5 s: the scrape
    # at second k has seen k lookups of 84 tokens, k - 1 of which found the 64-token prefix.
    # Per second the hit rate is 0 (the cold first lookup), then 64 / 84 every later second.
    from types import SimpleNamespace

    from etalon.metrics.server_series import PREFIX_HITS, PREFIX_QUERIES, per_time
    from etalon.report.run_view import prefix_hit_rate_over_time
    from etalon.simulator.results import server_series

    res = simulation(ParametricPerfModel(**FLAT)).run(
        [Request(i, i + 0.5, 84, 3, 0, 64) for i in range(10)])
    df = server_series(res)
    queries, hits = per_time(df, PREFIX_QUERIES), per_time(df, PREFIX_HITS)
    assert list(queries.index) == [float(k) for k in range(11)]
    assert list(queries) == [84.0 * k for k in range(11)]
    assert list(hits) == [0.0, 0.0] + [64.0 * (k - 1) for k in range(2, 11)]
    run = SimpleNamespace(label="sim", t0=0.0, run=SimpleNamespace(server_metrics=df))
    chart = prefix_hit_rate_over_time([run])
    (series,) = chart.series
    np.testing.assert_allclose(series.x, np.arange(10.0))
    np.testing.assert_allclose(series.y, [0.0] + [64 / 84] * 9)
    # without prefix caching the simulator writes no such counters, and the chart is empty
    off = simulation(ParametricPerfModel(**FLAT), caching=False).run(
        [Request(i, i + 0.5, 84, 3, 0, 64) for i in range(10)])
    assert PREFIX_QUERIES not in set(server_series(off)["name"])


def test_a_session_turn_hits_the_previous_turns_prompt_and_answer():
    # Turn 0: prompt 40, answer 30. At its end 40 + 30 - 1 = 69 tokens are computed (the last
    # answer token never is): 4 full blocks of 16, all the session's (positions 0-63). Turn 1
    # resends them (prompt 40 + 30 + a new message of 10 = 80) and finds the 4 blocks, 64 tokens,
    # computing 16: its TTFT is 10 ms + 16 ms. Without the answer's blocks it would find 2
    # blocks (the old prompt's 32 full tokens) and compute 48.
    turns = [Request(0, 0.0, 40, 30, 5, 40, session_id=5, turn=0),
             Request(1, 5.0, 80, 2, 5, 80, session_id=5, turn=1)]
    res = simulation(ParametricPerfModel(**FLAT)).run(turns)
    eng = res.replicas[0].engine
    assert eng.prefix_hit_tokens == 64 and eng.prefix_query_tokens == 120
    np.testing.assert_allclose(ttfts(res)[1], 0.01 + 0.016)
