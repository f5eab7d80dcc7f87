"""Prefix caching on the real engine: vLLM on CPU with ``--enable-prefix-caching`` against the
simulator's own cache, on a shared-prefix workload and on multi-turn sessions.

A second vLLM, the session server's settings with prefix caching on, serves one live run of each
job (``validation/vllm_cpu_smollm2_prefix.yaml``, ``..._sessions.yaml``) at 30 % of the
simulated capacity, its cache emptied first; ``etalon.validate`` replays the run with vLLM's
settings, timed by the session's profile (conftest's ``profiled``: the profilers' prompts share
no prefix, so caching leaves a profile as it is) with the price of attention over a cached
prefix measured on the caching server (``etalon.context_profile``), re-anchored right before
the run. Held:

- the context probe saw vLLM reuse the prefixes: every extra TTFT after a cached prefix is
  below half of what the fit says computing the prefix again costs, and grows with it;
- the simulated prefix-cache hit rate within 5 points of vLLM's own counters (scraped from its
  ``/metrics`` during the run); for the shared prefixes both are also held to the share worked
  out by hand from the records: every request but each group's first finds its group's 256
  tokens (two 128-token blocks) cached;
- TTFT p50 and p90 within the job's 15 %, and p50 closer to vLLM's than the same replay with
  the simulated cache off (what a broken cache model would predict: +61 to +390 %), where the
  machine stayed quiet and steady and the engine ran within 25 % of the profile's speed (as in
  ``test_vllm_calibration``), and the run's own decode steps, which the cache leaves alone, kept
  the anchored speed (TBT p50 within the job's 15 %: the anchors only bracket the run); skipped
  with the numbers otherwise. A steady miss is measured once more; two steady misses fail.
  Before the context probe the bound was 40 %: a cached request's TTFT leaned on the profile's
  price of an attention pair (its new tokens attend over the cached 256), which the profilers'
  uncached prompts of <= 384 tokens barely determine (two profiles of the same engine: 1.4e-6
  and 7.8e-6 s), and two runs with steady engines came out +16.4 % and -24.4 %. With the
  probe's price, two runs came out TTFT p50 +10.6 and +6.5 % (prefixes; the second was left
  out by the decode gauge, TBT p50 +20.8 %), -2.1 and -3.7 % (sessions); p90 -0.3 and +2.7 %,
  -13.0 and +0.9 % (docs/real_engine.md).

About 7 minutes: vLLM's start, the context probe (~1.5 min), then per job two anchors and a
live run of 20 requests (twice after a steady miss).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from etalon.launchers.vllm_cpu import VllmCpuServer, vllm_cpu_missing_reason
from etalon.records import load_records
from etalon.validate import format_table
from etalon.validation import steps
from etalon.validation.job import load_job
from etalon.validation.meter import CpuMeter
from etalon.validation.render import scales_text
from etalon.validation.verdict import HIT_RATE_TOLERANCE, checked_rows, drift, hit_rate
from etalon.validation.vllm_settings import engine_config_of

pytestmark = [pytest.mark.real_engine, pytest.mark.timeout(1500)]

JOBS = Path(__file__).resolve().parents[2] / "validation"
# 20 requests a run instead of the jobs' 30: a minute less of the real-engine stage, and still
# 16 hits of 4 groups, or 6-7 sessions with 13 later turns
PREFIX = load_job(JOBS / "vllm_cpu_smollm2_prefix.yaml").with_overrides(num_requests=20)
SESSIONS = load_job(JOBS / "vllm_cpu_smollm2_sessions.yaml").with_overrides(num_requests=20)
LOAD = 0.3
BUSY_LIMIT = 0.5  # cores other processes may take while we time vLLM
DRIFT_LIMIT = 0.10  # how much the engine's speed may change during the live run
MOVED_LIMIT = 0.25  # how far from the profile's speed the engine may run before it
TTFT_BOUND = PREFIX.tolerance  # TTFT p50 and p90: the job's 15 %
MISSES_TO_FAIL = 2  # steady runs that must miss before a miss is the model's (one re-run)
# TBT p50, the in-run gauge: plain decode steps at this load, which the calibration test holds
# at the job's tolerance; beyond it the engine ran at another speed than anchored
DECODE_GAUGE_LIMIT = SESSIONS.tolerance


@pytest.fixture(scope="module")
def caching_server() -> VllmCpuServer:
    """vLLM with the session server's settings and prefix caching on (the jobs' ``server``)."""
    reason = vllm_cpu_missing_reason()
    if reason:
        pytest.skip(reason)
    assert PREFIX.settings == SESSIONS.settings and PREFIX.settings.enable_prefix_caching
    srv = VllmCpuServer(settings=PREFIX.settings,
                        startup_timeout=float(os.environ.get("ETALON_VLLM_STARTUP_TIMEOUT", "300")))
    print(f"\n[real_engine] starting vLLM with prefix caching (log: {srv.default_log_dir}) ...",
          file=sys.stderr, flush=True)
    with srv:
        yield srv


@pytest.fixture(scope="module")
def context_profile(caching_server, profiled, tmp_path_factory) -> Path:
    """The session's profile with the price of attention over a cached prefix measured on the
    caching server (``etalon.context_profile``): the profilers' uncached prompts barely
    determine it."""
    return steps.measure_context(caching_server, PREFIX, profiled.path, tmp_path_factory.mktemp("context"))


def test_the_context_probe_prices_attention_over_a_cached_prefix(context_profile):
    # vLLM reused each prefix: every extra is far below what computing the prefix again would
    # add (the fit's prefill of P tokens more), and the price fitted over every P is positive.
    # Not that the extra at the longest prefix beats the shortest's: the extras scatter by tens
    # of ms (docs/real_engine.md) against a ~30 ms difference, and a clean-clone CI run read
    # 33.5, 40.1 and 31.2 ms for P = 256, 512 and 768 (a price of 9.0e-7 s per pair)
    from etalon.profiles import load_profile

    section = load_profile(context_profile).prefill
    c = section.context
    print(f"\nprefill: {c.describe()}; the fit's own attention pair: "
          f"{section.physical.coefficient('attention_pairs'):.3g} s")
    recompute = [float(section.predict({"prompt_tokens": p + c.suffix_tokens}, strict=False)
                       - section.predict({"prompt_tokens": c.suffix_tokens}, strict=False))
                 for p in c.prefix_tokens]
    assert all(e < 0.5 * r for e, r in zip(c.extras_s, recompute)), (c, recompute)
    assert c.per_context_pair > 0, c


@pytest.mark.parametrize("job", [PREFIX, SESSIONS], ids=["shared_prefix", "sessions"])
def test_simulated_prefix_cache_matches_vllms(caching_server, profiled, context_profile, job, tmp_path):
    engine = engine_config_of(caching_server)
    assert engine.enable_prefix_caching and engine.block_size == caching_server.engine_config["engine_block_size"]
    capacity = steps.capacity_rps(job, context_profile, engine, tmp_path / "capacity")
    first = _measure(caching_server, job, context_profile, engine, capacity, tmp_path / "attempt1")
    records, hits, table = load_records(first.requests), first.hits, first.table
    assert len(records) == job.num_requests and all(r.ok for r in records), table
    assert hits is not None, f"no prefix-cache hit rate on one side{table}"
    if job is PREFIX:
        # by hand: a request finds its group's 256 tokens cached unless it is the group's first;
        # vLLM counts hits over the prompt tokens it looked up (every prompt token)
        groups = {r.prefix_group for r in records}
        expected = 256 * (len(records) - len(groups)) / sum(r.num_prompt_tokens for r in records)
        assert hits["measured_mean"] == pytest.approx(expected, abs=HIT_RATE_TOLERANCE), table
    else:
        # every turn after a session's first resends the whole conversation: most of it cached
        later = [r for r in records if r.turn]
        assert len(later) >= job.num_requests // 2 and hits["measured_mean"] > 0.3, table
    assert abs(hits["difference"]) <= HIT_RATE_TOLERANCE, table
    assert np.isfinite([r["relative_error"] for r in first.report["models"]["profiled"]]).all(), table
    attempts = [first]
    # a steady miss is measured once more (fresh anchors and run, the cache emptied): twenty
    # requests' p90 is their 18th-19th TTFT, and one disturbed request moves it
    if _steady(first, profiled) and first.misses:
        attempts.append(_measure(caching_server, job, context_profile, engine, capacity, tmp_path / "attempt2"))
    steady = [a for a in attempts if _steady(a, profiled)]
    if not steady:
        pytest.skip(f"hit rate held ({hits['difference'] * 100:+.1f} points); TTFT not compared: "
                    f"{_unsteady_reason(first, profiled)}{table}")
    said = "\n".join(a.said for a in attempts)
    print(said)
    for a in steady:
        assert abs(a.cached_error) < abs(a.blind_error), said  # the simulated cache, not luck
    missed = [a for a in steady if a.misses]
    if len(missed) >= MISSES_TO_FAIL:
        pytest.fail(f"TTFT off by more than {TTFT_BOUND:.0%} in {len(missed)} steady runs: "
                    f"{'; '.join(_misses_text(a) for a in missed)}{said}")
    if missed and len(missed) == len(steady):
        pytest.skip(f"TTFT missed {TTFT_BOUND:.0%} in the one steady run ({_misses_text(missed[0])}); "
                    f"its re-run was not steady: {_unsteady_reason(attempts[-1], profiled)}{said}")


def _measure(server, job, profile: Path, engine, capacity: float, out: Path) -> SimpleNamespace:
    """One fresh anchor, live run at ``LOAD`` of capacity and replay (with the simulated cache,
    and without it for contrast)."""
    qps = LOAD * capacity
    anchored = steps.anchor(server, job, profile, out / "anchor_before")
    meter = CpuMeter(server)
    requests = steps.live_run(server, job, out / "live", qps)
    foreign = meter.foreign_cores()
    before = steps.scales(anchored)
    after = steps.scales(steps.anchor(server, job, profile, out / "anchor_after"))
    report = steps.validate_run(job, requests, anchored, engine, out / "validation", roofline=False)
    blind = steps.validate_run(job, requests, anchored, dataclasses.replace(engine, enable_prefix_caching=False),
                               out / "cache_blind", roofline=False)
    table = (f"\n{out.name}: {LOAD:.0%} of {capacity:.2f} req/s = {qps:.3f} req/s, {report['num_requests']} "
             f"requests; other work on the machine: {foreign:.2f} cores during the live run; engine vs "
             f"profile (prefill, decode; > 1 slower): {scales_text(before)} before, {scales_text(after)} "
             f"after\n{format_table(report)}")
    print(table)
    ttft = {r["percentile"]: r["relative_error"] for r in checked_rows(report["models"]["profiled"])
            if r["metric"] == "ttft"}
    misses = {q: e for q, e in ttft.items() if not abs(e) <= TTFT_BOUND}
    cached_error, blind_error = p50_error(report, "ttft"), p50_error(blind, "ttft")
    said = (f"{table}\nTTFT p50 error with the simulated cache {cached_error:+.1%} (p90 "
            f"{ttft.get(90, float('nan')):+.1%}), without it {blind_error:+.1%}")
    return SimpleNamespace(requests=requests, report=report, table=table, foreign=foreign, before=before,
                           change=drift(before, after), decode_error=p50_error(report, "tbt"),
                           hits=hit_rate(report), misses=misses, cached_error=cached_error,
                           blind_error=blind_error, said=said)


def _steady(run: SimpleNamespace, profiled) -> bool:
    return _unsteady_reason(run, profiled) is None


def _unsteady_reason(run: SimpleNamespace, profiled) -> str | None:
    """Why the machine, not the model, may have decided the run's TTFT; None when it was steady.

    The run's own decode steps gauge the engine's speed during it, where the anchors only
    bracket it (a CI run: anchors 0.91 before and 0.91-0.99 after, yet TBT p50 -18 % and every
    latency 18-28 % slower than predicted, cached or not)."""
    moved = max(abs(x - 1.0) for x in run.before.values())
    if run.foreign > BUSY_LIMIT or profiled.foreign_cores > BUSY_LIMIT:
        return f"machine busy ({max(run.foreign, profiled.foreign_cores):.2f} cores of other work)"
    if run.change > DRIFT_LIMIT:
        return f"engine drifted {run.change:.1%} during the live run (limit {DRIFT_LIMIT:.0%})"
    if moved > MOVED_LIMIT:
        return f"engine ran {scales_text(run.before)} x the profile's time (limit {MOVED_LIMIT:.0%} off)"
    if abs(run.decode_error) > DECODE_GAUGE_LIMIT:
        return (f"the run's decode steps ran off the anchored speed (TBT p50 predicted "
                f"{run.decode_error:+.1%}, limit {DECODE_GAUGE_LIMIT:.0%}; the cache does not change them)")
    return None


def _misses_text(run: SimpleNamespace) -> str:
    return ", ".join(f"TTFT p{q} {e:+.1%}" for q, e in run.misses.items())


def p50_error(report: dict, metric: str) -> float:
    """The profile-timed replay's relative p50 error of ``metric`` in one validation.json."""
    return next(r["relative_error"] for r in checked_rows(report["models"]["profiled"])
                if r["metric"] == metric and r["percentile"] == 50)
