"""``etalon recommend``: pruning by memory, ranking by cost, minimal replicas, the Pareto front,
the trust column and one-line user errors.

Truths are independent of the code under test: prices copied by hand from
``etalon/data/hardware.yaml``, Llama-3.1-70B's published parameter count, a Pareto front worked
out on paper, and each recommended replica count re-checked through ``etalon.simulate`` (the
files it writes, read back) at that count and one fewer.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from etalon.capacity_search.recommend import RecommendConfig, format_report, main, recommend
from etalon.capacity_search.recommend_sweep import pareto_front, simulate_once
from etalon.options import from_mapping

ROOT = Path(__file__).resolve().parents[1]
# $/GPU-hour, copied by hand from etalon/data/hardware.yaml
PRICES = {"l4": 0.8, "a10g": 1.0, "h100-sxm": 2.9, "rtx-4090": 0.45}


def config(tmp_path: Path, **settings) -> RecommendConfig:
    """A small, fast sweep: Llama-3-8B on three accelerators, TP 1-2, 200 requests."""
    data = {"model": "llama-3-8b", "target_qps": 6, "hardware": ["l4", "a10g", "h100-sxm"],
            "tp_sizes": [1, 2], "pp_sizes": [1], "jobs": 1, "output_dir": str(tmp_path),
            "profiles_dir": str(tmp_path / "no-profiles"),
            "slo": {"ttft_max_s": 0.5, "tbt_max_s": 0.1},
            "workload": {"max_num_completed_requests": 200,
                         "fixed_request_generator_prefill_tokens": 512,
                         "fixed_request_generator_decode_tokens": 128}}
    for key, value in settings.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return from_mapping(RecommendConfig, data, "test")


def passing(report: dict) -> list:
    return [o for o in report["outcomes"] if o.status == "pass"]


@pytest.fixture(scope="module")
def at_6(tmp_path_factory):
    return recommend(config(tmp_path_factory.mktemp("rec6"), target_qps=6))


def test_70b_fp16_on_one_24gb_gpu_is_pruned_for_its_weights(tmp_path):
    report = recommend(config(tmp_path, model="llama-3.1-70b", dtype="fp16",
                              hardware=["rtx-4090"], tp_sizes=[1], pp_sizes=[1]))
    [only] = report["outcomes"]
    assert only.status == "pruned" and not only.probes  # never simulated
    assert only.reason.startswith("does not fit: weights")
    # 70.6e9 parameters x 2 bytes = 131.5 GiB, against 0.9 x 23.7 GiB usable on an RTX 4090
    weights = float(only.reason.split("weights ")[1].split(" GiB")[0])
    budget = float(only.reason.split("the ")[1].split(" GiB budget")[0])
    assert 129 < weights < 134 and 20 < budget < 22.5


def test_ranked_by_cost_with_costs_from_the_price_list(at_6):
    rows = passing(at_6)
    assert len(rows) >= 4
    for o in rows:  # price x GPUs per replica x replicas, prices by hand
        assert o.cost_per_hour == pytest.approx(PRICES[o.layout.hardware] * o.layout.tp * o.n)
    costs = [o.cost_per_hour for o in rows]
    assert costs == sorted(costs)
    cheapest = rows[0]
    assert (cheapest.layout.hardware, cheapest.layout.tp, cheapest.n) == ("h100-sxm", 1, 1)
    text = format_report(at_6)
    first_row = text.split("Configurations that meet the SLO, cheapest first")[1].splitlines()[3]
    assert first_row.split()[:2] == ["1", "h100-sxm"] and "2.90" in first_row
    # requests per dollar: 6 req/s x 3600 s / $2.90
    assert f"{round(6 * 3600 / 2.90):,}" in first_row


def test_each_recommended_replica_count_is_the_fewest_that_pass(tmp_path, at_6):
    """Re-judged through etalon.simulate's files (runs_dir): passes at n, fails at n - 1."""
    args = config(tmp_path, target_qps=6)
    from etalon.capacity_search.recommend import build_sweep

    sweep, _, _ = build_sweep(args)
    sweep = replace(sweep, runs_dir=str(tmp_path / "runs"))
    checked = 0
    for o in passing(at_6):
        again = simulate_once(sweep, o.layout, o.n)
        assert again.passed and again.ttft_s == pytest.approx(o.ttft_s, rel=1e-6)
        if o.n > 1:
            assert not simulate_once(sweep, o.layout, o.n - 1).passed, o.layout.label
            checked += 1
    assert checked >= 2
    assert (tmp_path / "runs").is_dir()


