"""Error bars of a simulated prediction: the same simulation run again under replicas of what is
uncertain, their latency percentiles, and the interval they give (``etalon.metrics.intervals``).

Replica ``k`` (1..N) of a simulation changes what its ``sources`` name:

- ``fit``: the profile is replaced by bootstrap replica ``k`` of it (its stored measurements
  resampled and refitted, ``etalon.calibration.bootstrap``, drawn from ``--interval-seed``);
- ``workload``: the workload is drawn again with seed ``--seed + k``, so replica ``k``'s
  requests are those of ``etalon simulate --seed <seed + k>``.

Each replica is one draw of both at once (N simulations, not N × N), so the interval holds the
two sources together. A source that does not apply is left out and said so in ``notes``: no fit
to bootstrap without ``--profile``, no workload to redraw in a replay of recorded requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from etalon.cli_errors import UserError
from etalon.metrics.intervals import (
    IntervalConfig,
    intervals_to_dict,
    latency_percentiles,
    percentile_intervals,
)
from etalon.workload.config import WorkloadConfig
from etalon.workload.request import Request


@dataclass
class Replicas:
    """What the replicas varied and each one's ``latency_percentiles``."""

    sources: list[str]
    values: list[dict] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_sources(settings: IntervalConfig, *, profile: str | None,
                 workload: WorkloadConfig | None) -> tuple[list[str], list[str]]:
    """The sources that apply, and notes on those asked for that do not."""
    sources, notes = [], []
    if "fit" in settings.wanted:
        if profile:
            sources.append("fit")
        else:
            notes.append("fit: no --profile, so no fit to bootstrap")
    if "workload" in settings.wanted:
        if workload is not None:
            sources.append("workload")
        else:
            notes.append("workload: the replayed requests are fixed (a replay)")
    if not sources:
        raise UserError(f"--intervals: nothing to vary ({'; '.join(notes)})")
    return sources, notes


def simulate_replicas(cfg, requests: list[Request], settings: IntervalConfig, *,
                      workload: WorkloadConfig | None) -> Replicas:
    """``settings.intervals`` replicas of the simulation ``cfg`` (a ``SimConfig``) of
    ``requests``; ``workload``: what to draw again with seed ``workload.seed + k`` (None: the
    requests are fixed)."""
    from etalon.simulator.deployment import build_simulation, pool_plans
    from etalon.workload.schedule import build_requests

    sources, notes = plan_sources(settings, profile=cfg.perf.profile, workload=workload)
    out = Replicas(sources, notes=notes)
    plans = pool_plans(cfg)
    profiles = None
    if "fit" in sources:
        from etalon.calibration.bootstrap import bootstrap_profiles
        from etalon.perf.profiled import ProfiledPerfModel
        from etalon.profiles import load_profile

        profiles = bootstrap_profiles(load_profile(cfg.perf.profile), settings.intervals,
                                      settings.interval_seed)
    for k in range(1, settings.intervals + 1):
        run_cfg, reqs, seed = cfg, requests, None
        if "workload" in sources:
            seed = workload.seed + k
            run_cfg = replace(cfg, workload=replace(workload, seed=seed))
            reqs = build_requests(run_cfg.workload)
            if cfg.duration is not None:
                reqs = [r for r in reqs if r.arrival_time < cfg.duration]
        run_plans = plans
        if profiles is not None:
            perf = ProfiledPerfModel(profiles[k - 1])
            run_plans = [replace(p, perf=perf) for p in plans]
        sim = build_simulation(run_cfg, run_plans)
        result = sim.run(reqs, closed_loop=run_cfg.workload.closed_loop(),
                         sessions=run_cfg.workload.sessions())
        table = result.table
        out.values.append(latency_percentiles(table.select(table.numbers("scheduled_at") >= cfg.warm_up)))
        out.seeds.append(seed)
    return out


def interval_section(point: dict, replicas: Replicas, settings: IntervalConfig
                     ) -> tuple[dict, dict]:
    """The ``intervals`` section of a summary (settings, sources, per-metric intervals) and the
    intervals themselves (``percentile_intervals``)."""
    ivs = percentile_intervals(point, replicas.values, settings.interval_level)
    return {"level_asked": settings.interval_level, "replicas": len(replicas.values),
            "sources": replicas.sources, "notes": replicas.notes,
            "bootstrap_seed": settings.interval_seed if "fit" in replicas.sources else None,
            "workload_seeds": [s for s in replicas.seeds if s is not None] or None,
            "metrics": intervals_to_dict(ivs)}, ivs
