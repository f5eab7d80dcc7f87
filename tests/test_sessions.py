"""Multi-turn sessions: the schedule's conversations, the simulator's chained turns worked out by
hand, and a live run whose every later turn resends the conversation with the server's answers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from etalon.cli_errors import UserError
from etalon.engine import Engine, EngineConfig
from etalon.metrics.summary import summarize
from etalon.perf import ParametricPerfModel
from etalon.records import load_records
from etalon.simulator import Replica, Simulation, make_router
from etalon.workload.config import WorkloadConfig
from etalon.workload.schedule import build_requests
from etalon.workload.sessions import Sessions


def _workload(**kw) -> WorkloadConfig:
    return WorkloadConfig.of(fixed_request_generator_prefill_tokens=40,
                             fixed_request_generator_decode_tokens=10, **kw)


def test_turns_carry_the_conversation_so_far():
    # 7 requests of 3 turns: sessions 0 and 1 whole, session 2 its first turn only. Turn j of a
    # session has j * (40 + 10) tokens of context before its new 40-token message.
    reqs = build_requests(_workload(session_turns=3, max_num_completed_requests=7, seed=5))
    assert [(r.session_id, r.turn) for r in reqs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1),
                                                      (1, 2), (2, 0)]
    assert [r.prompt_tokens for r in reqs[:3]] == [40, 90, 140]
    assert [r.context_tokens for r in reqs[:3]] == [0, 50, 100]
    # sessions arrive by the interval generator: its first 2 gaps, as 3 independent requests'
    plain = build_requests(_workload(max_num_completed_requests=3, seed=5))
    assert [r.arrival_time for r in reqs[::3]] == [r.arrival_time for r in plain]
    with pytest.raises(UserError, match="--session-turns"):
        _workload(session_turns=0).validate()
    with pytest.raises(UserError, match="not closed_loop"):
        _workload(session_turns=2, request_interval_generator_provider="closed_loop").validate()


def test_simulated_turn_follows_its_answer_by_the_think_time():
    # One request at a time; a prefill of P tokens takes 0.01 + 0.001 P s and each decode step
    # 0.01 s. A turn of P prompt tokens and 10 outputs therefore ends 0.01 + 0.001 P + 9 * 0.01
    # after it is sent, and the next turn is sent 0.5 s later with 50 more tokens of context.
    model = ParametricPerfModel(step_overhead=0.01, per_prefill_token=0.001, per_attention_pair=0,
                                per_decode_seq=0, per_context_token=0)
    cfg = EngineConfig(max_batch_size=1, max_batched_tokens=10**6, num_kv_blocks=10**5)
    sim = Simulation([Replica(0, Engine(cfg, model))],
                     router=make_router("round_robin", np.random.default_rng(0)))
    reqs = build_requests(_workload(session_turns=3, max_num_completed_requests=3))
    recs = sorted(sim.run(reqs, sessions=Sessions(3, 0.5)).records, key=lambda r: r.request_id)
    sent = 0.0
    for r, prompt in zip(recs, (40, 90, 140)):
        assert (r.session_id, r.requested_prompt_tokens) == (0, prompt)
        assert r.sent_at == pytest.approx(sent, abs=1e-9)
        assert r.ttft == pytest.approx(0.01 + 0.001 * prompt, abs=1e-9)
        assert r.completed_at == pytest.approx(sent + 0.01 + 0.001 * prompt + 0.09, abs=1e-9)
        sent = r.completed_at + 0.5
    s = summarize(recs)["sessions"]
    assert s["sessions"] == 1 and s["completed_sessions"] == 1
    assert s["first_turn"]["mean_prompt_tokens"] == 40 and s["later_turns"]["mean_prompt_tokens"] == 115
    assert s["later_turns"]["ttft"]["p50"] == pytest.approx(0.01 + 0.001 * 115, abs=1e-9)


def test_live_turns_resend_the_conversation_with_the_servers_answers(token_server,
                                                                     chat_tokenizer_dir, tmp_path):
    # The server counts prompts with the tokenizer and answers in words of one token each, so a
    # later turn's prompt (earlier prompt + answer + a blank line + the new message) counts
    # about what the plan says: the previous prompt, its 10 answer tokens and 40 new ones.
    out = tmp_path / "sessions"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-plots", "--no-report",
         "--no-ray", "--num-ray-clients", "1", "--server", token_server.base_url, "--model", "m",
         "--tokenizer", str(chat_tokenizer_dir), "--session-turns", "3",
         "--session-think-time-s", "0.1", "--poisson-request-interval-generator-qps", "20",
         "--fixed-request-generator-prefill-tokens", "40",
         "--fixed-request-generator-decode-tokens", "10", "--max-num-completed-requests", "6",
         "--output-dir", str(out)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = sorted(load_records(out / "requests.jsonl"), key=lambda r: r.request_id)
    assert len(recs) == 6 and all(r.ok for r in recs)
    for session in (0, 1):
        turns = [r for r in recs if r.session_id == session]
        assert [r.turn for r in turns] == [0, 1, 2]
        assert turns[0].num_prompt_tokens == 40
        for prev, cur in zip(turns, turns[1:]):
            assert cur.sent_at >= prev.completed_at + 0.1 - 1e-3  # after the answer and the think time
            grown = cur.num_prompt_tokens - prev.num_prompt_tokens
            assert 50 <= grown <= 54, (prev.num_prompt_tokens, cur.num_prompt_tokens)
    summary = json.loads((out / "summary.json").read_text())["sessions"]
    assert summary["sessions"] == 2 and summary["completed_sessions"] == 2
    assert "sessions" in res.stdout


def test_with_prefix_caching_a_later_turn_prefills_only_what_the_cache_lacks():
    # Block size 16. Turn 0 (prompt 40, answer 10) ends with 40 + 10 - 1 = 49 tokens computed
    # (the last answer token never is): 3 full blocks of the session. Turn 1's 90-token prompt
    # resends them and finds 48 tokens; it ends with 99 computed: 6 full blocks, which turn 2
    # (140 tokens) finds, 96 tokens. A hit skips that prefill: TTFT 0.01 + 0.001 (P - hit).
    model = ParametricPerfModel(step_overhead=0.01, per_prefill_token=0.001, per_attention_pair=0,
                                per_decode_seq=0, per_context_token=0)
    cfg = EngineConfig(max_batch_size=1, max_batched_tokens=10**6, num_kv_blocks=10**5,
                       block_size=16, enable_prefix_caching=True)
    engine = Engine(cfg, model)
    sim = Simulation([Replica(0, engine)], router=make_router("round_robin", np.random.default_rng(0)))
    reqs = build_requests(_workload(session_turns=3, max_num_completed_requests=3))
    recs = sorted(sim.run(reqs, sessions=Sessions(3, 0.5)).records, key=lambda r: r.request_id)
    hits = (0, 48, 96)
    for r, prompt, hit in zip(recs, (40, 90, 140), hits):
        assert r.ttft == pytest.approx(0.01 + 0.001 * (prompt - hit), abs=1e-9)
    assert engine.prefix_hit_tokens == sum(hits) and engine.prefix_query_tokens == 40 + 90 + 140
