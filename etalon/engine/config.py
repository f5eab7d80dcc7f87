"""Engine configuration: batching policy and limits, KV-cache size."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineConfig:
    """Limits of one serving engine (one replica).

    - ``scheduler``: batching policy name (see ``etalon.engine.schedulers.SCHEDULERS``).
    - ``max_batch_size``: sequences running at once (vLLM's ``max_num_seqs``).
    - ``max_batched_tokens``: tokens processed in one step (vLLM's ``max_num_batched_tokens``);
      for chunked prefill, the per-step token budget.
    - ``chunk_size``: largest prefill chunk per sequence per step (chunked policies); ``None``
      means the step budget.
    - ``num_kv_blocks`` × ``block_size``: the KV cache, in tokens.
    - ``batch_window``: seconds the windowed policy waits for a batch to fill.
    """

    scheduler: str = "vllm"
    max_batch_size: int = 256
    max_batched_tokens: int = 8192
    chunk_size: int | None = None
    num_kv_blocks: int = 4096
    block_size: int = 16
    batch_window: float = 0.0

    def validate(self) -> "EngineConfig":
        from etalon.engine.schedulers import SCHEDULERS

        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"unknown scheduler {self.scheduler!r}; valid: {', '.join(sorted(SCHEDULERS))}"
            )
        for name in ("max_batch_size", "max_batched_tokens", "num_kv_blocks", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"engine: {name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"engine: chunk_size must be >= 1, got {self.chunk_size}")
        if self.batch_window < 0:
            raise ValueError(f"engine: batch_window must be >= 0, got {self.batch_window}")
        return self

    @property
    def kv_capacity_tokens(self) -> int:
        return self.num_kv_blocks * self.block_size


def add_engine_args(parser) -> None:
    """Engine flags shared by ``etalon.serve`` and ``etalon.simulate``."""
    from etalon.engine.schedulers import SCHEDULERS

    d = EngineConfig()
    g = parser.add_argument_group("engine")
    g.add_argument("--scheduler", default=d.scheduler, choices=sorted(SCHEDULERS),
                   help=f"batching policy (default: {d.scheduler})")
    g.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                   help=f"sequences running at once, vLLM's max-num-seqs (default: {d.max_batch_size})")
    g.add_argument("--max-batched-tokens", type=int, default=d.max_batched_tokens,
                   help=f"tokens per step / chunked-prefill budget (default: {d.max_batched_tokens})")
    g.add_argument("--chunk-size", type=int, default=None,
                   help="largest prefill chunk per sequence per step (default: the step budget)")
    g.add_argument("--num-kv-blocks", type=int, default=d.num_kv_blocks,
                   help=f"KV-cache blocks (default: {d.num_kv_blocks})")
    g.add_argument("--block-size", type=int, default=d.block_size,
                   help=f"tokens per KV block (default: {d.block_size})")
    g.add_argument("--batch-window", type=float, default=d.batch_window,
                   help=f"seconds the windowed policy waits to fill a batch (default: {d.batch_window})")


def engine_config_from_args(args) -> EngineConfig:
    return EngineConfig(
        scheduler=args.scheduler, max_batch_size=args.max_batch_size,
        max_batched_tokens=args.max_batched_tokens, chunk_size=args.chunk_size,
        num_kv_blocks=args.num_kv_blocks, block_size=args.block_size,
        batch_window=args.batch_window,
    ).validate()
