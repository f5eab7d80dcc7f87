"""Config flags and the arrival schedule: defaults, validation, seeding, trace replay."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from etalon.options import add_options, apply_namespace, to_mapping
from etalon.workload import Request, WorkloadConfig, build_requests

REPO = Path(__file__).resolve().parents[1]
from shipped_data import PUBLIC_TRACES

FLAGS = """
--request-interval-generator-provider --poisson-request-interval-generator-qps
--gamma-request-interval-generator-qps --gamma-request-interval-generator-cv
--trace-request-interval-generator-trace-file --trace-request-interval-generator-time-scale-factor
--request-length-generator-provider --uniform-request-length-generator-min-tokens
--uniform-request-length-generator-max-tokens
--uniform-request-length-generator-prefill-to-decode-ratio
--zipf-request-length-generator-theta --zipf-request-length-generator-scramble
--zipf-request-length-generator-min-tokens --zipf-request-length-generator-max-tokens
--zipf-request-length-generator-prefill-to-decode-ratio --fixed-request-generator-prefill-tokens
--fixed-request-generator-decode-tokens --trace-request-length-generator-trace-file
--trace-request-length-generator-prefill-scale-factor
--trace-request-length-generator-decode-scale-factor
--request-generator-max-tokens --seed --max-num-completed-requests
""".split()


def shared_trace(name: str) -> Path:
    path = PUBLIC_TRACES / name
    assert path.is_file(), f"{path} should ship with the repository"
    return path


def workload_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_options(parser, WorkloadConfig, title="workload")
    return parser


def parse(*argv: str) -> WorkloadConfig:
    return apply_namespace(WorkloadConfig(), workload_parser().parse_args(list(argv))).validate()


def test_every_flag_exists_with_default_in_help():
    parser = workload_parser()
    actions = {opt: a for a in parser._actions for opt in a.option_strings}
    assert set(FLAGS) <= set(actions)
    for flag in FLAGS:
        assert "(default: " in actions[flag].help
    text = parser.format_help()
    assert "(default: poisson)" in text and "(default: 8192)" in text


def test_defaults_match_the_brief():
    cfg = parse()
    assert cfg == WorkloadConfig.of()
    assert cfg.request_interval_generator_provider == "poisson"
    assert cfg.interval_params["poisson"].qps == 1.0
    assert cfg.request_length_generator_provider == "fixed"
    assert (
        cfg.length_params["fixed"].prefill_tokens,
        cfg.length_params["fixed"].decode_tokens,
    ) == (256, 64)
    assert cfg.request_generator_max_tokens == 8192
    assert cfg.seed == 42 and cfg.max_num_completed_requests == 100
    assert cfg.interval_params["trace"].time_scale_factor == 1.0


def test_flags_reach_the_config():
    cfg = parse(
        "--request-interval-generator-provider",
        "gamma",
        "--gamma-request-interval-generator-qps",
        "3.5",
        "--gamma-request-interval-generator-cv",
        "2",
        "--request-length-generator-provider",
        "zipf",
        "--zipf-request-length-generator-scramble",
        "--zipf-request-length-generator-theta",
        "1.1",
        "--seed",
        "9",
        "--max-num-completed-requests",
        "7",
    )
    assert cfg.interval.qps == 3.5 and cfg.interval.cv == 2.0
    assert cfg.lengths.scramble is True and cfg.lengths.theta == 1.1
    assert (cfg.seed, cfg.max_num_completed_requests) == (9, 7)
    assert (
        parse("--zipf-request-length-generator-scramble", "false").length_params["zipf"].scramble
        is False
    )


def test_validation_names_the_flag():
    with pytest.raises(
        ValueError, match="^--poisson-request-interval-generator-qps must be > 0, got -1.0$"
    ):
        parse("--poisson-request-interval-generator-qps", "-1")
    with pytest.raises(
        ValueError, match="--trace-request-interval-generator-trace-file is required"
    ):
        parse("--request-interval-generator-provider", "trace")
    with pytest.raises(ValueError, match="--trace-request-length-generator-trace-file is required"):
        WorkloadConfig.of(request_length_generator_provider="trace").validate()
    with pytest.raises(ValueError, match="--max-num-completed-requests must be >= 1"):
        WorkloadConfig.of(max_num_completed_requests=0).validate()
    with pytest.raises(ValueError, match="valid: closed_loop, gamma, poisson, static, trace"):
        WorkloadConfig.of(request_interval_generator_provider="burst").validate()
    with pytest.raises(SystemExit):  # argparse rejects unknown choices itself
        parse("--request-interval-generator-provider", "burst")


def test_validation_reads_the_trace(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("arrived_at\n0\nsoon\n")
    with pytest.raises(ValueError, match="bad.csv': column 'arrived_at' data row 2"):
        WorkloadConfig.of(
            request_interval_generator_provider="trace",
            trace_request_interval_generator_trace_file=str(bad),
        ).validate()


def test_schedule_shape_and_first_arrival_at_zero():
    reqs = build_requests(
        WorkloadConfig.of(max_num_completed_requests=500, poisson_request_interval_generator_qps=10)
    )
    assert len(reqs) == 500
    assert all(isinstance(r, Request) for r in reqs)
    assert [r.request_id for r in reqs] == list(range(500))
    times = np.array([r.arrival_time for r in reqs])
    assert times[0] == 0.0 and np.all(np.diff(times) > 0)
    assert all(r.prompt_tokens == 256 and r.output_tokens == 64 for r in reqs)
    static = build_requests(
        WorkloadConfig.of(request_interval_generator_provider="static", max_num_completed_requests=5)
    )
    assert [r.arrival_time for r in static] == [0.0] * 5


def test_poisson_schedule_spans_expected_time():
    n, qps = 20_001, 5.0
    reqs = build_requests(
        WorkloadConfig.of(max_num_completed_requests=n, poisson_request_interval_generator_qps=qps)
    )
    # The last arrival is a sum of n - 1 exponential gaps: mean (n-1)/qps, sd sqrt(n-1)/qps.
    assert abs(reqs[-1].arrival_time - (n - 1) / qps) < 4 * np.sqrt(n - 1) / qps


def _as_tuples(reqs: list[Request]) -> list[tuple]:
    return [tuple(asdict(r).values()) for r in reqs]


def test_same_seed_same_requests_different_seed_differs():
    cfg = WorkloadConfig.of(
        request_length_generator_provider="uniform", max_num_completed_requests=200
    )
    assert build_requests(cfg) == build_requests(replace(cfg))
    other = build_requests(replace(cfg, seed=43))
    a = build_requests(cfg)
    assert sum(x.arrival_time != y.arrival_time for x, y in zip(a, other, strict=True)) > 190
    assert sum(x.prompt_tokens != y.prompt_tokens for x, y in zip(a, other, strict=True)) > 150


def test_length_provider_does_not_move_arrivals():
    base = WorkloadConfig.of(max_num_completed_requests=100)
    a = build_requests(base)
    b = build_requests(replace(base, request_length_generator_provider="zipf"))
    assert [r.arrival_time for r in a] == [r.arrival_time for r in b]
    c = build_requests(replace(base, request_interval_generator_provider="gamma"))
    base_uniform = replace(base, request_length_generator_provider="uniform")
    d = build_requests(replace(base_uniform, request_interval_generator_provider="gamma"))
    e = build_requests(base_uniform)
    assert [r.prompt_tokens for r in d] == [r.prompt_tokens for r in e]
    assert [r.arrival_time for r in c] != [r.arrival_time for r in a]


def test_schedule_reproducible_in_another_process():
    cfg = WorkloadConfig.of(
        request_interval_generator_provider="gamma",
        request_length_generator_provider="zipf",
        zipf_request_length_generator_scramble=True,
        seed=1234,
        max_num_completed_requests=50,
    )
    code = (
        "import json; from dataclasses import asdict;"
        "from etalon.workload import WorkloadConfig, build_requests;"
        f"cfg = WorkloadConfig.of(**json.loads({json.dumps(json.dumps(to_mapping(cfg)))}));"
        "print(json.dumps([list(asdict(r).values()) for r in build_requests(cfg)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    theirs = [tuple(row) for row in json.loads(out)]
    assert theirs == _as_tuples(build_requests(cfg))


def test_trace_schedule_replays_splitwise_rows():
    path = shared_trace("splitwise_conv.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cfg = WorkloadConfig.of(
        request_interval_generator_provider="trace",
        trace_request_interval_generator_trace_file=str(path),
        trace_request_interval_generator_time_scale_factor=0.5,
        request_length_generator_provider="trace",
        trace_request_length_generator_trace_file=str(path),
        request_generator_max_tokens=1_000_000,
        max_num_completed_requests=10**6,
    )
    reqs = build_requests(cfg)
    assert len(reqs) == len(rows)  # the trace ran out: the schedule ends cleanly
    first = float(rows[0]["arrived_at"])
    expected = [0.5 * (float(r["arrived_at"]) - first) for r in rows]
    np.testing.assert_allclose([r.arrival_time for r in reqs], expected, rtol=1e-9, atol=1e-9)
    assert [r.prompt_tokens for r in reqs[:100]] == [
        int(r["num_prefill_tokens"]) for r in rows[:100]
    ]
    assert [r.output_tokens for r in reqs[-100:]] == [
        int(r["num_decode_tokens"]) for r in rows[-100:]
    ]


def test_short_length_trace_limits_a_poisson_schedule(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n5,6\n7,8\n9,10\n")
    reqs = build_requests(
        WorkloadConfig.of(
            request_length_generator_provider="trace",
            trace_request_length_generator_trace_file=str(trace),
            max_num_completed_requests=10,
        )
    )
    assert [(r.prompt_tokens, r.output_tokens) for r in reqs] == [(5, 6), (7, 8), (9, 10)]


def test_short_length_trace_is_said_and_cycling_fills_the_schedule(tmp_path, caplog):
    trace = tmp_path / "t.csv"
    trace.write_text("num_prefill_tokens,num_decode_tokens\n5,6\n7,8\n9,10\n")
    cfg = dict(request_length_generator_provider="trace",
               trace_request_length_generator_trace_file=str(trace), max_num_completed_requests=7)
    with caplog.at_level("WARNING"):
        build_requests(WorkloadConfig.of(**cfg))
    assert "7 requests asked, the length trace gives 3" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        reqs = build_requests(WorkloadConfig.of(**cfg, trace_request_length_generator_cycle=True))
    assert [r.prompt_tokens for r in reqs] == [5, 7, 9, 5, 7, 9, 5] and not caplog.text
