"""A live run's cost after its last request: summary, Parquet records, requests.csv, plots and
the HTML report of a 10k-request run, and the driver's peak memory.

A local server that streams immediately (``instant_server.py``, one token per event) takes a
Poisson load of 10k requests of 20 tokens; ``run_benchmark`` prints how long after its last
record every output was written. ``python benchmarks/live_post_processing.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--qps", type=float, default=800.0)
    ap.add_argument("--tokens", type=int, default=20)
    args = ap.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "instant_server.py"), str(port),
                               "--per-token"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "etalon.run_benchmark", "--no-progress",
                   "--server", f"http://127.0.0.1:{port}/v1", "--model", "m", "--no-ray",
                   "--num-ray-clients", "2", "--num-concurrent-requests-per-client", "256",
                   "--server-metrics-interval", "0",
                   "--max-num-completed-requests", str(args.requests),
                   "--poisson-request-interval-generator-qps", str(args.qps),
                   "--fixed-request-generator-prefill-tokens", "8",
                   "--fixed-request-generator-decode-tokens", str(args.tokens),
                   "--output-dir", tmp]
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            err = proc.stderr.read().decode()
            if status != 0:
                sys.exit(f"run_benchmark failed:\n{err[-2000:]}")
            after = re.search(r"written ([0-9.]+) s after the last record", err)
            print(f"{args.requests} requests x {args.tokens} tokens at {args.qps:g} req/s: "
                  f"whole run {wall:.1f} s; outputs written {float(after.group(1)):.2f} s after "
                  f"the last record; driver peak RSS {usage.ru_maxrss / 1024:.0f} MB")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