def test_an_impossible_slo_passes_nothing_and_says_so(tmp_path, capsys):
    report = recommend(config(tmp_path, slo={"ttft_max_s": 1e-4}))
    assert not passing(report) and report["pareto"] == []
    failed = [o for o in report["outcomes"] if o.status == "fail"]
    assert len(failed) == 6 and all("> p90 TTFT max 0.1 ms" in o.reason for o in failed)
    assert "No configuration meets the SLO" in format_report(report)
    code = main(["--model", "llama-3-8b", "--hardware", "h100-sxm", "--tp-sizes", "1",
                 "--pp-sizes", "1", "--target-qps", "2", "--ttft-max-s", "0.0001",
                 "--max-num-completed-requests", "100", "--output-dir", str(tmp_path / "cli")])
    assert code == 1 and "No configuration meets the SLO" in capsys.readouterr().out


def test_a_rate_beyond_the_replica_cap_fails_with_the_slo_reason(tmp_path):
    report = recommend(config(tmp_path, hardware=["l4"], tp_sizes=[1], target_qps=20,
                              max_replicas=2))
    [o] = report["outcomes"]
    assert o.status == "fail" and o.reason.startswith("fails even at 2 replicas")
    assert "TTFT" in o.reason or "TBT" in o.reason


def test_a_higher_rate_never_costs_less(tmp_path, at_6):
    low = recommend(config(tmp_path / "low", target_qps=2))
    high = recommend(config(tmp_path / "high", target_qps=18))
    cheapest = [passing(r)[0].cost_per_hour for r in (low, at_6, high)]
    assert cheapest == sorted(cheapest)
    assert cheapest[0] < cheapest[1]  # not vacuous: this sweep does get dearer
    by_layout = [{o.layout.label: o.n for o in passing(r)} for r in (low, at_6, high)]
    for label, n in by_layout[0].items():  # and no layout needs fewer replicas at more load
        for later in by_layout[1:]:
            if label in later:
                assert later[label] >= n, label


def test_pareto_front_of_a_hand_made_list():
    points = [(10, 5), (8, 7), (12, 4), (9, 9), (8, 8), (15, 4), (10, 5)]
    # by hand: (8, 7) is cheapest; (8, 8) and (9, 9) are worse than it; the two (10, 5) beat
    # everything slower at their price; (12, 4) is the fastest; (15, 4) costs more for the same
    assert pareto_front(points) == [1, 0, 6, 2]
    assert pareto_front([]) == []
    assert pareto_front([(3, 3)]) == [0]


