"""Calibration closes the loop on a real engine: profile vLLM on CPU, then predict fresh live runs.

The prefill and decode profilers fit the session's vLLM server; the simulator, timed by that
profile and configured with vLLM's own scheduler settings, replays two fresh Poisson runs (30 %
and 60 % of capacity) and must land within 15 % of the measured TTFT and TBT p50/p90. A roofline
calibrated to the same profile is reported beside it. The loop is
``scripts/validate_vllm_cpu.py``'s (its helpers are imported from there), which also writes
docs/validation_vllm_cpu.md. About 5.5 minutes.

Timings are only comparable on one machine. This one is a shared VM: the accuracy checks are
skipped, with the numbers in the reason, when other processes took more than ``BUSY_LIMIT``
cores during the profiling or the live run, or when the engine itself drifted: a probe of a few
isolated requests right after the live run misses the profile's own prediction by more than
``DRIFT_LIMIT`` (seen: 10-20 % over minutes with nothing else visible on the machine).

Where the profiled model is known to miss here, and why, is spelled out in ``KNOWN_GAPS``: a
miss on one of those (load, metric, percentile) is reported as an expected failure (xfail, with
the table), a pass there passes. Every other check is a hard assertion: at 30 % load TTFT p50
and TBT p50/p90, at 60 % load TTFT p50 and TBT p50, the fits and probes, the engine settings,
the roofline report.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from etalon.validate import format_table

pytestmark = pytest.mark.real_engine

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "validate_vllm_cpu.py"
TOLERANCE = 0.15
BUSY_LIMIT = 0.5  # cores other processes may take while we time vLLM
DRIFT_LIMIT = 0.10  # the engine's speed against the profile's, after the live run
IDLE_GAP = (
    "the first prefill after a pause is slower on this VM (memory untouched for seconds reads "
    "slowly); the idle probe measures it and the model charges it, but the penalty after 4 s "
    "idle came out 13, 44 and 99 ms in three profiles, so the slowest TTFTs at 30 % load, which "
    "follow pauses, carry that spread (TTFT p90 -2 to -6 % in those runs, -21 % without the "
    "probe)")
LOAD_GAP = (
    "tails at 60 % load are queueing delays, which grow like 1/(1-load): an engine a few % "
    "slower during the live run than while profiled (the probe allows 10 %) moves TTFT and TBT "
    "p90 by 15-20 %; with the batching and idle probes and the request path, TTFT p90 came out "
    "-0.9 to -11.9 % and TBT p90 -1.3 to -8.9 % in four runs, -21.6 and -18.0 % in a fifth "
    "whose probe read the engine 7.8 % slow before the live runs; before them TTFT p90 was -18 "
    "to -27 % in three of five runs")
#: (load, metric, percentile) -> why the profiled model may miss it here (docs/real_engine.md)
KNOWN_GAPS = {
    (0.3, "ttft", 90): IDLE_GAP,
    (0.6, "ttft", 90): LOAD_GAP,
    (0.6, "tbt", 90): LOAD_GAP,
}


def _load_script():
    spec = importlib.util.spec_from_file_location("validate_vllm_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vv = _load_script()


@pytest.fixture(scope="module")
def profiled(vllm_server, tmp_path_factory) -> SimpleNamespace:
    """One fresh profile of the session's server (prefill, then decode), ~2 minutes."""
    out = tmp_path_factory.mktemp("vllm_calibration")
    path = out / "profile.json"
    meter = vv.CpuMeter(vllm_server)
    prefill = vv.profile_prefill(vllm_server, out / "profiling", path)
    decode = vv.profile_decode(vllm_server, out / "profiling", path)
    engine = vv.engine_settings(vllm_server)
    foreign = meter.foreign_cores()
    first = vv.probe(vllm_server, out / "probe_before")
    return SimpleNamespace(out=out, path=path, prefill=prefill, decode=decode, engine=engine,
                           foreign_cores=foreign, drift_before=vv.drift(path, first),
                           capacity=vv.capacity_rps(path, engine, out / "capacity"))


def _physical(section: dict) -> tuple[float, dict[str, float]]:
    p = section["physical"]
    return p["intercept"], dict(zip(p["features"], p["coefficients"]))


def test_prefill_profile_fits_vllm(profiled):
    section = profiled.prefill
    fit, (intercept, coef) = section["fit"], _physical(section)
    assert fit["num_points"] == len(vv.PREFILL_LENGTHS), fit
    assert fit["r2"] >= 0.98, fit
    # every repetition, not only the fastest one the curve goes through, lies close to it
    assert fit["raw_r2"] >= 0.95, fit
    # a fixed cost and a per-token cost; the attention term may be ~0 but never negative
    assert intercept > 0 and coef["prompt_tokens"] > 0 and coef["attention_pairs"] >= 0, section["physical"]
    # the x axis is what vLLM reported prefilling: the tokenizer made prompts of the asked length
    m = section["measurements"]
    assert all(abs(n - r) <= 1 for n, r in zip(m["prompt_tokens"], m["requested_prompt_tokens"])), m
    # the batching probe: every group's 3 prompts of 256 shared one step, and cost more than
    # three prompts priced alone (0.27-1.23 of what one prompt of 768 adds, in six profiles)
    batching = section["batching"]
    assert batching["prompt_tokens"] == vv.BATCHING_PROBE_LENGTH, batching
    assert batching["groups_left_out"] == 0 and batching["per_cross_pair"] > 0, batching
    # the idle probe: a penalty table over the measured pauses, never negative
    wake = section["wake_up"]
    assert len(wake["gaps_s"]) >= 2 and min(wake["penalty_s"]) >= 0, wake


