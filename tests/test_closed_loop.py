"""Closed-loop users: the operational laws of a finite-source queue in the simulator, and the
live load generator's users against a server with programmed timing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from etalon.cli_errors import UserError
from etalon.client.pool import PoolSpec
from etalon.engine import Engine, EngineConfig
from etalon.metrics.summary import summarize
from etalon.perf import ParametricPerfModel
from etalon.simulator import Replica, Simulation, make_router
from etalon.workload.config import WorkloadConfig
from etalon.workload.intervals import ClosedLoop
from etalon.workload.request import Request
from etalon.workload.schedule import build_requests

ZERO = dict(step_overhead=0.0, per_prefill_token=0.0, per_attention_pair=0.0,
            per_decode_seq=0.0, per_context_token=0.0)


def one_at_a_time(service_s: float) -> Simulation:
    """One server, batch size 1, every request a single step of ``service_s``."""
    cfg = EngineConfig(max_batch_size=1, max_batched_tokens=10**7, num_kv_blocks=10**6)
    model = ParametricPerfModel(**{**ZERO, "step_overhead": service_s})
    return Simulation([Replica(0, Engine(cfg, model))],
                      router=make_router("round_robin", np.random.default_rng(0)))


def completions_per_second(records) -> float:
    done = sorted(r.completed_at for r in records)
    return (len(done) - 1) / (done[-1] - done[0])


@pytest.mark.parametrize("users", [3, 10])
def test_simulated_users_obey_the_operational_laws(users):
    # N users, deterministic service D = 0.1 s on one server, think time Z = 0.5 s. The
    # asymptotic bounds of a closed queue are exact for deterministic times once the users'
    # first-send bunch has spread out: throughput X = min(N / (D + Z), 1 / D) and response time
    # R = N / X - Z. N = 3 is light (X = 5/s, no waiting: R = D); N = 10 saturates the server
    # (X = 10/s, R = 10 * 0.1 - 0.5 = 0.5 s).
    service, think, n = 0.1, 0.5, 400
    res = one_at_a_time(service).run([Request(i, 0.0, 1, 1) for i in range(n)],
                                     closed_loop=ClosedLoop(users, think))
    recs = res.records
    assert len(recs) == n and all(r.ok for r in recs)
    x = min(users / (service + think), 1 / service)
    steady = [r for r in recs if r.request_id >= 5 * users]  # past the first bunch
    assert completions_per_second(steady) == pytest.approx(x, rel=0.01)
    assert np.mean([r.completed_at - r.sent_at for r in steady]) == pytest.approx(
        users / x - think, rel=0.01)
    # never more than N requests in the system, and exactly N at once when it saturates
    events = sorted([(r.sent_at, 1) for r in recs] + [(r.completed_at, -1) for r in recs],
                    key=lambda e: (e[0], e[1]))
    in_system = np.cumsum([d for _, d in events])
    assert in_system.max() == users
    summary = summarize(recs, closed_loop=(users, think))
    loop = summary["load"]["closed_loop"]
    assert summary["load"]["mode"] == "closed_loop" and loop["users"] == users
    assert loop["littles_law_qps"] == pytest.approx(x, rel=0.03)


def test_single_user_sends_each_request_a_think_time_after_the_last_ended():
    # One user: request k is sent exactly Z after request k - 1 completed, and every request runs
    # alone, so its latency is one service time.
    res = one_at_a_time(0.05).run([Request(i, 0.0, 1, 1) for i in range(20)],
                                  closed_loop=ClosedLoop(1, 0.2))
    recs = sorted(res.records, key=lambda r: r.request_id)
    assert recs[0].sent_at == 0.0
    for prev, cur in zip(recs, recs[1:]):
        assert cur.scheduled_at == cur.sent_at == pytest.approx(prev.completed_at + 0.2, abs=1e-12)
        assert cur.completed_at - cur.sent_at == pytest.approx(0.05, abs=1e-12)


def test_closed_loop_workload_flags_and_checks():
    cfg = WorkloadConfig.of(request_interval_generator_provider="closed_loop",
                            closed_loop_request_interval_generator_users=6,
                            closed_loop_request_interval_generator_think_time_s=0.25,
                            max_num_completed_requests=7)
    assert cfg.closed_loop() == ClosedLoop(6, 0.25)
    assert cfg.nominal_qps() is None  # no rate is asked for: the server's speed sets it
    assert [r.arrival_time for r in build_requests(cfg)] == [0.0] * 7
    assert WorkloadConfig().closed_loop() is None
    with pytest.raises(UserError, match="--closed-loop-request-interval-generator-users"):
        WorkloadConfig.of(request_interval_generator_provider="closed_loop",
                          closed_loop_request_interval_generator_users=0).validate()


def test_users_and_their_requests_are_dealt_to_generators_alike():
    # 5 users on 3 generators: 2, 2, 1 users; request i belongs to user i % 5, which runs on
    # generator (i % 5) % 3, so the shares are in proportion to the users.
    spec = PoolSpec("openai-chat-completions", None, 3, 10, None, 0, closed_loop=ClosedLoop(5, 0.0))
    assert [spec.loop_of(g).users for g in range(3)] == [2, 2, 1]
    shares = spec.shares([Request(i, 0.0, 1, 1) for i in range(10)])
    assert [[r.request_id for r in s] for s in shares] == [[0, 3, 5, 8], [1, 4, 6, 9], [2, 7]]
    few = PoolSpec("openai-chat-completions", None, 4, 10, None, 0, closed_loop=ClosedLoop(2, 0.0))
    assert few.num_generators == 2  # a generator without users gets no requests


def test_live_users_against_a_server_with_programmed_timing(programmed_server, tmp_path):
    # The programmed server answers m = 6 tokens in 0.05 + 5 * 0.02 = 0.15 s whatever the load,
    # so 4 users thinking 0.1 s cycle every 0.25 s: 16 requests/s, never more (a stall on this
    # machine can only make it less), and never more than 4 requests in flight.
    users, think, latency = 4, 0.1, 0.05 + 5 * 0.02
    out = tmp_path / "closed"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-plots", "--no-ray",
         "--server", programmed_server.base_url, "--model", "m", "--num-ray-clients", "2",
         "--request-interval-generator-provider", "closed_loop",
         "--closed-loop-request-interval-generator-users", str(users),
         "--closed-loop-request-interval-generator-think-time-s", str(think),
         "--fixed-request-generator-prefill-tokens", "16",
         "--fixed-request-generator-decode-tokens", "6",
         "--max-num-completed-requests", "48", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    loop = summary["load"]["closed_loop"]
    assert summary["load"]["mode"] == "closed_loop" and summary["counts"]["num_completed"] == 48
    expected = users / (latency + think)
    assert 0.7 * expected <= loop["achieved_qps"] <= expected * 1.001
    assert loop["mean_latency_s"] >= latency
    assert loop["littles_law_qps"] == pytest.approx(loop["achieved_qps"], rel=0.1)
    from etalon.record_table import read_table

    table = read_table(out)
    sent, done = table.numbers("sent_at"), table.numbers("completed_at")
    events = sorted([(t, 1) for t in sent] + [(t, -1) for t in done], key=lambda e: (e[0], e[1]))
    assert np.cumsum([d for _, d in events]).max() == users
    assert "closed loop" in res.stdout and "4 users" in res.stdout
