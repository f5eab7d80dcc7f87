"""Whole ShareGPT conversations as multi-turn sessions: the turns and their token counts against
the tokenizer's count of the conversation assembled by hand, the simulator's chaining of the turns,
and a live run whose turns go out in order with their session ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etalon.cli_errors import UserError
from etalon.engine import Engine, EngineConfig
from etalon.metrics.summary import summarize
from etalon.perf import ParametricPerfModel
from etalon.records import load_records
from etalon.simulator import Replica, Simulation, make_router
from etalon.workload.config import WorkloadConfig
from etalon.workload.schedule import build_requests

# Three conversations: A has three turns (after a system message, which is left out), B one, C
# two (its last user message has no reply, so it is no turn).
A = [("How large is the KV cache of an 8B model at 4k context?",
      "About half a gigabyte per sequence in FP16, so a few dozen sequences fill a large GPU."),
     ("And with FP8 KV cache?", "Half of that, so twice the sequences fit in the same memory."),
     ("Does the attention kernel get slower with FP8 values?",
      "Barely: it dequantizes on the fly and the memory saved usually buys a larger batch.")]
B = [("What is goodput?", "Requests per second that met their latency deadlines.")]
C = [("Why batch decode steps?", "One weight read serves every sequence of the batch."),
     ("Is there a limit?", "Yes: past a point the step becomes compute bound.")]


def _conversation(turns, system: str | None = None, dangling: str | None = None) -> dict:
    msgs = [{"from": "system", "value": system}] if system else []
    for user, reply in turns:
        msgs += [{"from": "human", "value": user}, {"from": "gpt", "value": reply}]
    if dangling:
        msgs.append({"from": "human", "value": dangling})
    return {"conversations": msgs}


@pytest.fixture
def sharegpt(tmp_path) -> str:
    path = tmp_path / "chats.jsonl"
    rows = [_conversation(A, system="Be brief."), _conversation(B),
            _conversation(C, dangling="Thanks!")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _whole(path: str, **kw) -> WorkloadConfig:
    kw.setdefault("dataset_request_length_generator_conversations", "whole")
    return WorkloadConfig.of(request_length_generator_provider="dataset",
                             dataset_request_length_generator_dataset_file=path, **kw)


def _by_session(reqs) -> dict[int, list]:
    out: dict[int, list] = {}
    for r in reqs:
        out.setdefault(r.session_id, []).append(r)
    return out


def test_turns_are_the_conversations_counted_with_the_tokenizer(sharegpt, chat_tokenizer_dir):
    import transformers

    hf = transformers.AutoTokenizer.from_pretrained(str(chat_tokenizer_dir), local_files_only=True)

    def count(text: str) -> int:
        return len(hf.encode(text, add_special_tokens=False))

    def expected(conv):
        """(message, context, prompt, output) of each turn, from the text assembled by hand:
        earlier messages each followed by its reply and a blank line, then the new message."""
        out, before = [], ""
        for user, reply in conv:
            out.append((user, count(before) if before else 0, count(before + user), count(reply)))
            before += user + reply + "\n\n"
        return out

    tok = {"dataset_request_length_generator_dataset_tokenizer": str(chat_tokenizer_dir)}
    cfg = _whole(sharegpt, max_num_completed_requests=6, seed=4, **tok)
    reqs = build_requests(cfg)
    assert reqs == build_requests(cfg)  # same seed, same requests
    assert [r.request_id for r in reqs] == list(range(6))
    sessions = _by_session(reqs)
    assert sorted(sessions) == [0, 1, 2] and [r.session_id for r in reqs] == sorted(
        r.session_id for r in reqs)  # a session's turns are contiguous, sessions in order
    convs = {conv[0][0]: conv for conv in (A, B, C)}
    assert sorted(len(s) for s in sessions.values()) == [1, 2, 3]
    for turns in sessions.values():
        conv = convs[turns[0].prompt_text]
        assert [r.turn for r in turns] == list(range(len(conv)))
        assert {r.arrival_time for r in turns} == {turns[0].arrival_time}
        got = [(r.prompt_text, r.context_tokens, r.prompt_tokens, r.output_tokens) for r in turns]
        assert got == expected(conv)
    # sessions arrive by the interval generator: its first 2 gaps, as 3 independent requests'
    plain = build_requests(WorkloadConfig.of(max_num_completed_requests=3, seed=4))
    assert [sessions[s][0].arrival_time for s in (0, 1, 2)] == [r.arrival_time for r in plain]

    # more requests than the file's 6 turns: the conversations come round again in the same
    # order as new sessions, the last one cut short at the count
    more = build_requests(_whole(sharegpt, max_num_completed_requests=8, seed=4, **tok))
    assert more[:6] == reqs
    assert [(r.session_id, r.prompt_text) for r in more[6:]] == [
        (3 + reqs[0].session_id, reqs[0].prompt_text),
        (3 + reqs[1].session_id, reqs[1].prompt_text)]

    # the cap ends a conversation before its first turn over it: A's third turn (its longest)
    a = expected(A)
    cap = a[2][2] + a[2][3] - 1
    assert all(p + o <= cap for conv in (B, C) for _, _, p, o in expected(conv))
    capped = build_requests(_whole(sharegpt, max_num_completed_requests=5, seed=4,
                                   request_generator_max_tokens=cap, **tok))
    assert sorted(len(s) for s in _by_session(capped).values()) == [1, 2, 2]


def test_bad_combinations_are_one_line_errors(sharegpt):
    with pytest.raises(UserError, match="--session-turns and --dataset-request-length-generator-"
                                        "conversations whole do not combine"):
        _whole(sharegpt, session_turns=3).validate()
    with pytest.raises(UserError, match="not closed_loop"):
        _whole(sharegpt, request_interval_generator_provider="closed_loop").validate()
    with pytest.raises(UserError, match="first, whole"):
        _whole(sharegpt, dataset_request_length_generator_conversations="all").validate()
    with pytest.raises(UserError, match="every conversation's first turn is longer than 10"):
        build_requests(_whole(sharegpt, request_generator_max_tokens=10))
    # the default stays one request per conversation: its first turn, no sessions
    first = WorkloadConfig.of(request_length_generator_provider="dataset",
                              dataset_request_length_generator_dataset_file=sharegpt,
                              max_num_completed_requests=3)
    assert first.sessions() is None
    assert {r.session_id for r in build_requests(first)} == {None}


def test_simulated_turn_follows_its_answer_by_the_think_time(sharegpt):
    # Counts are ceil(chars / 4). One request at a time; a prefill of P tokens takes
    # 0.01 + 0.001 P s and each decode step 0.01 s, so a turn of P prompt and D output tokens
    # ends 0.01 + 0.001 P + (D - 1) 0.01 after it is sent; the next turn goes 0.25 s later.
    # Sessions arrive seconds apart, so none waits for another.
    model = ParametricPerfModel(step_overhead=0.01, per_prefill_token=0.001, per_attention_pair=0,
                                per_decode_seq=0, per_context_token=0)
    engine = EngineConfig(max_batch_size=1, max_batched_tokens=10**6, num_kv_blocks=10**5)
    sim = Simulation([Replica(0, Engine(engine, model))],
                     router=make_router("round_robin", np.random.default_rng(0)))
    cfg = _whole(sharegpt, max_num_completed_requests=6, session_think_time_s=0.25,
                 poisson_request_interval_generator_qps=0.1)
    reqs = build_requests(cfg)
    starts = sorted({r.arrival_time for r in reqs})
    assert len(starts) == 3 and min(np.diff(starts)) > 3  # a session lasts under 3 s here
    recs = sim.run(reqs, sessions=cfg.sessions()).records
    assert len(recs) == 6 and all(r.ok for r in recs)
    chars = {u: (len(u), len(reply)) for conv in (A, B, C) for u, reply in conv}
    for turns in _by_session(sorted(recs, key=lambda r: r.request_id)).values():
        assert [r.turn for r in turns] == list(range(len(turns)))
        assert turns[0].sent_at == turns[0].scheduled_at
        for prev, cur in zip(turns, turns[1:]):
            assert cur.sent_at == pytest.approx(prev.completed_at + 0.25, abs=1e-9)
        for r in turns:
            p, d = r.requested_prompt_tokens, r.requested_output_tokens
            assert r.completed_at - r.sent_at == pytest.approx(0.01 + 0.001 * p + (d - 1) * 0.01,
                                                               abs=1e-9)
    # a recorded reply's length, counted by hand, is the turn's output
    by_id = {r.request_id: r for r in reqs}
    for r in recs:
        assert r.num_output_tokens == -(-chars[by_id[r.request_id].prompt_text][1] // 4)
    s = summarize(recs)["sessions"]
    assert (s["sessions"], s["completed_sessions"], s["max_turns_sent"]) == (3, 3, 3)


def test_live_turns_go_out_in_order_with_their_session(sharegpt, token_server, chat_tokenizer_dir,
                                                       tmp_path):
    # The server counts prompts with the tokenizer and answers with the requested number of
    # one-token words; a later turn's prompt is the previous prompt, that answer, a blank line
    # and the next user message, so it grows by about answer + count("\n\n" + message).
    import transformers

    hf = transformers.AutoTokenizer.from_pretrained(str(chat_tokenizer_dir), local_files_only=True)
    out = tmp_path / "live"
    flags = ["--request-length-generator-provider", "dataset",
             "--dataset-request-length-generator-dataset-file", sharegpt,
             "--dataset-request-length-generator-dataset-tokenizer", str(chat_tokenizer_dir),
             "--dataset-request-length-generator-conversations", "whole",
             "--session-think-time-s", "0.1", "--poisson-request-interval-generator-qps", "20",
             "--max-num-completed-requests", "6", "--seed", "7"]
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-plots", "--no-report",
         "--no-ray", "--num-ray-clients", "1", "--server", token_server.base_url, "--model", "m",
         "--tokenizer", str(chat_tokenizer_dir), "--output-dir", str(out), *flags],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = sorted(load_records(out / "requests.jsonl"), key=lambda r: r.request_id)
    assert len(recs) == 6 and all(r.ok for r in recs)
    # the live run sent the requests the schedule (and so a simulation) has for these flags
    plan = build_requests(_whole(sharegpt, dataset_request_length_generator_dataset_tokenizer=str(
        chat_tokenizer_dir), session_think_time_s=0.1, poisson_request_interval_generator_qps=20,
        max_num_completed_requests=6, seed=7))
    assert [(r.session_id, r.turn, r.requested_prompt_tokens, r.requested_output_tokens)
            for r in recs] == [(q.session_id, q.turn, q.prompt_tokens, q.output_tokens)
                               for q in plan]
    text = {q.request_id: q.prompt_text for q in plan}
    for turns in _by_session(recs).values():
        assert [r.turn for r in turns] == list(range(len(turns)))
        assert turns[0].num_prompt_tokens == turns[0].requested_prompt_tokens  # sent as it is
        for prev, cur in zip(turns, turns[1:]):
            assert cur.sent_at >= prev.completed_at + 0.1 - 1e-3
            added = prev.num_output_tokens + len(hf.encode("\n\n" + text[cur.request_id],
                                                          add_special_tokens=False))
            assert abs(cur.num_prompt_tokens - prev.num_prompt_tokens - added) <= 2
    summary = json.loads((out / "summary.json").read_text())["sessions"]
    assert summary["sessions"] == 3 and summary["completed_sessions"] == 3
    assert summary["max_turns_sent"] == 3


def test_the_shipped_sample_runs_as_sessions_in_the_simulator(tmp_path):
    sample = Path(__file__).resolve().parents[1] / "data/datasets/serving_conversations.jsonl"
    out = tmp_path / "sim"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.simulate", "--model", "llama-3-8b", "--hardware", "h100",
         "--request-length-generator-provider", "dataset",
         "--dataset-request-length-generator-dataset-file", str(sample),
         "--dataset-request-length-generator-conversations", "whole",
         "--session-think-time-s", "2", "--poisson-request-interval-generator-qps", "2",
         "--max-num-completed-requests", "40", "--no-plots", "--no-report",
         "--output-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())["sessions"]
    assert s["max_turns_sent"] == 4 and s["completed_sessions"] == s["sessions"] < 40
    assert s["first_turn"]["requests"] == s["sessions"]
    assert s["later_turns"]["requests"] == 40 - s["sessions"]
    # the simulation ran the schedule a live run with these flags sends
    plan = build_requests(_whole(str(sample), session_think_time_s=2,
                                 poisson_request_interval_generator_qps=2,
                                 max_num_completed_requests=40))
    rows = pd.read_csv(out / "requests.csv").sort_values("request_id")
    assert rows["requested_prompt_tokens"].tolist() == [q.prompt_tokens for q in plan]
    assert rows["requested_output_tokens"].tolist() == [q.output_tokens for q in plan]
