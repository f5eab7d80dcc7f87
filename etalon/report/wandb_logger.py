"""Logs a finished run to Weights & Biases: redacted config, summary scalars, request table, plots.

wandb is imported only when logging is asked for. Nothing here can lose a result: the files are
written before this runs, and any failure becomes one warning line on stderr. The run records no
console output, command line, git state or code (a CLI flag such as ``--api-key`` would
otherwise land in W&B's metadata), and the config goes through :func:`redact` first.
Offline mode (``WANDB_MODE=offline``) works the same and writes under ``WANDB_DIR``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from etalon.metrics.per_request import COLUMNS, request_rows
from etalon.records import RequestRecord
from etalon.report.redact import redact

# Settings that keep W&B from copying anything but what we log; applied when supported.
_QUIET_SETTINGS = {
    "console": "off",
    "x_disable_meta": True,
    "x_disable_stats": True,
    "disable_git": True,
    "disable_code": True,
    "save_code": False,
    "disable_job_creation": True,
}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a/b/c": scalar}``; None and non-finite numbers are left out."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "/"))
        elif isinstance(value, bool) or isinstance(value, (int, str)):
            flat[name] = value
        elif isinstance(value, float) and math.isfinite(value):
            flat[name] = value
    return flat


def _settings(wandb: Any) -> Any:
    fields = getattr(wandb.Settings, "model_fields", None)
    wanted = {k: v for k, v in _QUIET_SETTINGS.items() if fields is None or k in fields}
    try:
        return wandb.Settings(**wanted)
    except Exception:
        return wandb.Settings(console="off")


def log_to_wandb(
    project: str,
    group: str | None,
    run_name: str | None,
    config: dict,
    summary: dict,
    records: Sequence[RequestRecord],
    plot_paths: Mapping[str, Path] | Iterable[Path] = (),
    *,
    entity: str | None = None,
) -> bool:
    """Logs one run; returns True on success, False (after one warning line) on any failure."""
    try:
        import wandb
    except ImportError:
        _warn("wandb is not installed (pip install wandb)")
        return False
    run = None
    try:
        run = wandb.init(project=project, group=group, name=run_name, entity=entity,
                         config=redact(config), settings=_settings(wandb))
        run.summary.update(flatten(summary))
        params = summary.get("parameters", {})
        rows = request_rows(list(records), params.get("ttft_deadline_s"),
                            params.get("tbt_deadline_s"))
        payload: dict[str, Any] = {"requests": wandb.Table(
            columns=list(COLUMNS), data=[[row[c] for c in COLUMNS] for row in rows],
            allow_mixed_types=True)}
        items = plot_paths.items() if isinstance(plot_paths, Mapping) else (
            (Path(p).stem, p) for p in plot_paths)
        for name, path in items:
            payload[f"plots/{str(name).removeprefix('plot/')}"] = wandb.Image(str(path))
        run.log(payload)
        run.finish()
        return True
    except Exception as exc:
        _warn(f"{type(exc).__name__}: {exc}")
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:
                pass
        return False


def _warn(reason: str) -> None:
    print(f"etalon: warning: W&B logging failed, results are in the output files ({reason})",
          file=sys.stderr)


def log_capacity_job(project: str, report: Mapping[str, Any], *, entity: str | None = None,
                     directory: str | Path | None = None) -> int:
    """Logs a capacity-search job: one run per probe, grouped by configuration, the probes of
    the highest-capacity configuration tagged ``best``. Returns the number of runs logged; a
    failure is one warning line (the job's files are already written)."""
    try:
        import wandb
    except ImportError:
        _warn("wandb is not installed (pip install wandb)")
        return 0
    logged = 0
    slos = report.get("slos", {})
    try:
        for name, conf in report.get("configurations", {}).items():
            search = conf.get("search") or {}
            tags = ["capacity-search"] + (["best"] if name == report.get("best") else [])
            for i, probe in enumerate(search.get("probes", [])):
                config = {"configuration": name, "deployment": conf.get("deployment"),
                          "kind": conf.get("kind"), "workload": conf.get("workload"),
                          "slo_name": conf.get("slo"), "slo": slos.get(conf.get("slo"), {}),
                          "qps": probe["qps"], "probe": i, "key": conf.get("key")}
                run = wandb.init(project=project, group=name, name=f"{name}@{probe['qps']:.4g}",
                                 entity=entity, tags=tags, config=redact(config),
                                 settings=_settings(wandb), reinit=True,
                                 **({"dir": str(directory)} if directory else {}))
                run.summary.update(flatten({"passed": bool(probe["passed"]),
                                            **{k: v for k, v in probe["observed"].items()
                                               if k != "reasons"},
                                            "capacity_qps": conf.get("capacity_qps")}))
                run.finish()
                logged += 1
    except Exception as exc:
        _warn(f"{type(exc).__name__}: {exc}")
    return logged
