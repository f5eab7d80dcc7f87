"""Simulator speed: simulated requests per wall-second, and how the cost grows with size.

Llama-3-8B on one H100 (roofline timing, vLLM-like scheduler), the ShareGPT length trace,
Poisson arrivals at ``--qps`` (pick ~80 % of capacity). ``python benchmarks/simulator_speed.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from etalon.simulator.config import SimConfig
from etalon.simulator.deployment import build_simulation
from etalon.workload.config import WorkloadConfig
from etalon.workload.schedule import build_requests

TRACE = Path(__file__).resolve().parents[1] / "data" / "processed_traces" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--qps", type=float, default=5.0)
    p.add_argument("--scheduler", default="vllm")
    args = p.parse_args()
    print(f"{'requests':>9} {'wall (s)':>9} {'req/s':>8} {'tokens':>10} {'makespan (s)':>12} {'utilization':>11}")
    for n in args.sizes:
        wl = WorkloadConfig.of(request_length_generator_provider="trace",
                            trace_request_length_generator_trace_file=str(TRACE),
                            poisson_request_interval_generator_qps=args.qps,
                            max_num_completed_requests=n)
        cfg = SimConfig.of(model="llama-3-8b", hardware="h100-sxm", scheduler=args.scheduler,
                        workload=wl).validate()
        reqs = build_requests(wl)
        sim = build_simulation(cfg)
        t = time.perf_counter()
        res = sim.run(reqs)
        wall = time.perf_counter() - t
        tokens = sum(r.output_tokens for r in reqs)
        util = res.replicas[0].engine.busy_time / res.end_time
        print(f"{len(reqs):>9} {wall:>9.2f} {len(reqs) / wall:>8.0f} {tokens:>10} "
              f"{res.end_time:>12.0f} {util:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
