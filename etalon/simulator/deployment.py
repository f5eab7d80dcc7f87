"""Turns a ``SimConfig`` into replicas: a performance model and a KV-cache size per pool.

Timing comes from a fitted profile or a perf-model file when given, else the roofline of
``--model`` on ``--hardware``, else the parametric defaults. The KV cache is sized the way vLLM
sizes it (``etalon.estimator.memory.kv_cache_capacity``) unless ``--num-kv-blocks`` says.
"""

from __future__ import annotations

from etalon.cli_errors import UserError

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
    memory: dict | None = None  # per-device bytes: weights, activation, overhead, kv per block


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
        raise UserError("roofline timing needs both --model and --hardware "
                         "(or give --profile / --perf-model-file)")
    return build_perf_model({"kind": "parametric"})


def kv_blocks_for(cfg: SimConfig, hardware: str | None, tp: int) -> tuple[int, dict | None]:
    """KV blocks of one replica, and its per-device memory picture when the model is known."""
    if not (cfg.model and hardware):
        return cfg.num_kv_blocks or DEFAULT_KV_BLOCKS, None
    from etalon.estimator.layout import ParallelConfig
    from etalon.estimator.memory import GiB, ServingConfig, plan_memory

    serving = ServingConfig(gpu_memory_utilization=cfg.gpu_memory_utilization,
                            block_size=cfg.block_size, max_num_batched_tokens=cfg.max_batched_tokens,
                            max_num_seqs=cfg.max_batch_size)
    plan = plan_memory(cfg.model, hardware, ParallelConfig(tp=tp, pp=cfg.pp), cfg.dtype,
                       cfg.kv_dtype, serving, context_len=1)
    if plan.num_blocks < 1 and not cfg.num_kv_blocks:
        raise UserError(f"{cfg.model} does not fit {hardware} at tp={tp}, pp={cfg.pp}: "
                         "no memory left for the KV cache")
    memory = {"device_memory_bytes": plan.device_memory_gib * GiB,
              "weights_bytes": plan.weights_gib * GiB, "activation_bytes": plan.activation_gib * GiB,
              "overhead_bytes": plan.overhead_gib * GiB,
              "kv_bytes_per_block": plan.kv_bytes_per_token_per_device * cfg.block_size}
    return cfg.num_kv_blocks or int(plan.num_blocks), memory


def kv_bytes_per_token(cfg: SimConfig) -> float:
    if cfg.kv_bytes_per_token is not None:
        return cfg.kv_bytes_per_token
    if cfg.model:
        from etalon.estimator.memory import kv_bytes_per_token as per_token
        from etalon.estimator.models import load_model

        return float(per_token(load_model(cfg.model), cfg.kv_dtype))
    raise UserError("disaggregated serving needs --model (for KV bytes per token) "
                     "or --kv-bytes-per-token")


def pool_plans(cfg: SimConfig) -> list[PoolPlan]:
    if not cfg.disaggregated:
        blocks, memory = kv_blocks_for(cfg, cfg.hardware, cfg.tp)
        return [PoolPlan("serve", perf_model_for(cfg, cfg.hardware, cfg.tp), blocks,
                         cfg.num_replicas, memory)]
    plans = []
    for name, hw, tp, n in (("prefill", cfg.prefill_hardware, cfg.prefill_tp, cfg.prefill_replicas),
                            ("decode", cfg.decode_hardware, cfg.decode_tp, cfg.decode_replicas)):
        hw, tp = hw or cfg.hardware, tp or cfg.tp
        blocks, memory = kv_blocks_for(cfg, hw, tp)
        plans.append(PoolPlan(name, perf_model_for(cfg, hw, tp), blocks, n, memory))
    return plans


def build_simulation(cfg: SimConfig, plans: list[PoolPlan] | None = None) -> Simulation:
    plans = plans or pool_plans(cfg)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.workload.seed).spawn(3)[2])
    pools: dict[str, list[Replica]] = {}
    next_id = 0
    # Pipeline parallelism: each replica runs ``pp`` virtual engines (vLLM's design), one
    # micro-batch each in flight across the stages; they split the KV cache, and each step of
    # one takes a full traversal of the stages (the roofline's PP step time).
    for plan in plans:
        blocks = plan.num_kv_blocks // cfg.pp
        if blocks < 1:
            raise UserError(f"{plan.num_kv_blocks} KV blocks cannot be split over pp={cfg.pp} "
                             "virtual engines")
        engine_cfg = cfg.engine_config(blocks)
        pools[plan.name] = []
        for _ in range(plan.replicas * cfg.pp):
            pools[plan.name].append(Replica(next_id, Engine(engine_cfg, plan.perf), pool=plan.name,
                                            memory=plan.memory))
            next_id += 1
    if not cfg.disaggregated:
        return Simulation(pools["serve"], router=make_router(cfg.router, rng))
    link = Link(cfg.transfer_bandwidth * 1e9, cfg.transfer_latency * 1e-3)
    return Simulation(router=make_router(cfg.router, rng), prefill=pools["prefill"],
                      decode=pools["decode"], decode_router=make_router(cfg.router, rng),
                      link=link, kv_bytes_per_token=kv_bytes_per_token(cfg))
