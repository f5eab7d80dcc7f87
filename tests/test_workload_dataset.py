"""Real prompts from a dataset file: parsing both shapes, counting, sampling, and a live run that
sends the dataset's text as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from etalon.cli_errors import UserError
from etalon.records import load_records
from etalon.workload.config import WorkloadConfig
from etalon.workload.dataset import DatasetLengths, read_dataset
from etalon.workload.schedule import build_requests

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "datasets" / "serving_conversations.jsonl"


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_sharegpt_takes_the_first_user_turn_and_the_reply_after_it(tmp_path):
    data = [
        {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "abcdefghi"},
                           {"from": "gpt", "value": "0123456789"}, {"from": "human", "value": "more"}]},
        {"conversations": [{"from": "human", "value": "no reply"}]},  # skipped
        {"messages": [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi"}]},
    ]
    rows = read_dataset(_write(tmp_path, "d.json", json.dumps(data)))
    assert [(r.prompt, r.reply) for r in rows] == [("abcdefghi", "0123456789"), ("hello there", "hi")]
    # ceil(chars / 4): 9 -> 3 prompt tokens, a 10-character reply -> 3 output tokens; 11 -> 3, 2 -> 1
    gen = DatasetLengths(str(tmp_path / "d.json"), np.random.default_rng(0))
    prefill, decode = gen.lengths(4)  # cycles through the 2 rows in a seeded order
    pairs = {(int(p), int(d)) for p, d in zip(prefill, decode)}
    assert pairs == {(3, 3), (3, 1)} and len(gen.prompts) == 4
    assert gen.prompts[:2] == gen.prompts[2:] and set(gen.prompts) == {"abcdefghi", "hello there"}


def test_prompt_rows_the_cap_and_bad_entries(tmp_path):
    lines = [{"prompt": "abcd", "output_tokens": 1}, {"prompt": "y" * 400, "output_tokens": 5}]
    good = _write(tmp_path, "p.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    gen = DatasetLengths(good, np.random.default_rng(1), cap=50)  # the 100 + 5 token row is left out
    assert gen.skipped == 1 and gen.lengths(2)[0].tolist() == [1, 1]
    with pytest.raises(UserError, match=r"p2.jsonl:2: 'output_tokens' must be an integer >= 1"):
        read_dataset(_write(tmp_path, "p2.jsonl", '{"prompt": "a", "output_tokens": 2}\n'
                                                 '{"prompt": "b"}\n'))
    with pytest.raises(UserError, match=r"bad.jsonl: not JSON or JSONL"):
        read_dataset(_write(tmp_path, "bad.jsonl", '{"prompt": \n'))
    with pytest.raises(UserError, match="no usable request"):
        read_dataset(_write(tmp_path, "none.json", json.dumps([{"conversations": []}])))
    with pytest.raises(UserError, match="--dataset-request-length-generator-dataset-file is required"):
        WorkloadConfig.of(request_length_generator_provider="dataset").validate()


def test_same_seed_same_requests_with_their_text():
    cfg = WorkloadConfig.of(request_length_generator_provider="dataset",
                            dataset_request_length_generator_dataset_file=str(SAMPLE),
                            max_num_completed_requests=20, seed=3)
    a, b = build_requests(cfg), build_requests(cfg)
    assert a == b and all(r.prompt_text for r in a)
    by_text = {r.prompt: r for r in read_dataset(str(SAMPLE))}
    for r in a:  # every request is one of the sample's first user turns, counted as it is
        assert r.prompt_text in by_text and r.prompt_tokens == -(-len(r.prompt_text) // 4)


def test_a_live_run_sends_the_dataset_text(token_server, chat_tokenizer_dir, tmp_path):
    # The server counts prompts with the same tokenizer the dataset is counted with, so each
    # request's usage equals its requested prompt length exactly: the text went out unchanged.
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-plots", "--no-report",
         "--no-ray", "--server", token_server.base_url, "--model", "m",
         "--tokenizer", str(chat_tokenizer_dir), "--request-length-generator-provider", "dataset",
         "--dataset-request-length-generator-dataset-file", str(SAMPLE),
         "--dataset-request-length-generator-dataset-tokenizer", str(chat_tokenizer_dir),
         "--max-num-completed-requests", "12", "--poisson-request-interval-generator-qps", "50",
         "--output-dir", str(out)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    recs = load_records(out / "requests.jsonl")
    assert len(recs) == 12 and all(r.ok for r in recs)
    assert all(r.prompt_tokens_source == "usage" and r.num_prompt_tokens == r.requested_prompt_tokens
               for r in recs)
    assert all(r.num_output_tokens == r.requested_output_tokens for r in recs)
    assert len({r.requested_prompt_tokens for r in recs}) > 5  # real, varied prompts
