"""The analytic estimator: model specs, hardware specs, memory, FLOPs, layouts, pipelines.

Everything ``python -m etalon.estimate`` prints is available here as plain functions over plain
dataclasses::

    from etalon.estimator import load_model, load_hardware, plan_memory, kv_cache_capacity

    model = load_model("llama-3.1-8b")          # catalog name, config.json path or Hub id
    h100 = load_hardware("h100-sxm")
    pool_bytes, blocks = kv_cache_capacity(model, h100, tp=1, gpu_memory_utilization=0.9)

The roofline step-time model lives in ``etalon.perf.roofline.RooflinePerfModel``.
"""

from etalon.estimator.distributed import (
    Efficiency,
    NetworkSpec,
    PipelineScenario,
    build_scenario,
    storage,
    throughput_curve,
    token_latency,
)
from etalon.estimator.dtypes import DTYPES, DType, get_dtype
from etalon.estimator.errors import EstimatorError
from etalon.estimator.flops import (
    Flops,
    attention_flops,
    causal_pairs,
    decode_flops,
    linear_flops_per_token,
    lm_head_flops,
    prefill_flops,
)
from etalon.estimator.hardware import HardwareSpec, hardware_catalog, hardware_names, load_hardware
from etalon.estimator.latency import LatencyEstimate, estimate_latency
from etalon.estimator.layout import ParallelConfig, split_layers, valid_tp_sizes, validate_layout
from etalon.estimator.memory import (
    KVCapacity,
    MemoryPlan,
    ServingConfig,
    activation_bytes,
    kv_bytes_per_request,
    kv_bytes_per_token,
    kv_cache_capacity,
    max_concurrency_curve,
    plan_memory,
    weight_bytes,
)
from etalon.estimator.models import catalog_names, load_model
from etalon.estimator.params import ParamCounts, count_parameters
from etalon.estimator.parallelism import Recommendation, min_gpus, recommend_layout
from etalon.estimator.shards import StageShard, stage_shards
from etalon.estimator.spec import MLASpec, ModelSpec, MoESpec

__all__ = [
    "DTYPES", "DType", "Efficiency", "EstimatorError", "Flops", "HardwareSpec", "KVCapacity", "LatencyEstimate",
    "MLASpec", "MemoryPlan", "ModelSpec", "MoESpec", "NetworkSpec", "ParallelConfig", "ParamCounts",
    "PipelineScenario", "Recommendation", "ServingConfig", "StageShard", "activation_bytes", "attention_flops",
    "build_scenario", "catalog_names", "causal_pairs", "count_parameters", "decode_flops", "estimate_latency",
    "get_dtype", "hardware_catalog", "hardware_names", "kv_bytes_per_request", "kv_bytes_per_token",
    "kv_cache_capacity", "linear_flops_per_token", "lm_head_flops", "load_hardware", "load_model",
    "max_concurrency_curve", "min_gpus", "plan_memory", "prefill_flops", "recommend_layout", "split_layers",
    "stage_shards", "storage", "throughput_curve", "token_latency", "valid_tp_sizes", "validate_layout",
    "weight_bytes",
]
