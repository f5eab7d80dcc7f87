"""Turns a ``SimConfig`` into replicas: a performance model and a KV-cache size per pool.

Timing comes from a fitted profile or a perf-model file when given, else the roofline of
``--model`` on ``--hardware``, else the parametric defaults. The KV cache is sized the way vLLM
sizes it (``etalon.estimator.memory.kv_cache_capacity``) unless ``--num-kv-blocks`` says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etalon.cli_errors import UserError
from etalon.engine import Engine
from etalon.perf.base import PerfModel
from etalon.simulator.cluster import Link, Replica, make_router
from etalon.simulator.config import SimConfig
from etalon.simulator.simulation import Simulation



@dataclass
class PoolPlan:
    name: str
    perf: PerfModel
    num_kv_blocks: int
    replicas: int
    memory: dict | None = None  # per-device bytes: weights, activation, overhead, kv per block


def perf_model_for(cfg: SimConfig, hardware: str | None, tp: int) -> PerfModel:
    d = cfg.deployment
    return cfg.perf.build(model=d.model, hardware=hardware, tp=tp, pp=d.pp, dtype=d.dtype,
                          kv_dtype=d.kv_dtype_or_none)


def kv_blocks_for(cfg: SimConfig, hardware: str | None, tp: int) -> tuple[int, dict | None]:
    """KV blocks of one replica, and its per-device memory picture when the model is known."""
    d, e = cfg.deployment, cfg.engine
    if not (d.model and hardware):
        return e.kv_blocks, None
    from etalon.estimator.layout import ParallelConfig
    from etalon.estimator.memory import GiB, ServingConfig, plan_memory

    serving = ServingConfig.from_engine(e, d.gpu_memory_utilization)
    plan = plan_memory(d.model, hardware, ParallelConfig(tp=tp, pp=d.pp), d.dtype,
                       d.kv_dtype_or_none, serving, context_len=1)
    if plan.num_blocks < 1 and not e.num_kv_blocks:
        raise UserError(f"{d.model} does not fit {hardware} at tp={tp}, pp={d.pp}: "
                        "no memory left for the KV cache")
    memory = {"device_memory_bytes": plan.device_memory_gib * GiB,
              "weights_bytes": plan.weights_gib * GiB, "activation_bytes": plan.activation_gib * GiB,
              "overhead_bytes": plan.overhead_gib * GiB,
              "kv_bytes_per_block": plan.kv_bytes_per_token_per_device * e.block_size}
    return e.num_kv_blocks or int(plan.num_blocks), memory


def kv_bytes_per_token(cfg: SimConfig) -> float:
    if cfg.kv_bytes_per_token is not None:
        return cfg.kv_bytes_per_token
    d = cfg.deployment
    if d.model:
        from etalon.estimator.memory import kv_bytes_per_token as per_token
        from etalon.estimator.models import load_model

        return float(per_token(load_model(d.model), d.kv_dtype_or_none))
    raise UserError("disaggregated serving needs --model (for KV bytes per token) "
                    "or --kv-bytes-per-token")


def pool_plans(cfg: SimConfig) -> list[PoolPlan]:
    d, dis = cfg.deployment, cfg.disaggregation
    if not dis.disaggregated:
        blocks, memory = kv_blocks_for(cfg, d.hardware, d.tp)
        return [PoolPlan("serve", perf_model_for(cfg, d.hardware, d.tp), blocks,
                         cfg.num_replicas, memory)]
    plans = []
    for name, hw, tp, n in (("prefill", dis.prefill_hardware, dis.prefill_tp, dis.prefill_replicas),
                            ("decode", dis.decode_hardware, dis.decode_tp, dis.decode_replicas)):
        hw, tp = hw or d.hardware, tp or d.tp
        blocks, memory = kv_blocks_for(cfg, hw, tp)
        plans.append(PoolPlan(name, perf_model_for(cfg, hw, tp), blocks, n, memory))
    return plans


def build_simulation(cfg: SimConfig, plans: list[PoolPlan] | None = None) -> Simulation:
    plans = plans or pool_plans(cfg)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.workload.seed).spawn(3)[2])
    pools: dict[str, list[Replica]] = {}
    next_id = 0
    pp = cfg.deployment.pp
    # Pipeline parallelism: each replica runs ``pp`` virtual engines (vLLM's design), one
    # micro-batch each in flight across the stages; they split the KV cache, and each step of
    # one takes a full traversal of the stages (the roofline's PP step time).
    for plan in plans:
        blocks = plan.num_kv_blocks // pp
        if blocks < 1:
            raise UserError(f"{plan.num_kv_blocks} KV blocks cannot be split over pp={pp} "
                            "virtual engines")
        engine_cfg = cfg.engine.with_kv_blocks(blocks)
        pools[plan.name] = []
        for _ in range(plan.replicas * pp):
            pools[plan.name].append(Replica(next_id, Engine(engine_cfg, plan.perf), pool=plan.name,
                                            memory=plan.memory))
            next_id += 1
    dis = cfg.disaggregation
    if not dis.disaggregated:
        return Simulation(pools["serve"], router=make_router(cfg.router, rng))
    link = Link(dis.transfer_bandwidth * 1e9, dis.transfer_latency * 1e-3)
    return Simulation(router=make_router(cfg.router, rng), prefill=pools["prefill"],
                      decode=pools["decode"], decode_router=make_router(cfg.router, rng),
                      link=link, kv_bytes_per_token=kv_bytes_per_token(cfg))


