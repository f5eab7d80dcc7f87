"""Result files: summary/config JSON, the records as Parquet, requests.csv, plots, redact."""

import csv
import json

import pandas as pd

from etalon.metrics.latency import latency_series
from etalon.metrics.summary import summarize
from etalon.record_table import read_records, read_table
from etalon.records import RequestRecord
from etalon.report.files import redact, write_run_outputs


def records():
    ok = [RequestRecord(request_id=i, scheduled_at=float(i), sent_at=float(i) + 0.01,
                        completed_at=i + 1.0, chunk_times=[i + 0.25, i + 0.5, i + 0.75],
                        chunk_tokens=[1, 2, 1], num_prompt_tokens=10 * (i + 1),
                        prompt_tokens_source="usage") for i in range(4)]
    bad = RequestRecord(request_id=4, scheduled_at=4.0, sent_at=4.0, error_type="timeout")
    return ok + [bad]


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_files_are_written_with_matching_row_counts(tmp_path):
    recs = records()
    summary = summarize(recs, ttft_deadline=1.0, tbt_deadline=0.5)
    paths = write_run_outputs(tmp_path / "run", recs, summary,
                              {"model": "m", "api_key": "sk-not-a-real-key-123456"})
    for path in paths.values():
        assert path.exists() and path.stat().st_size > 0
    assert json.loads(paths["summary"].read_text()) == json.loads(json.dumps(summary))
    assert json.loads(paths["config"].read_text()) == {"model": "m"}
    assert len(rows(paths["requests"])) == 5                   # every request, failed included
    requests = rows(paths["requests"])
    assert requests[4]["error_type"] == "timeout" and requests[4]["ttft"] == ""
    assert float(requests[0]["ttft"]) == 0.24
    assert [r["ok"] for r in requests] == ["True"] * 4 + ["False"]
    # chunk 2 carries 2 tokens 0.25 s after chunk 1, chunk 3 one 0.25 s later: max TBT 0.25
    assert float(requests[0]["max_tbt"]) == 0.25 and float(requests[0]["tpot"]) == 0.5 / 3
    # the records as columns: read back, they are the records written
    assert paths["records"].name == "requests.parquet" and paths["tokens"].name == "tokens.parquet"
    assert read_records(tmp_path / "run") == recs
    tokens = pd.read_parquet(paths["tokens"])
    assert list(tokens.columns) == ["request_id", "time", "tokens"] and len(tokens) == 12
    # TBT from the stored columns: 3 samples per request, the first 0.25 s / 2 tokens
    tbt = latency_series(read_table(tmp_path / "run"))["tbt"]
    assert len(tbt) == 12 and tbt.values[0] == 0.125
    assert not list((tmp_path / "run").glob("tbt.csv"))        # no per-sample CSVs any more
    for name in ("ttft_cdf", "tbt_cdf", "e2e_latency_cdf", "dispatch_lag_cdf",
                 "ttft_vs_prompt_tokens", "output_tokens_over_time"):
        assert paths[f"plot/{name}"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_without_data_are_skipped_not_crashed(tmp_path):
    recs = [RequestRecord(request_id=0, scheduled_at=0.0, sent_at=0.0, error_type="refused")]
    paths = write_run_outputs(tmp_path, recs, summarize(recs), {})
    assert "plot/ttft_cdf" not in paths and not (tmp_path / "plots" / "ttft_cdf.png").exists()
    assert "plot/dispatch_lag_cdf" in paths          # the one series that has data
    assert len(rows(paths["requests"])) == 1


def test_redact_drops_secret_keys_at_any_depth_and_keeps_counts():
    config = {
        "api_key": "abc", "OPENAI_API_KEY": "abc", "api-key": "abc", "hf_token": "hf_x",
        "authToken": "x", "password": "p", "max_tokens": 128, "num_prompt_tokens": 512,
        "tokenizer": "meta-llama/Llama-3-8B", "model": "llama",
        "client": {"base_url": "http://h:8000", "auth_token": "t", "headers": ["Bearer abc"]},
        "extra": ["sk-abcdefghijklmnopqrst", "keep-me"],
    }
    assert redact(config) == {
        "max_tokens": 128, "num_prompt_tokens": 512, "tokenizer": "meta-llama/Llama-3-8B",
        "model": "llama", "client": {"base_url": "http://h:8000", "headers": []},
        "extra": ["keep-me"],
    }
    assert config["api_key"] == "abc"  # the input is not modified