def test_outputs_table_plot_and_front(tmp_path, at_6):
    from etalon.capacity_search.recommend import write_report

    write_report(at_6, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "recommend.csv")))
    assert [r["status"] for r in rows[:len(passing(at_6))]] == ["pass"] * len(passing(at_6))
    body = json.loads((tmp_path / "recommend.json").read_text())
    front = [(c["cost_per_hour_usd"], c["ttft_p90_ms"]) for c in body["configurations"]
             if c["pareto"]]
    others = [(c["cost_per_hour_usd"], c["ttft_p90_ms"]) for c in body["configurations"]
              if c["status"] == "pass" and not c["pareto"]]
    assert front and all(any(fc <= c and ft <= t for fc, ft in front) for c, t in others)
    png = (tmp_path / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert all(r["trust"] == "roofline" for r in rows)
    assert "analytic roofline estimates" in format_report(at_6)


def test_parallel_jobs_give_the_same_answer(tmp_path, at_6):
    two = recommend(config(tmp_path, jobs=2))
    assert [(o.layout.label, o.n, o.ttft_s) for o in passing(two)] == \
           [(o.layout.label, o.n, o.ttft_s) for o in passing(at_6)]


def test_disaggregated_splits_are_tried_and_costed_by_both_pools(tmp_path):
    report = recommend(config(tmp_path, hardware=["h100-sxm"], tp_sizes=[1],
                              disaggregated=True, pd_splits=["1:1", "1:2"]))
    labels = {o.layout.label for o in report["outcomes"]}
    assert labels == {"h100-sxm TP1 x PP1", "h100-sxm TP1 x PP1 P1:D1",
                      "h100-sxm TP1 x PP1 P1:D2"}
    for o in passing(report):
        pools = sum(o.layout.split) * o.n if o.layout.split else o.n
        assert o.cost_per_hour == pytest.approx(2.9 * pools)


def test_trust_is_profiled_where_a_profile_times_the_pair(tmp_path):
    settings = dict(model="smollm2-135m", hardware=["cpu-2core"], pp_sizes=[1, 2],
                    target_qps=0.5, slo={"ttft_max_s": 3.0, "tbt_max_s": None},
                    workload={"max_num_completed_requests": 60})
    report = recommend(config(tmp_path, profiles_dir=str(ROOT / "profiles"), **settings))
    trust = {o.layout.label: o.layout.trust for o in report["outcomes"]}
    assert trust == {"cpu-2core TP1 x PP1": "profiled", "cpu-2core TP1 x PP2": "roofline"}
    profiled = next(o for o in report["outcomes"] if o.layout.trust == "profiled")
    assert profiled.layout.profile.endswith("smollm2-135m-instruct_cpu-2core.json")
    bare = recommend(config(tmp_path / "bare", **settings))  # no profiles there
    assert {o.layout.trust for o in bare["outcomes"]} == {"roofline"}


@pytest.mark.parametrize("argv,expected", [
    (["--model", "not-a-model"], "unknown model"),
    (["--hardware", "h100-sxm,warp-drive"], "unknown hardware 'warp-drive'"),
    (["--target-qps", "0"], "--target-qps must be a positive"),
    (["--target-qps", "-3"], "--target-qps must be a positive"),
    (["--ttft-max-s", "none"], "argument --ttft-max-s: invalid float value"),
])
def test_user_mistakes_are_one_line(tmp_path, capsys, argv, expected):
    base = {"--model": "llama-3-8b", "--target-qps": "2", "--ttft-max-s": "1",
            "--output-dir": str(tmp_path)}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    with pytest.raises(SystemExit) if "invalid" in expected else _no_exit():
        code = main([w for pair in base.items() for w in pair])
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_bad_slo_key_in_a_config_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("model: llama-3-8b\ntarget_qps: 2\nslo:\n  ttft_p90_max: 0.5\n")
    assert main(["--config", str(path), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key(s) ttft_p90_max" in err and len(err.splitlines()) == 1
    assert main(["--model", "llama-3-8b", "--target-qps", "2"]) == 2  # no SLO target at all
    assert "the SLO sets no target" in capsys.readouterr().err


def test_the_etalon_command_reports_an_unknown_model_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "etalon", "recommend", "--model", "llama-9000",
                          "--target-qps", "1", "--ttft-max-s", "1", "--output-dir",
                          str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "unknown model" in res.stderr
    assert res.stderr.startswith("etalon.capacity_search.recommend: error:")


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_layouts_keep_the_largest_tp_of_each_gpu_count():
    from etalon.capacity_search.recommend_sweep import enumerate_layouts, priced_hardware
    from etalon.estimator.models import load_model
    from etalon.simulator.config import SimConfig

    kept, pruned = enumerate_layouts(
        load_model("llama-3.1-70b"), priced_hardware(["h100-sxm"]), SimConfig(),
        tp_sizes=[1, 2, 4], pp_sizes=[1, 2], max_gpus_per_replica=4, longest=2048)
    assert [(k.tp, k.pp) for k in kept] == [(2, 1), (4, 1)]
    reasons = {(o.layout.tp, o.layout.pp): o.reason for o in pruned}
    assert reasons[(1, 1)].startswith("does not fit: weights")  # 131 GiB on one 80 GB GPU
    assert reasons[(1, 2)].startswith("same GPU count as TP2 x PP1")
    assert reasons[(2, 2)].startswith("same GPU count as TP4 x PP1")
    assert reasons[(4, 2)].startswith("too many GPUs: 8 per replica")


def test_the_unloaded_bound_never_exceeds_what_the_simulator_observed(tmp_path, at_6):
    """The bound that fails layouts unsimulated is sound: an SLO at exactly the observed
    latencies of each passing configuration is not ruled out by it."""
    from etalon.capacity_search.recommend import build_sweep
    from etalon.capacity_search.recommend_sweep import lower_bound_problem, sim_config
    from etalon.capacity_search.slo import SLO
    from etalon.simulator.deployment import pool_plans

    sweep, _, _ = build_sweep(config(tmp_path))
    for o in passing(at_6):
        tight = replace(sweep, slo=SLO(ttft_max_s=o.ttft_s, tbt_max_s=o.tbt_s))
        plans = pool_plans(sim_config(tight, o.layout, o.n))
        assert lower_bound_problem(tight, o.layout, plans) is None
        impossible = replace(sweep, slo=SLO(ttft_max_s=o.ttft_s / 100))
        assert lower_bound_problem(impossible, o.layout,
                                   pool_plans(sim_config(impossible, o.layout, 1)))


def test_slo_flags_and_file_keys_are_the_slo_fields(tmp_path):
    """Every SLO field is a flag (its name with dashes) and a key under 'slo:'; both reach the
    SLO that judges the runs."""
    from dataclasses import fields

    from etalon.capacity_search.recommend import build_parser, build_sweep
    from etalon.capacity_search.slo import SLO
    from etalon.options import config_from_args

    names = [f.name for f in fields(SLO)]
    flags = build_parser()._option_string_actions
    assert all("--" + n.replace("_", "-") in flags for n in names)
    path = tmp_path / "job.yaml"
    path.write_text("model: llama-3-8b\ntarget_qps: 2\nslo:\n  tbt_max_s: 0.05\n"
                    "  tbt_percentile: 95\nworkload:\n  max_num_completed_requests: 50\n")
    ns = build_parser().parse_args(["--config", str(path), "--ttft-max-s", "0.7"])
    sweep, _, _ = build_sweep(config_from_args(RecommendConfig, ns))
    assert (sweep.slo.ttft_max_s, sweep.slo.tbt_max_s, sweep.slo.tbt_percentile) == (0.7, 0.05, 95)
    assert len(sweep.requests) == 50 and sweep.target_qps == 2
