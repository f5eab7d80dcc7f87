"""Error bars on a simulated configuration's capacity: its search run again per replica.

With ``search: {intervals: N}`` in a job, every *simulated* configuration, after its search,
searches N more times: replica ``k`` times the simulator with bootstrap replica ``k`` of the
deployment's ``profile`` (``etalon.calibration.bootstrap``; written to
``<configuration>/intervals/replica_<k>/profile.json`` so a replica can be rerun by hand) and
draws the workload with seed ``seed + k``. The capacities found give a prediction interval
(``etalon.metrics.intervals``) for the capacity, in the search's unit (req/s, or users).

That interval is not the search's own ``interval`` (where the SLO boundary lies given the
probes' noise, for *one* profile and seed): it says how much the capacity would move with
another fit of the same measurements and another draw of the workload. Live configurations
get none: a live capacity's spread needs repeated live searches (``repeats_near_boundary``
covers the noise at the boundary).
"""

from __future__ import annotations

import copy
from pathlib import Path

from etalon.capacity_search.probes import simulated_probe
from etalon.capacity_search.search import search_capacity
from etalon.metrics.intervals import prediction_interval


def capacity_interval(job, conf, out: Path, capacity: float | None, show=None) -> dict | None:
    """The ``capacity_interval`` of a simulated configuration (None when the job asks for no
    intervals or the configuration is live)."""
    s = job.search
    if s.intervals < 2 or not conf.simulated:
        return None
    from etalon.workload.config import WorkloadConfig

    twin = copy.deepcopy(conf.deployment.twin())
    where = f"configuration {conf.name!r} (intervals)"
    profiles = None
    if twin.get("profile"):
        from etalon.calibration.bootstrap import bootstrap_profiles
        from etalon.profiles import load_profile

        profiles = bootstrap_profiles(load_profile(twin["profile"]), s.intervals, s.interval_seed)
    merged = {**(twin.get("workload") or {}), **conf.workload}
    seed = int(merged.get("seed", WorkloadConfig().seed))
    capacities, seeds = [], []
    for k in range(1, s.intervals + 1):
        folder = out / "intervals" / f"replica_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        sim = copy.deepcopy(twin)
        if profiles is not None:
            from etalon.profiles import save_profile

            sim["profile"] = str(save_profile(profiles[k - 1], folder / "profile.json").resolve())
        workload = {**conf.workload, "seed": seed + k}
        probe = simulated_probe(sim, workload, conf.slo, job.num_requests, folder, where)
        found = search_capacity(probe, conf.search_settings(s)).to_dict()["capacity_qps"]
        capacities.append(found)
        seeds.append(seed + k)
        if show is not None:
            show(f"replica {k}/{s.intervals}: {found}")
    iv = prediction_interval(capacities, s.interval_level, capacity)
    return {"sources": (["fit"] if profiles is not None else []) + ["workload"],
            "notes": [] if profiles is not None else ["fit: the deployment has no profile"],
            "capacities": capacities, "workload_seeds": seeds,
            "bootstrap_seed": s.interval_seed if profiles is not None else None,
            **(iv.to_dict() if iv is not None else {"low": None, "high": None})}
