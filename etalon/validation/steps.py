"""The loop's steps against a live vLLM: profile, capacity, anchor, live run, replay.

Every step that talks to the server runs one of etalon's own command-line tools as a
subprocess, exactly as a user would, pinned to the cores vLLM's engine does not compute on so
the load generator does not steal the engine's core. The capacity is computed in-process by
etalon's simulator.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from etalon.engine.config import EngineConfig
from etalon.launchers.vllm_cpu import VllmCpuServer
from etalon.options import as_flags
from etalon.validation.job import ValidationJob


def engine_flags(engine: EngineConfig) -> list[str]:
    """The simulator's engine flags (``etalon.validate``, ``etalon.simulate``) for ``engine``."""
    return as_flags(dataclasses.asdict(engine))


def client_cpus(server: VllmCpuServer) -> set[int] | None:
    """The cores vLLM's engine does not compute on (``None``: no such core, or not known)."""
    engine = set(server.engine_config.get("engine_omp_core_ids") or ())
    free = os.sched_getaffinity(0) - engine
    return free if engine and free else None


def run_etalon(module: str, *args: str, cpus: set[int] | None = None,
               timeout: float = 600.0) -> subprocess.CompletedProcess:
    """``python -m etalon.<module> ARGS`` on ``cpus``; a failure raises with its stderr."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    res = subprocess.run([sys.executable, "-m", f"etalon.{module}", *args], capture_output=True,
                         text=True, timeout=timeout, env=env,
                         preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    if res.returncode != 0:
        raise RuntimeError(f"etalon.{module} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return res


def _server_args(server: VllmCpuServer) -> list[str]:
    return ["--server", server.base_url, "--model", server.model_name, "--tokenizer", server.tokenizer_path]


def _profiler_args(server: VllmCpuServer, job: ValidationJob, out: Path, profile: Path) -> list[str]:
    return [*_server_args(server), "--hardware", job.hardware, "--output-dir", str(out),
            "--merge-into", str(profile), "--no-plots"]


def _numbers(values) -> list[str]:
    return [str(v) for v in values]


def profile_prefill(server: VllmCpuServer, job: ValidationJob, out: Path, profile: Path) -> dict:
    """Runs the prefill profiler into ``profile`` (merged); returns its prefill section."""
    p = job.prefill
    run_etalon("prefill_profiler", *_profiler_args(server, job, out, profile),
               "--prefill-lengths", *_numbers(p.lengths), "--num-repetitions", str(p.repetitions),
               "--batching-probe-length", str(p.batching_probe_length),
               "--batching-probe-prompts", str(p.batching_probe_prompts),
               "--join-probe-length", str(p.join_probe_length), *_context_flags(job),
               cpus=client_cpus(server))
    return json.loads((out / "prefill_profile.json").read_text())["prefill"]


def _context_flags(job: ValidationJob) -> list[str]:
    p = job.prefill
    if not p.context_probe_prefixes:
        return []
    return ["--context-probe-prefixes", *_numbers(p.context_probe_prefixes),
            "--context-probe-suffix", str(p.context_probe_suffix)]


def measure_context(server: VllmCpuServer, job: ValidationJob, profile: Path, out: Path) -> Path:
    """``profile`` (fitted on a server with or without prefix caching) with the price of
    attention over a cached prefix measured on ``server``, which caches
    (``etalon.context_profile``, the job's ``prefill.context_probe_*``); returns the copy,
    ``out/context.json``."""
    p = job.prefill
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "context.json"
    server.reset_prefix_cache()
    run_etalon("context_profile", "--profile", str(profile), "--output", str(dest), *_server_args(server),
               # the job's prefixes, else the probe's own default lengths
               *(["--prefixes", *_numbers(p.context_probe_prefixes)] if p.context_probe_prefixes else []),
               "--suffix-tokens", str(p.context_probe_suffix),
               "--num-repetitions", str(max(2, p.repetitions - 1)),  # as the profiler's probes
               "--records", str(out / "context_requests.jsonl"), cpus=client_cpus(server))
    return dest


def profile_decode(server: VllmCpuServer, job: ValidationJob, out: Path, profile: Path) -> dict:
    """Runs the decode profiler into ``profile`` (merged); returns its decode section."""
    d = job.decode
    run_etalon("decode_profiler", *_profiler_args(server, job, out, profile),
               "--batch-sizes", *_numbers(d.batch_sizes), "--prompt-lengths", *_numbers(d.prompt_lengths),
               "--fixed-request-generator-decode-tokens", str(d.output_tokens),
               "--num-repetitions", str(d.repetitions), cpus=client_cpus(server))
    return json.loads((out / "decode_profile.json").read_text())["decode"]


def capacity_rps(job: ValidationJob, profile: Path, engine: EngineConfig, out: Path) -> float:
    """Requests/s of the job's workload with ``job.capacity_streams`` requests always in flight,
    as the profile times it: the simulator with every request queued at t = 0 and that many
    batch slots (a closed loop; the SLO-bound capacity of ``etalon.capacity_search`` is another
    quantity, which depends on an SLO)."""
    from etalon.perf.config import PerfModelConfig
    from etalon.report.outputs import OutputConfig
    from etalon.simulate import simulate
    from etalon.simulator.config import SimConfig

    streams = job.capacity_streams
    wl = job.workload_config(request_interval_generator_provider="static",
                             max_num_completed_requests=16 * streams)
    cfg = SimConfig(perf=PerfModelConfig(profile=str(profile)),
                    engine=dataclasses.replace(engine, max_batch_size=streams),
                    outputs=OutputConfig(output_dir=str(out), no_plots=True), workload=wl).validate()
    return float(simulate(cfg, quiet=True)["throughput"]["requests_per_s"])


def anchor(server: VllmCpuServer, job: ValidationJob, profile: Path, out: Path) -> Path:
    """``profile`` re-anchored to the engine's speed now (``etalon.anchor_profile``); returns
    the anchored copy, ``out/anchored.json`` (the probe's records beside it).

    This machine is a shared VM whose speed drifts by 10-20 % over minutes with nothing else
    visible on it. At 60 % load the tails are queueing delays that grow like 1 / (1 - load), so
    a few % of engine speed moves them by 15-20 %: the live runs are predicted by the profile
    re-anchored right before each of them (seconds of requests), and the same probe right after
    says whether the machine changed speed during the run (:func:`~etalon.validation.verdict.drift`)."""
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "anchored.json"
    a = job.anchor
    server.reset_prefix_cache()  # each probe sends the same prompts: none may find them cached
    run_etalon("anchor_profile", "--profile", str(profile), "--output", str(dest), *_server_args(server),
               "--prompt-tokens", str(a.prompt_tokens), "--output-tokens", str(a.output_tokens),
               "--num-requests", str(a.num_requests), "--records", str(out / "probe_requests.jsonl"),
               cpus=client_cpus(server))
    return dest


def scales(profile: Path) -> dict[str, float]:
    """How much slower than profiled (> 1) the anchored ``profile`` says the engine runs."""
    from etalon.profiles import load_profile

    prof = load_profile(profile)
    return {"prefill": prof.prefill.scale, "decode": prof.decode.scale}


def live_run(server: VllmCpuServer, job: ValidationJob, out: Path, qps: float) -> Path:
    """A Poisson run of the job's workload against the server; returns its requests.jsonl.
    With prefix caching the run starts from an empty cache: every load sends the same seeded
    prompts, and the replay's simulated cache starts empty too."""
    server.reset_prefix_cache()
    turns = job.workload_config().session_turns  # sessions arrive at qps / turns: qps is requests/s
    run_etalon("run_benchmark", *_server_args(server), "--no-ray", "--num-ray-clients", "1",
               "--num-concurrent-requests-per-client", "256", "--no-progress", "--no-plots",
               "--max-num-completed-requests", str(job.num_requests), "--seed", str(job.seed),
               "--poisson-request-interval-generator-qps", f"{qps / turns:.4f}", *as_flags(job.workload),
               "--output-dir", str(out), cpus=client_cpus(server))
    return out / "requests.jsonl"


def validate_run(job: ValidationJob, requests: Path, profile: Path, engine: EngineConfig, out: Path,
                 roofline: bool = True) -> dict:
    """``etalon.validate`` of one live run; returns its validation.json."""
    extra = as_flags({f"roofline_{k}": v for k, v in dataclasses.asdict(job.roofline).items()}) if roofline else []
    run_etalon("validate", "--requests", str(requests), "--profile", str(profile), *engine_flags(engine),
               *extra, "--output-dir", str(out))
    return json.loads((out / "validation.json").read_text())


def compare_models(job: ValidationJob, requests: Path, profile: Path, anchored: Path,
                   engine: EngineConfig, out: Path) -> dict:
    """One live run replayed three ways: the profile re-anchored right before the run
    (``models["anchored"]``), the profile as fitted (``models["as_fitted"]``), and a roofline
    whose efficiencies are fitted to the anchored profile (``models["roofline"]``)."""
    report = validate_run(job, requests, anchored, engine, out)
    plain = validate_run(job, requests, profile, engine, out / "as_fitted", roofline=False)
    models = report["models"]
    report["models"] = {"anchored": models["profiled"], "as_fitted": plain["models"]["profiled"],
                        "roofline": models["roofline"]}
    return report


def mean_in_flight(requests: Path) -> float:
    """Time-averaged number of requests between send and completion in a live run."""
    from etalon.records import load_records

    recs = [r for r in load_records(requests) if r.ok]
    start, end = min(r.sent_at for r in recs), max(r.completed_at for r in recs)
    return sum(r.completed_at - r.sent_at for r in recs) / (end - start)
