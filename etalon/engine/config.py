"""Engine configuration: batching policy and limits, KV-cache size — declared once, here.

``etalon serve``, ``etalon simulate``, ``etalon validate``, the estimator and the vLLM settings
mapping all read these fields; their flags are generated from them (``etalon.options``). vLLM's
names for the same limits are accepted as aliases (``--max-num-seqs``,
``--max-num-batched-tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from etalon.cli_errors import UserError
from etalon.options import option

DEFAULT_KV_BLOCKS = 4096


@dataclass
class EngineConfig:
    """Limits of one serving engine (one replica)."""

    scheduler: str = option("vllm", "batching policy", choices="scheduler")
    max_batch_size: int = option(256, "sequences running at once (vLLM's max-num-seqs)",
                                 aliases=("--max-num-seqs",))
    max_batched_tokens: int = option(8192, "tokens processed in one step; the chunked-prefill "
                                           "budget (vLLM's max-num-batched-tokens)",
                                     aliases=("--max-num-batched-tokens",))
    chunk_size: int | None = option(None, "largest prefill chunk per sequence per step "
                                          "(none: the step budget)")
    num_kv_blocks: int | None = option(None, "KV-cache blocks per replica (none: sized from "
                                             f"the model and hardware when known, else "
                                             f"{DEFAULT_KV_BLOCKS})")
    block_size: int = option(16, "tokens per KV block")
    batch_window: float = option(0.0, "seconds the windowed policy waits to fill a batch")
    enable_prefix_caching: bool = option(False, "reuse the KV blocks of identical prompt "
                                                "prefixes, as vLLM's automatic prefix caching "
                                                "does")

    def validate(self) -> EngineConfig:
        from etalon.registry import registry

        registry("scheduler").get(self.scheduler)
        for name in ("max_batch_size", "max_batched_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("chunk_size", "num_kv_blocks"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.batch_window < 0:
            raise UserError(f"--batch-window must be >= 0, got {self.batch_window}")
        return self

    def with_kv_blocks(self, num_kv_blocks: int) -> EngineConfig:
        return replace(self, num_kv_blocks=num_kv_blocks).validate()

    @property
    def kv_blocks(self) -> int:
        """The KV blocks this engine has (the default when nothing sized them)."""
        return self.num_kv_blocks or DEFAULT_KV_BLOCKS

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_blocks * self.block_size
