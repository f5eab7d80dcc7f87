"""TTFT deadlines from a prefill profile: the record field, the lookup, and run_benchmark's
``--prefill-profile FILE --ttft-slack S`` end to end against the embedded server.

The profile is written by hand: a + b·n + c·n(n+1)/2 with a = 0.05 s, b = 1e-4 s/token,
c = 2e-8 s/pair, profiled over 64..1024 tokens and claimed up to 2048. With a slack of 0.2 s
the deadlines are (worked by hand):

    n      a      b·n     c·n(n+1)/2             deadline
    100    0.05   0.01    2e-8 · 5050    = 1.01e-4    0.260101
    300    0.05   0.03    2e-8 · 45150   = 9.03e-4    0.280903
    700    0.05   0.07    2e-8 · 245350  = 4.907e-3   0.324907
    1500   0.05   0.15    2e-8 · 1125750 = 0.022515   0.422515   (beyond 1024: physical model)
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from etalon.calibration.deadlines import max_prompt_tokens, ttft_deadline_for
from etalon.profiles import OutOfRangeError, load_profile
from etalon.records import RequestRecord, load_records

SLACK = 0.2
EXPECTED = {100: 0.260101, 300: 0.280903, 700: 0.324907, 1500: 0.422515}


def profile_dict() -> dict:
    linear = {"kind": "linear", "inputs": ["prompt_tokens"],
              "features": ["prompt_tokens", "attention_pairs"],
              "coefficients": [1e-4, 2e-8], "intercept": 0.05}
    return {
        "kind": "etalon-profile", "schema_version": 1, "created_at": "2026-01-01T00:00:00Z",
        "etalon_version": "test", "source": {"notes": "written by hand for the tests"},
        "prefill": {
            "inputs": ["prompt_tokens"], "target": "ttft_s",
            "predictor": dict(linear), "physical": dict(linear), "chosen": "physical",
            "fit": {"r2": 1.0, "mape": 0.0},
            "valid_range": {"prompt_tokens": [64.0, 1024.0]},
            "extrapolation": {"claimed": True, "limits": {"prompt_tokens": 2048.0},
                              "error": 0.05, "holdout_mape": 0.05, "reason": "by hand"},
        },
    }


@pytest.fixture
def profile_file(tmp_path) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile_dict()))
    return path


def test_old_records_without_the_field_still_load(tmp_path):
    old = {"request_id": 3, "scheduled_at": 0.5, "sent_at": 0.5, "completed_at": 1.0,
           "chunk_times": [0.75], "chunk_tokens": [1]}
    path = tmp_path / "requests.jsonl"
    new = RequestRecord(request_id=4, scheduled_at=1.0, ttft_deadline=0.3)
    path.write_text(json.dumps(old) + "\n" + new.to_json() + "\n")
    a, b = load_records(path)
    assert a.ttft_deadline is None and a.ok
    assert b.ttft_deadline == 0.3


def test_deadline_is_predicted_prefill_plus_slack(profile_file):
    got = ttft_deadline_for(profile_file, list(EXPECTED), SLACK)
    assert got == pytest.approx(list(EXPECTED.values()), rel=1e-12)
    assert max_prompt_tokens(load_profile(profile_file)) == 2048
    assert ttft_deadline_for(profile_file, 2048, 0.0) == pytest.approx(
        0.05 + 0.2048 + 2e-8 * 2048 * 2049 / 2, rel=1e-12)
    with pytest.raises(OutOfRangeError, match="claimed up to 2048"):
        ttft_deadline_for(profile_file, 2049, SLACK)


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etalon.run_benchmark", "--no-progress",
                           "--no-ray", "--no-plots", *args],
                          capture_output=True, text=True, timeout=240)


def length_trace(tmp: Path, prompts) -> Path:
    path = tmp / "lengths.csv"
    path.write_text("num_prefill_tokens,num_decode_tokens\n"
                    + "".join(f"{n},8\n" for n in prompts))
    return path


def test_run_benchmark_sets_each_requests_deadline_from_its_requested_prompt(profile_file,
                                                                             tmp_path):
    out = tmp_path / "run"
    res = bench("--server", "local", "--num-ray-clients", "1",
                "--request-length-generator-provider", "trace",
                "--trace-request-length-generator-trace-file",
                str(length_trace(tmp_path, EXPECTED)),
                "--max-num-completed-requests", "4",
                "--poisson-request-interval-generator-qps", "20",
                "--prefill-profile", str(profile_file), "--ttft-slack", str(SLACK),
                "--tbt-deadline", "0.05", "--output-dir", str(out))
    assert res.returncode == 0, res.stderr
    recs = load_records(out / "requests.jsonl")
    assert sorted(r.requested_prompt_tokens for r in recs) == sorted(EXPECTED)
    for r in recs:
        assert r.ok
        assert r.ttft_deadline == pytest.approx(EXPECTED[r.requested_prompt_tokens], rel=1e-12)

    summary = json.loads((out / "summary.json").read_text())
    params = summary["parameters"]
    assert params["ttft_deadline_s"] == "per-request"
    assert params["ttft_slack_s"] == SLACK and params["prefill_profile"] == str(profile_file)
    assert summary["deadlines"]["num_own_ttft_deadlines"] == 4
    assert summary["deadlines"]["misses"] is not None
    assert summary["goodput"]["ttft_deadline_s"] == "per-request"
    with open(out / "requests.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_id = {r.request_id: r for r in recs}
    for row in rows:
        want = EXPECTED[by_id[int(row["request_id"])].requested_prompt_tokens]
        assert float(row["ttft_deadline"]) == pytest.approx(want, rel=1e-12)


def bad_profiles(tmp: Path) -> dict[str, Path]:
    not_json = tmp / "not_json.json"
    not_json.write_text("{ nope")
    bad_coef = profile_dict()
    bad_coef["prefill"]["physical"]["coefficients"] = ["a", 2e-8]  # predictor stays valid
    bad = tmp / "bad_coef.json"
    bad.write_text(json.dumps(bad_coef))
    decode_only = profile_dict()
    decode_only["decode"] = decode_only.pop("prefill")  # a decode section needs other inputs
    no_prefill = tmp / "no_prefill.json"
    no_prefill.write_text(json.dumps(decode_only))
    return {"not_json": not_json, "bad_coef": bad, "no_prefill": no_prefill}


@pytest.mark.parametrize("case, needle", [
    ("both", "mutually exclusive"),
    ("no_slack", "--ttft-slack"),
    ("slack_alone", "--prefill-profile"),
    ("negative_slack", "--ttft-slack must be"),
    ("missing", "cannot read profile"),
    ("not_json", "not valid JSON"),
    ("bad_coef", "prefill.physical.coefficients[0]"),
    ("no_prefill", "prefill"),
    ("too_long", "up to 2048 tokens"),
])
def test_bad_profile_flags_are_one_line(case, needle, profile_file, tmp_path):
    prof = str(profile_file)
    args = {
        "both": ["--prefill-profile", prof, "--ttft-slack", "0.1", "--ttft-deadline", "1"],
        "no_slack": ["--prefill-profile", prof],
        "slack_alone": ["--ttft-slack", "0.1"],
        "negative_slack": ["--prefill-profile", prof, "--ttft-slack", "-0.1"],
        "missing": ["--prefill-profile", str(tmp_path / "nope.json"), "--ttft-slack", "0.1"],
        "too_long": ["--prefill-profile", prof, "--ttft-slack", "0.1",
                     "--request-length-generator-provider", "trace",
                     "--trace-request-length-generator-trace-file",
                     str(length_trace(tmp_path, [100, 3000, 2049]))],
    }.get(case)
    if args is None:
        args = ["--prefill-profile", str(bad_profiles(tmp_path)[case]), "--ttft-slack", "0.1"]
    res = bench("--server", "local", "--max-num-completed-requests", "3", *args,
                "--output-dir", str(tmp_path / "o"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr, res.stderr
    if case == "too_long":
        assert "2 of 3 scheduled requests" in lines[0] and "longest 3000" in lines[0]
