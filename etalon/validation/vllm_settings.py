"""vLLM's scheduler settings → etalon's :class:`~etalon.engine.config.EngineConfig`.

The simulator can only predict vLLM if it runs vLLM's engine limits, so they are read from what
the server was started with (:class:`VllmSchedulerSettings`) and, where the running engine
reported a value (``VllmCpuServer.engine_config``: /metrics and its start-up log), from that.

* chunked prefill on (decodes first, then prompt chunks fill the step budget) / off →
  ``scheduler`` ``sarathi`` / ``vllm``;
* ``max_num_seqs`` → ``max_batch_size``; ``max_num_batched_tokens`` → ``max_batched_tokens``;
* ``long_prefill_token_threshold`` → ``chunk_size`` (0, no cap: ``None``, the step budget);
* block size and KV blocks (the engine's own count, never re-derived) → ``block_size``,
  ``num_kv_blocks``.

* ``enable_prefix_caching`` → ``enable_prefix_caching`` (the launcher's default is off): a
  replayed run's records carry their prefix groups and sessions, so the simulated cache shares
  what vLLM's could (``etalon.workload.replay``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etalon.cli_errors import UserError
from etalon.engine.config import EngineConfig
from etalon.launchers.vllm_cpu.server import VllmCpuServer
from etalon.launchers.vllm_cpu.settings import VllmSchedulerSettings


def engine_config_from_vllm(settings: VllmSchedulerSettings, reported: Mapping[str, Any]) -> EngineConfig:
    """The engine limits of a vLLM started with ``settings`` that reported ``reported``
    (``engine_*`` keys; ``engine_num_kv_blocks`` is required: only vLLM knows its KV pool)."""
    if reported.get("engine_num_kv_blocks") is None:
        raise UserError("vLLM did not report its KV blocks (/metrics vllm:cache_config_info "
                         "num_gpu_blocks); the simulator's KV pool would be a guess")
    chunked = reported.get("engine_enable_chunked_prefill", settings.enable_chunked_prefill)
    threshold = settings.long_prefill_token_threshold
    return EngineConfig(
        scheduler="sarathi" if chunked else "vllm",
        max_batch_size=settings.max_num_seqs,
        max_batched_tokens=settings.max_num_batched_tokens,
        chunk_size=threshold if threshold > 0 else None,  # vLLM caps one prompt's share of a step
        num_kv_blocks=int(reported["engine_num_kv_blocks"]),
        block_size=int(reported.get("engine_block_size", settings.block_size)),
        enable_prefix_caching=bool(settings.enable_prefix_caching),
    ).validate()


def engine_config_of(server: VllmCpuServer) -> EngineConfig:
    """The engine limits of a running server (what it was started with and reported)."""
    return engine_config_from_vllm(server.settings, server.engine_config)
