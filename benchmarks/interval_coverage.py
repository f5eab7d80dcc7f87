"""How often do ``etalon validate --intervals`` intervals hold the measured value? Coverage on the
embedded server.

Profiles the embedded server (the calibration of tests/test_validation.py), then runs the same
Poisson workload live at three loads (~30, 50 and 70 % of its capacity) with several seeds, and
validates each run with ``--intervals N`` twice: replicas varying the fit and the workload
(the default), and the fit alone (the replay's own arrivals). Prints the coverage per source
setting, per load and per metric/percentile as Markdown (the table in docs/intervals.md) and
writes every validation under ``--out``.

    python benchmarks/interval_coverage.py [--out DIR] [--seeds 3] [--replicas 20] [--requests 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ENGINE = ["--scheduler", "sarathi", "--max-batched-tokens", "2048", "--max-batch-size", "16"]
WORKLOAD = ["--request-length-generator-provider", "uniform",
            "--uniform-request-length-generator-min-tokens", "200",
            "--uniform-request-length-generator-max-tokens", "900",
            "--uniform-request-length-generator-prefill-to-decode-ratio", "6"]
LOADS = (4, 7, 10)  # req/s: ~30, 50 and 70 % of this engine's ~14 req/s on this workload
SOURCES = ("both", "fit")


def etalon(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{args[0]} failed:\n{res.stderr[-2000:]}")


def main() -> None:
    from etalon.server.process import LocalServer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="interval_coverage")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=20)
    ap.add_argument("--requests", type=int, default=100)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profile = out / "profile.json"
    rows = []
    began = time.monotonic()
    with LocalServer(ENGINE) as srv:
        common = ["--server", srv.base_url, "--model", "etalon-embedded", "--output-dir",
                  str(out / "prof"), "--merge-into", str(profile), "--no-plots"]
        if not profile.exists():
            etalon("etalon.prefill_profiler", "--prefill-lengths", "128", "256", "512", "1024",
                   "2048", "--num-repetitions", "3", "--join-probe-decoders", "0", *common)
            etalon("etalon.decode_profiler", "--batch-sizes", "1", "2", "4", "8", "16",
                   "--prompt-lengths", "128", "512", *common)
        for qps in LOADS:
            for seed in range(1, args.seeds + 1):
                live = out / f"live_{qps}_{seed}"
                etalon("etalon.run_benchmark", "--server", srv.base_url, "--model",
                       "etalon-embedded", "--no-ray", "--num-ray-clients", "1",
                       "--num-concurrent-requests-per-client", "64", "--seed", str(seed),
                       "--max-num-completed-requests", str(args.requests),
                       "--poisson-request-interval-generator-qps", str(qps), *WORKLOAD,
                       "--output-dir", str(live), "--no-plots", "--no-progress", "--no-report")
                for source in SOURCES:
                    val = out / f"val_{qps}_{seed}_{source}"
                    etalon("etalon.validate", "--requests", str(live), "--profile", str(profile),
                           *ENGINE, "--output-dir", str(val), "--intervals", str(args.replicas),
                           "--interval-sources", source)
                    report = json.loads((val / "validation.json").read_text())
                    for r in report["models"]["profiled"]:
                        rows.append({"qps": qps, "seed": seed, "sources": source, **r})
                    cov = report["intervals"]["coverage"]
                    print(f"{qps} req/s seed {seed} {source}: {cov['inside']}/{cov['checked']}",
                          file=sys.stderr, flush=True)
    (out / "coverage.json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows, args, time.monotonic() - began))


def _cov(rows: list[dict]) -> str:
    flags = [r["inside"] for r in rows if r["inside"] is not None]
    return f"{sum(flags)}/{len(flags)} ({sum(flags) / len(flags):.0%})" if flags else "n/a"


def markdown(rows: list[dict], args, seconds: float) -> str:
    lines = [f"{args.seeds} seeds × {len(LOADS)} loads, {args.requests} requests per run, "
             f"{args.replicas} replicas ({seconds / 60:.1f} min)", "",
             "| replicas vary | " + " | ".join(f"{q} req/s" for q in LOADS) + " | all |",
             "|---|" + "---|" * (len(LOADS) + 1)]
    for s in SOURCES:
        mine = [r for r in rows if r["sources"] == s]
        lines.append(f"| {'fit + workload' if s == 'both' else s} | "
                     + " | ".join(_cov([r for r in mine if r["qps"] == q]) for q in LOADS)
                     + f" | {_cov(mine)} |")
    lines += ["", "| metric | pct | " + " | ".join("fit + workload" if s == "both" else s
                                                  for s in SOURCES) + " |",
              "|---|---|" + "---|" * len(SOURCES)]
    for m in ("ttft", "tbt", "e2e_latency"):
        for q in (50, 90, 99):
            cells = [_cov([r for r in rows if r["sources"] == s and r["metric"] == m
                           and r["percentile"] == q]) for s in SOURCES]
            lines.append(f"| {m} | p{q} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
