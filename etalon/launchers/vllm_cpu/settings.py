"""vLLM's scheduler settings as etalon starts it: one frozen dataclass, every field passed explicitly.

A simulator can only mirror an engine whose settings it knows, so none is left to vLLM's
defaults; :data:`VLLM_CPU_DEFAULTS` records what those defaults are, and the two differ only
where the class docstring says why.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from etalon.cli_errors import UserError

#: What vllm-cpu 0.32.0 resolves for this model on CPU with no scheduler flags, for
#: `python -m vllm.entrypoints.openai.api_server` (UsageContext.OPENAI_API_SERVER; read from
#: EngineArgs.create_engine_config, `python -m etalon.launchers.vllm_cpu config` re-reads it).
#: The offline LLM class uses max_num_batched_tokens=4096 and max_num_seqs=256 instead.
VLLM_CPU_DEFAULTS: dict[str, Any] = {
    "max_model_len": 8192,  # from the model's config (max_position_embeddings)
    "max_num_seqs": 128,
    "max_num_batched_tokens": 2048,
    "enable_chunked_prefill": True,
    "enable_prefix_caching": True,
    "block_size": 128,  # the CPU platform's default (GPU: 16)
    "scheduling_policy": "fcfs",
    "long_prefill_token_threshold": 0,
    "async_scheduling": False,
    "stream_interval": 1,
    "watermark": 0.0,
    "dtype": "bfloat16",  # "auto" for a bf16 checkpoint
}


@dataclasses.dataclass(frozen=True)
class VllmSchedulerSettings:
    """The engine settings a simulator has to mirror; every field is passed to vLLM explicitly.

    Defaults are vllm-cpu 0.32.0's own CPU defaults (:data:`VLLM_CPU_DEFAULTS`) except:

    * ``enable_prefix_caching=False`` (vLLM: True), so a request's prefill time depends on
      its prompt only, not on what earlier requests left in the cache;
    * ``dtype="float32"`` (vLLM: bfloat16 for this checkpoint): in bf16 the CPU engine's
      greedy answer to the chat-template prompt is wrong ("L'Étoile, la Marseillaise, ...");
      float32 matches transformers ("The capital of France is Paris.").
    """

    max_model_len: int = 8192
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = False
    block_size: int = 128
    scheduling_policy: str = "fcfs"
    long_prefill_token_threshold: int = 0
    async_scheduling: bool = False
    stream_interval: int = 1
    dtype: str = "float32"
    #: KV cache size in GiB (env VLLM_CPU_KVCACHE_SPACE); for SmolLM2-135M 2 GiB holds 46,592
    #: tokens (364 blocks of 128) in float32, 93,184 in bfloat16
    kv_cache_space_gib: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "block_size", "stream_interval"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise UserError(
                "without chunked prefill vLLM needs max_num_batched_tokens >= max_model_len "
                f"({self.max_num_batched_tokens} < {self.max_model_len})"
            )
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise UserError(
                "vLLM needs max_num_batched_tokens >= max_num_seqs "
                f"({self.max_num_batched_tokens} < {self.max_num_seqs})"
            )
        if self.scheduling_policy not in ("fcfs", "priority"):
            raise UserError(f"scheduling_policy must be 'fcfs' or 'priority', got {self.scheduling_policy!r}")
        if self.kv_cache_space_gib <= 0:
            raise UserError("kv_cache_space_gib must be > 0")

    def cli_args(self) -> list[str]:
        """vLLM's command-line flags for these settings (all of them but the KV size)."""
        def flag(name: str, on: bool) -> str:
            return f"--{name}" if on else f"--no-{name}"

        return [
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
            "--max-num-seqs", str(self.max_num_seqs),
            "--max-num-batched-tokens", str(self.max_num_batched_tokens),
            flag("enable-chunked-prefill", self.enable_chunked_prefill),
            flag("enable-prefix-caching", self.enable_prefix_caching),
            "--block-size", str(self.block_size),
            "--scheduling-policy", self.scheduling_policy,
            "--long-prefill-token-threshold", str(self.long_prefill_token_threshold),
            flag("async-scheduling", self.async_scheduling),
            "--stream-interval", str(self.stream_interval),
        ]

    def env(self) -> dict[str, str]:
        """The environment that sets the KV size (vLLM on CPU takes it from there, not a flag);
        with prefix caching, vLLM's development endpoints too, for ``POST /reset_prefix_cache``
        (a measurement must start with a cold cache, as its replay does; the server binds to
        the loopback interface)."""
        gib = self.kv_cache_space_gib
        env = {"VLLM_CPU_KVCACHE_SPACE": str(int(gib)) if float(gib).is_integer() else str(gib)}
        if self.enable_prefix_caching:
            env["VLLM_SERVER_DEV_MODE"] = "1"
        return env

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: the field names, which are also the keyword overrides VllmCpuServer and the CLI accept
SETTING_FIELDS = frozenset(f.name for f in dataclasses.fields(VllmSchedulerSettings))
