"""The planner's numbers (what the planner page and the desktop window show) against the
estimator's own functions for the same inputs, against ``etalon estimate memory --json``, and
one number checked by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etalon.estimator import (
    EstimatorError,
    ParallelConfig,
    ServingConfig,
    kv_cache_capacity,
    max_concurrency_curve,
    plan_memory,
    recommend_layout,
    valid_tp_sizes,
)
from etalon.ui.planner import PlannerInputs, compute, model_from_config_text

ROOT = Path(__file__).resolve().parents[1]


def test_kv_bytes_per_token_by_hand():
    # Llama-3.1-8B (its published config.json): 32 layers, 8 KV heads, head_dim 4096/32 = 128;
    # K and V, 2 bytes each in bf16: 2 * 32 * 8 * 128 * 2 = 131,072 bytes per token
    result = compute(PlannerInputs(model="llama-3.1-8b", hardware="h100-sxm", context_len=8192))
    assert result.kv_bytes_per_token == 131_072
    assert dict(result.facts())["KV bytes per token (model)"] == "131,072"
    # fp8 KV halves it; TP2 splits the 8 KV heads, so each device holds half
    fp8 = compute(PlannerInputs(model="llama-3.1-8b", kv_dtype="fp8", tp=2, context_len=8192))
    assert fp8.kv_bytes_per_token == 65_536
    assert fp8.plan.kv_bytes_per_token_per_device == 32_768


@pytest.mark.parametrize("inputs", [
    PlannerInputs(model="llama-3.1-8b", hardware="h100-sxm", context_len=8192, concurrency=4),
    PlannerInputs(model="qwen3-30b-a3b", hardware="a100-80gb", tp=2, dp=2, ep=2, dtype="fp8",
                  kv_dtype="fp8", context_len=32768, gpu_memory_utilization=0.85, concurrency=8),
    PlannerInputs(model="llama-3.1-70b", hardware="l40s", tp=4, pp=2, context_len=None),
])
def test_the_page_numbers_are_the_estimators(inputs):
    result = compute(inputs)
    layout = ParallelConfig(tp=inputs.tp, pp=inputs.pp, dp=inputs.dp, ep=inputs.ep)
    config = ServingConfig(gpu_memory_utilization=inputs.gpu_memory_utilization)
    dtype, kv = inputs.dtype or None, inputs.kv_dtype or None
    plan = plan_memory(inputs.model, inputs.hardware, layout, dtype, kv, config, inputs.context_len,
                       inputs.concurrency)
    assert result.plan == plan
    pool, blocks = kv_cache_capacity(inputs.model, inputs.hardware, inputs.tp, inputs.pp, dtype, kv,
                                     inputs.gpu_memory_utilization, ep=inputs.ep, dp=inputs.dp)
    assert result.plan.num_blocks == blocks
    assert result.plan.kv_pool_gib * 2**30 == pytest.approx(pool)
    assert result.valid_tp == valid_tp_sizes(result.model, 64)
    assert result.concurrency_curve == max_concurrency_curve(inputs.model, inputs.hardware,
                                                             result.context_grid, layout, dtype, kv, config)
    rec = recommend_layout(inputs.model, inputs.hardware, plan.context_len, inputs.concurrency, dtype,
                           kv, config)
    assert result.recommendation.layout == rec.layout
    facts = dict(result.facts())
    assert facts[f"max concurrency @ {plan.context_len:,} tokens"] == f"{plan.max_concurrency:.2f} per replica"


def test_the_page_agrees_with_the_cli(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "etalon", "estimate", "memory", "--model", "mixtral-8x7b",
         "--hardware", "h100-sxm", "--tp", "2", "--context-len", "16384", "--kv-dtype", "fp8",
         "--gpu-memory-utilization", "0.8", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ETALON_HISTORY": "off"}).stdout
    cli = json.loads(out)["plan"]
    page = compute(PlannerInputs(model="mixtral-8x7b", hardware="h100-sxm", tp=2, context_len=16384,
                                 kv_dtype="fp8", gpu_memory_utilization=0.8)).history_outputs()["plan"]
    for key in ("max_concurrency", "kv_pool_gib", "num_blocks", "kv_bytes_per_token", "weights_gib"):
        assert page[key] == pytest.approx(cli[key]), key


def test_a_pasted_config_json_is_the_same_model():
    text = (ROOT / "etalon" / "data" / "models" / "qwen2.5-7b.json").read_text()
    pasted = compute(PlannerInputs(config_json=text, hardware="l4", context_len=4096))
    named = compute(PlannerInputs(model="qwen2.5-7b", hardware="l4", context_len=4096))
    assert pasted.plan.max_concurrency == named.plan.max_concurrency > 0
    assert PlannerInputs(config_json=text).history_inputs()["config_json"] == text


@pytest.mark.parametrize("text,message", [
    ("{not json", "config.json is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"num_hidden_layers": 2}', "missing required field"),
])
def test_a_bad_config_json_is_one_line(text, message):
    with pytest.raises(EstimatorError, match=message) as err:
        model_from_config_text(text)
    assert "\n" not in str(err.value)


def test_a_layout_the_model_refuses_names_the_valid_sizes():
    with pytest.raises(EstimatorError, match=r"--tp 3 is invalid.*valid TP sizes: 1, 2, 4, 8"):
        compute(PlannerInputs(model="llama-3.1-8b", tp=3))
    with pytest.raises(EstimatorError, match="unknown model"):
        compute(PlannerInputs(model="llama-9"))


def test_weights_that_do_not_fit_say_so_and_still_recommend():
    result = compute(PlannerInputs(model="llama-3.1-70b", hardware="rtx-4090", context_len=4096))
    assert not result.plan.fits_weights and result.plan.max_concurrency == 0
    assert any("do not fit" in n for n in result.notes)
    rec = result.recommendation
    assert rec is not None and rec.plan.fits_batch and rec.gpus > 1
