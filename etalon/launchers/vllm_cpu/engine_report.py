"""What a running vLLM says about itself: its /metrics cache gauge and its start-up log.

The settings etalon passes are requests; these are what the engine made of them (KV blocks
are vLLM's own count, never re-derived), so a simulator mirrors the engine, not the request.
"""

from __future__ import annotations

import os
import re
from typing import Any

from etalon.launchers.base import http_get, tail_file

_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
#: /metrics ``vllm:cache_config_info`` label -> the key's name after ``engine_``
_CACHE_LABELS = (("block_size", "block_size"), ("num_gpu_blocks", "num_kv_blocks"),
                 ("kv_cache_size_tokens", "kv_cache_tokens"), ("kv_cache_memory_bytes", "kv_cache_bytes"),
                 ("enable_prefix_caching", "enable_prefix_caching"), ("cache_dtype", "kv_cache_dtype"))
#: ``key=value`` pairs read from the "Initializing a V1 LLM engine" log line
_ENGINE_LINE_KEYS = ("enable_chunked_prefill", "enable_prefix_caching", "max_seq_len", "dtype", "enforce_eager")
_CORE_LIST = r"\[([\d, ]*)\]"


def _coerce(value: str) -> Any:
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _cores(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_metrics(body: str) -> dict[str, Any]:
    """``engine_*`` facts from a /metrics page's ``vllm:cache_config_info`` gauge."""
    for line in body.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            labels = dict(_LABEL_RE.findall(line))
            return {f"engine_{name}": _coerce(labels[key]) for key, name in _CACHE_LABELS if key in labels}
    return {}


def parse_log(text: str) -> dict[str, Any]:
    """``engine_*`` facts from vLLM's start-up log: the engine line (chunked prefill, prefix
    caching, max_seq_len, dtype), the KV concurrency line and the CPU placement lines."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if "Initializing a V1 LLM engine" in line:
            for key in _ENGINE_LINE_KEYS:
                m = re.search(rf"\b{key}=([^,\s]+)", line)
                if m:
                    out[f"engine_{key}"] = _coerce(m.group(1).strip("'"))
        m = re.search(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x", line)
        if m:
            out["engine_max_concurrency_at_max_len"] = float(m.group(2))
        # CPU placement: vLLM binds its OpenMP threads to some cores and keeps others free
        m = re.search(r"core ids=" + _CORE_LIST, line)
        if m:
            out["engine_omp_core_ids"] = _cores(m.group(1))
        m = re.search(r"reserved_cpus=" + _CORE_LIST, line)
        if m:
            out["engine_reserved_cpus"] = _cores(m.group(1))
        m = re.search(r"Reducing Torch threads from (\d+) to (\d+)", line)
        if m:
            out["engine_torch_threads"] = int(m.group(2))
    return out


def read_engine_config(metrics_url: str, log_path: str | os.PathLike | None) -> dict[str, Any]:
    """Scheduler/cache facts reported by a running vLLM: its /metrics ``cache_config_info``
    gauge (block size, KV blocks and tokens, prefix caching) and its start-up log."""
    out: dict[str, Any] = {}
    status, body = http_get(metrics_url, timeout=5.0)
    if status == 200:
        out.update(parse_metrics(body.decode("utf-8", errors="replace")))
    if log_path:
        out.update(parse_log(tail_file(log_path, lines=100000, max_bytes=4 * 1024 * 1024)))
    return out
