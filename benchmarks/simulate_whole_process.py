"""``etalon.simulate`` as a user runs it: one whole process per size, every output written.

Unlike ``simulator_speed.py`` (the event loop alone), this times what a user waits for: start-up,
simulation, summary, the Parquet records, ``requests.csv`` and plots. Llama-3-8B on one H100
(roofline), ShareGPT lengths, Poisson arrivals. Prints wall seconds, peak RSS of the process,
simulated requests per wall-second, and the simulation's own share.

    python benchmarks/simulate_whole_process.py --sizes 10000 100000 --qps 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRACE = Path(__file__).resolve().parents[1] / "data" / "processed_traces" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"


def run(n: int, qps: float, out: Path, plots: bool) -> tuple[float, float, float]:
    """(wall s, peak RSS MB, simulation s) of one ``python -m etalon.simulate`` process."""
    cmd = [sys.executable, "-m", "etalon.simulate", "--model", "llama-3-8b", "--hardware", "h100",
           "--poisson-request-interval-generator-qps", str(qps),
           "--request-length-generator-provider", "trace",
           "--trace-request-length-generator-trace-file", str(TRACE),
           "--trace-request-length-generator-cycle", "--max-num-completed-requests", str(n),
           "--output-dir", str(out)]
    if not plots:
        cmd.append("--no-plots")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.exit(f"simulate failed: {proc.stderr.read().decode()[-2000:]}")
    sim = json.loads((out / "summary.json").read_text())["simulation"]["wall_time_s"]
    return wall, usage.ru_maxrss / 1024, sim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000])
    p.add_argument("--qps", type=float, nargs="+", default=[4.0, 8.0])
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args()
    print(f"{'requests':>9} {'qps':>5} {'wall (s)':>9} {'sim (s)':>8} {'rest (s)':>9} "
          f"{'peak RSS (MB)':>13} {'req/wall-s':>10}")
    for n in args.sizes:
        for qps in args.qps:
            with tempfile.TemporaryDirectory() as tmp:
                wall, rss, sim = run(n, qps, Path(tmp), not args.no_plots)
            print(f"{n:>9} {qps:>5g} {wall:>9.2f} {sim:>8.2f} {wall - sim:>9.2f} {rss:>13.0f} "
                  f"{n / wall:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
