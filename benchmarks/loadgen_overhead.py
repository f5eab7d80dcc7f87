"""How fast can the load generator dispatch on this machine while staying on schedule?

For 1, 2 and 4 Ray clients, raise the Poisson rate until the p99 dispatch lag (sent − scheduled)
exceeds 5 ms, against a server that streams 16 tokens immediately, in one write. Each rate is
tried ``--repeats`` times (3) and judged on the median trial's p99: one stall of a shared VM
decides a single trial. Prints a table of the highest passing rate and the streamed tokens/s it
carried. ``python benchmarks/loadgen_overhead.py``; ``--tokens 20 --per-token`` measures
against 20 separate events per request, one token each (how ``vllm bench serve`` is usually
run); ``--uvicorn`` serves them from uvicorn instead of aiohttp (vLLM's own HTTP stack, and a
cheaper server: see ``instant_server.py``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from etalon.client import ClientConfig
from etalon.client.pool import PoolSpec, run_pool
from etalon.workload.config import WorkloadConfig
from etalon.workload.schedule import build_requests

LAG_LIMIT = 0.005


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux ``/proc``), to show the server's share
    of the machine the benchmark shares with it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trial(base_url: str, clients: int, qps: float, seconds: float, tokens: int) -> tuple[float, float, int]:
    n = max(50, int(qps * seconds))
    wl = WorkloadConfig.of(request_interval_generator_provider="poisson",
                        poisson_request_interval_generator_qps=qps,
                        request_length_generator_provider="fixed",
                        fixed_request_generator_prefill_tokens=8,
                        fixed_request_generator_decode_tokens=tokens,
                        max_num_completed_requests=n, seed=7).validate()
    reqs = build_requests(wl)
    cfg = ClientConfig(base_url=base_url, model="m", ignore_eos=False)
    spec = PoolSpec("openai-completions", cfg, clients, 512, None, seed=7, use_ray=True)
    recs: list[dict] = []
    run_pool(spec, reqs, recs.append)
    lags = np.array([r["sent_at"] - r["scheduled_at"] for r in recs if r["sent_at"] is not None])
    errors = sum(1 for r in recs if r["error_type"])
    streamed = sum(r["num_output_tokens"] or 0 for r in recs)
    span = max(r["completed_at"] or 0 for r in recs) - min(r["scheduled_at"] for r in recs)
    return float(np.percentile(lags, 99)), streamed / span, errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--rates", type=float, nargs="+", default=[25, 50, 100, 150, 200, 300, 400, 600])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--tokens", type=int, default=16, help="tokens per request")
    p.add_argument("--per-token", action="store_true", help="one write per token (see instant_server)")
    p.add_argument("--uvicorn", action="store_true", help="serve from uvicorn (see instant_server)")
    p.add_argument("--repeats", type=int, default=3,
                   help="trials per rate: a rate passes on their median p99 lag (one stall of the "
                        "shared VM decides a single trial)")
    args = p.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("instant_server.py")),
                               str(port), *(["--per-token"] if args.per_token else []),
                               *(["--uvicorn"] if args.uvicorn else [])])
    time.sleep(1.5)
    base = f"http://127.0.0.1:{port}/v1"
    print(f"{'clients':>7} {'rate (req/s)':>12} {'p99 lag (ms), median':>20} {'of trials':>15} "
          f"{'tokens/s':>9} {'errors':>6} {'server (% of a core)':>20}")
    best: dict[int, tuple[float, float]] = {}
    try:
        for clients in args.clients:
            for qps in args.rates:
                cpu, started = cpu_seconds(server.pid), time.perf_counter()
                trials = [trial(base, clients, qps, args.seconds, args.tokens)
                          for _ in range(args.repeats)]
                share = (cpu_seconds(server.pid) - cpu) / (time.perf_counter() - started)
                lags = sorted(t[0] for t in trials)
                lag = float(np.median(lags))
                tps = float(np.median([t[1] for t in trials]))
                errors = sum(t[2] for t in trials)
                spread = "/".join(f"{x * 1e3:.1f}" for x in lags)
                print(f"{clients:>7} {qps:>12g} {lag * 1e3:>20.2f} {spread:>15} {tps:>9.0f} "
                      f"{errors:>6} {share:>20.0%}", flush=True)
                if lag > LAG_LIMIT or errors:
                    break
                best[clients] = (qps, tps)
    finally:
        server.terminate()
    print("\nhighest rate with p99 dispatch lag < 5 ms:")
    for clients, (qps, tps) in best.items():
        print(f"  {clients} client(s): {qps:g} req/s, {tps:.0f} streamed tokens/s")


if __name__ == "__main__":
    main()