def test_decode_profile_fits_vllm(profiled):
    section = profiled.decode
    fit, (intercept, coef) = section["fit"], _physical(section)
    # every level ran with its whole batch decoding (vLLM's max_num_seqs is far above 8)
    levels = {(lv["batch"], lv["prompt_tokens"]) for lv in section["settings"]["levels"]}
    assert levels == {(b, p) for b in vv.DECODE_BATCHES for p in vv.DECODE_PROMPTS}, levels
    assert fit["cv_mape"] <= 0.15 and fit["mape"] <= 0.10, fit
    # a fixed cost per step, a cost per sequence (batching is cheap here, not free), and a
    # context term that may be ~0 but never negative
    assert intercept > 0 and coef["decode_batch"] > 0 and coef["decode_context"] >= 0, section["physical"]


def test_simulator_engine_is_vllms(vllm_server, profiled):
    engine, cfg, settings = profiled.engine, vllm_server.engine_config, vllm_server.settings
    assert engine["scheduler"] == ("sarathi" if cfg["engine_enable_chunked_prefill"] else "vllm")
    assert engine["max_batch_size"] == settings.max_num_seqs
    assert engine["max_batched_tokens"] == settings.max_num_batched_tokens
    assert engine["num_kv_blocks"] * engine["block_size"] == cfg["engine_kv_cache_tokens"]


@pytest.mark.parametrize("load", vv.LOADS, ids=lambda x: f"{x:.0%}")
def test_simulator_predicts_live_run(vllm_server, profiled, load):
    qps = load * profiled.capacity
    meter = vv.CpuMeter(vllm_server)
    requests = vv.live_run(vllm_server, profiled.out / f"live_{load}", qps)
    foreign = meter.foreign_cores()
    after = vv.drift(profiled.path, vv.probe(vllm_server, profiled.out / f"probe_{load}"))
    report = vv.validate_run(requests, profiled.path, profiled.engine, profiled.out / f"validation_{load}")
    table = (f"\n{load:.0%} of {profiled.capacity:.2f} req/s = {qps:.3f} req/s, {report['num_requests']} "
             f"requests; other work on the machine: {profiled.foreign_cores:.2f} cores while profiling, "
             f"{foreign:.2f} during the live run; engine vs profile (probe): {profiled.drift_before:.1%} "
             f"before the live runs, {after:.1%} after this one\n{format_table(report)}")
    print(table)
    assert report["num_requests"] == vv.NUM_REQUESTS, table
    # the calibrated roofline is reported on the same run, with finite errors (no tolerance)
    roof = report["roofline_fit"]
    assert 0 < roof["mfu"] <= 1 and 0 < roof["mbu"] <= 1, roof
    rows = report["models"]["roofline"]
    assert len(rows) == len(report["models"]["profiled"]), table
    assert all(math.isfinite(r["predicted_s"]) and math.isfinite(r["relative_error"]) for r in rows), table
    if max(profiled.foreign_cores, foreign) > BUSY_LIMIT:
        pytest.skip(f"machine busy: other processes took {profiled.foreign_cores:.2f} cores while "
                    f"profiling and {foreign:.2f} during the live run (limit {BUSY_LIMIT}); timings "
                    f"taken on two different machines are not compared{table}")
    if max(profiled.drift_before, after) > DRIFT_LIMIT:
        pytest.skip(f"engine drifted: a probe missed the profile by {profiled.drift_before:.1%} before "
                    f"the live runs and {after:.1%} after this one (limit {DRIFT_LIMIT:.0%}); the "
                    f"machine changed speed, a comparison would test it, not the model{table}")
    checked = [r for r in report["models"]["profiled"]
               if r["metric"] in ("ttft", "tbt") and r["percentile"] in (50, 90)]
    assert len(checked) == 4
    misses = [r for r in checked if not abs(r["relative_error"]) <= TOLERANCE]
    known = {(load, r["metric"], r["percentile"]) for r in misses} & set(KNOWN_GAPS)
    hard = [r for r in misses if (load, r["metric"], r["percentile"]) not in known]
    assert not hard, f"profiled model off by more than {TOLERANCE:.0%}: {hard}{table}"
    if misses:
        missed = ", ".join(f"{r['metric']} p{r['percentile']} {r['relative_error']:+.1%}" for r in misses)
        pytest.xfail(f"known gap ({missed}): {'; '.join(sorted({KNOWN_GAPS[k] for k in known}))}{table}")
