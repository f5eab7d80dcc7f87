"""Repeated live runs of one workload (``run_benchmark --num-repeats N``) and the interval their
spread gives each latency percentile.

Repeat ``k`` (1..N) is a whole run, outputs and all, in ``<output-dir>/repeat_<k>/``; its
workload seed is ``--seed + k - 1`` (repeat 1 is the plain run), or ``--seed`` for every repeat
with ``--repeat-same-seed``. Fresh seeds are the default because that is what a prediction's
``workload`` source varies (``etalon simulate --intervals``): the repeats' interval then holds
both the workload's sampling variance and the server's run-to-run noise, and a simulated
interval and a live one describe the same thing. Every repeat is planned before the first is
sent (a bad setting fails up front), all run against one server (``--server local`` starts it
once), and ``repeats.json`` / ``repeats.csv`` are rewritten after each, so Ctrl-C or a crash
keeps the repeats that finished.
"""

from __future__ import annotations

import copy
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from etalon.cli_errors import UserError
from etalon.metrics.intervals import (
    METRICS,
    PERCENTILES,
    check_level,
    format_intervals,
    intervals_to_dict,
    latency_percentiles,
    percentile_intervals,
)
from etalon.options import option
from etalon.report.files import write_csv, write_json
from etalon.workload.schedule import build_requests

PROG = "etalon.run_benchmark"


@dataclass
class RepeatConfig:
    """Repeated runs of one workload, and the interval their spread gives."""

    num_repeats: int = option(1, "run the workload N times against the same server, each in "
                                 "its own subfolder (repeat_1, ...) with workload seed --seed "
                                 "+ k - 1, and give each latency percentile's interval over "
                                 "the repeats (repeats.json, repeats.csv)", metavar="N")
    repeat_same_seed: bool = option(False, "every repeat sends the same requests (--seed): "
                                           "the interval is the server's run-to-run noise alone")
    interval_level: float = option(0.9, "coverage the repeats' intervals aim at (a fraction)")

    def validate(self) -> None:
        if self.num_repeats < 1:
            raise UserError(f"--num-repeats must be >= 1, got {self.num_repeats}")
        check_level(self.interval_level)


def repeat_configs(cfg, base: Path) -> list:
    """One ``BenchmarkConfig`` per repeat: its seed, its folder, a single run each."""
    out = []
    for k in range(1, cfg.repeats.num_repeats + 1):
        c = copy.deepcopy(cfg)
        c.repeats = RepeatConfig(num_repeats=1, interval_level=cfg.repeats.interval_level)
        c.workload.seed = cfg.workload.seed + (0 if cfg.repeats.repeat_same_seed else k - 1)
        c.outputs.output_dir = str(base / f"repeat_{k}")
        c.outputs.should_use_given_dir = True
        if c.wandb.wandb_run_name:
            c.wandb.wandb_run_name = f"{c.wandb.wandb_run_name}-repeat{k}"
        out.append(c)
    return out


def run_repeats(cfg, run_once: Callable, ttft_deadlines: Callable, appended: tuple[str, ...]) -> int:
    """Runs every repeat of ``cfg`` (a ``BenchmarkConfig``): ``run_once(cfg, client, out,
    requests, deadlines)`` runs one (``etalon.run_benchmark``'s), ``ttft_deadlines(cfg,
    requests)`` gives its per-request TTFT deadlines, ``appended`` the files it appends to."""
    base = cfg.outputs.prepare()
    plans = [(c, reqs, ttft_deadlines(c, reqs))
             for c in repeat_configs(cfg, base) for reqs in [build_requests(c.workload)]]
    done: list[dict] = []
    with ExitStack() as stack:
        client, _ = cfg.connection.open(stack, PROG)
        for k, (c, requests, deadlines) in enumerate(plans, 1):
            print(f"{PROG}: repeat {k}/{len(plans)} (seed {c.workload.seed})", file=sys.stderr,
                  flush=True)
            out = c.outputs.prepare(fresh=appended)
            outcome = run_once(c, client, out, requests, deadlines)
            done.append({"repeat": k, "seed": c.workload.seed, "output_dir": str(out),
                         "num_records": len(outcome.records),
                         "percentiles": latency_percentiles(outcome.records)})
            write_aggregate(base, cfg, done)
            if outcome.interrupted:
                print(f"{PROG}: interrupted; {k} of {len(plans)} repeats kept", file=sys.stderr)
                break
    print(format_intervals(percentile_intervals(None, [d["percentiles"] for d in done],
                                                cfg.repeats.interval_level),
                           f"over {len(done)} repeats"))
    print(f"{PROG}: {len(done)} repeats; aggregate in {base / 'repeats.json'}", file=sys.stderr)
    return 0


def write_aggregate(base: Path, cfg, done: list[dict]) -> dict:
    """``repeats.json`` and ``repeats.csv`` over the finished repeats; returns the JSON's data."""
    level = cfg.repeats.interval_level
    ivs = percentile_intervals(None, [d["percentiles"] for d in done], level)
    report = {
        "num_repeats": cfg.repeats.num_repeats, "completed_repeats": len(done),
        "same_seed": cfg.repeats.repeat_same_seed, "level_asked": level,
        "repeats": [{**{k: v for k, v in d.items() if k != "percentiles"},
                     "percentiles": {m: {f"p{q}": v for q, v in per.items()}
                                     for m, per in d["percentiles"].items()}} for d in done],
        "metrics": intervals_to_dict(ivs),
    }
    write_json(base / "repeats.json", report)
    header = ["metric", "percentile", *(f"repeat_{d['repeat']}_s" for d in done), "mean_s", "sd_s",
              "interval_low_s", "interval_high_s", "level", "method"]
    rows = []
    for m in METRICS:
        for q in PERCENTILES:
            iv = ivs[m][q]
            tail = ([iv.mean, iv.sd, iv.low, iv.high, iv.level, iv.method] if iv is not None
                    else [None] * 6)
            rows.append([m, q, *(d["percentiles"][m][q] for d in done), *tail])
    write_csv(base / "repeats.csv", header, rows)
    return report
