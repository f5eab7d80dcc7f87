"""Turns a ``SimConfig`` into replicas: a performance model and a KV-cache size per pool.

Timing comes from a fitted profile or a perf-model file when given, else the roofline of
``--model`` on ``--hardware``, else the parametric defaults. The KV cache is sized the way vLLM
sizes it (``etalon.estimator.memory.kv_cache_capacity``) unless ``--num-kv-blocks`` says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etalon.engine import Engine
from etalon.perf.base import PerfModel
from etalon.perf.registry import build_perf_model, load_perf_spec
from etalon.simulator.cluster import Link, Replica, make_router
from etalon.simulator.config import SimConfig
from etalon.simulator.simulation import Simulation

DEFAULT_KV_BLOCKS = 4096


@dataclass
class PoolPlan:
    name: str
    perf: PerfModel
    num_kv_blocks: int
    replicas: int


def perf_model_for(cfg: SimConfig, hardware: str | None, tp: int) -> PerfModel:
    if cfg.profile:
        return build_perf_model({"kind": "profiled", "path": cfg.profile}, where=cfg.profile)
    if cfg.perf_model_file:
        return build_perf_model(load_perf_spec(cfg.perf_model_file), where=cfg.perf_model_file)
    if cfg.model and hardware:
        from etalon.perf.roofline import RooflinePerfModel

        extra = {k: getattr(cfg, k) for k in ("mfu", "mbu") if getattr(cfg, k) is not None}
        return RooflinePerfModel(cfg.model, hardware, tp=tp, pp=cfg.pp, dtype=cfg.dtype,
                                 kv_dtype=cfg.kv_dtype, **extra)
    if cfg.model or hardware:
        raise ValueError("roofline timing needs both --model and --hardware "
                         "(or give --profile / --perf-model-file)")
    return build_perf_model({"kind": "parametric"})


def kv_blocks_for(cfg: SimConfig, hardware: str | None, tp: int) -> int:
    if cfg.num_kv_blocks:
        return cfg.num_kv_blocks
    if cfg.model and hardware:
        from etalon.estimator.memory import kv_cache_capacity

        cap = kv_cache_capacity(cfg.model, hardware, tp=tp, pp=cfg.pp, dtype=cfg.dtype,
                                kv_dtype=cfg.kv_dtype,
                                gpu_memory_utilization=cfg.gpu_memory_utilization,
                                block_size=cfg.block_size)
        if cap.num_blocks < 1:
            raise ValueError(f"{cfg.model} does not fit {hardware} at tp={tp}, pp={cfg.pp}: "
                             "no memory left for the KV cache")
        return int(cap.num_blocks)
    return DEFAULT_KV_BLOCKS


def kv_bytes_per_token(cfg: SimConfig) -> float:
    if cfg.kv_bytes_per_token is not None:
        return cfg.kv_bytes_per_token
    if cfg.model:
        from etalon.estimator.memory import kv_bytes_per_token as per_token
        from etalon.estimator.models import load_model

        return float(per_token(load_model(cfg.model), cfg.kv_dtype))
    raise ValueError("disaggregated serving needs --model (for KV bytes per token) "
                     "or --kv-bytes-per-token")


def pool_plans(cfg: SimConfig) -> list[PoolPlan]:
    if not cfg.disaggregated:
        return [PoolPlan("serve", perf_model_for(cfg, cfg.hardware, cfg.tp),
                         kv_blocks_for(cfg, cfg.hardware, cfg.tp), cfg.num_replicas)]
    plans = []
    for name, hw, tp, n in (("prefill", cfg.prefill_hardware, cfg.prefill_tp, cfg.prefill_replicas),
                            ("decode", cfg.decode_hardware, cfg.decode_tp, cfg.decode_replicas)):
        hw, tp = hw or cfg.hardware, tp or cfg.tp
        plans.append(PoolPlan(name, perf_model_for(cfg, hw, tp), kv_blocks_for(cfg, hw, tp), n))
    return plans


def build_simulation(cfg: SimConfig, plans: list[PoolPlan] | None = None) -> Simulation:
    plans = plans or pool_plans(cfg)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.workload.seed).spawn(3)[2])
    pools: dict[str, list[Replica]] = {}
    next_id = 0
    for plan in plans:
        engine_cfg = cfg.engine_config(plan.num_kv_blocks)
        pools[plan.name] = []
        for _ in range(plan.replicas):
            pools[plan.name].append(Replica(next_id, Engine(engine_cfg, plan.perf), pool=plan.name))
            next_id += 1
    if not cfg.disaggregated:
        return Simulation(pools["serve"], router=make_router(cfg.router, rng))
    link = Link(cfg.transfer_bandwidth * 1e9, cfg.transfer_latency * 1e-3)
    return Simulation(router=make_router(cfg.router, rng), prefill=pools["prefill"],
                      decode=pools["decode"], decode_router=make_router(cfg.router, rng),
                      link=link, kv_bytes_per_token=kv_bytes_per_token(cfg))
