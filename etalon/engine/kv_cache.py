"""Paged KV-cache accounting: a pool of fixed-size blocks, allocated per sequence.

Only counts matter here (no block tables): admission checks, growth during decode, freeing on
finish or preemption, and the peak, which the simulator reports.
"""

from __future__ import annotations

from etalon.cli_errors import UserError


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks needed to hold ``tokens`` KV entries (ceiling division)."""
    return -(-tokens // block_size)


class BlockPool:
    """A fixed number of KV blocks of ``block_size`` tokens each."""

    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1 or block_size < 1:
            raise UserError(
                f"KV cache needs num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}"
            )
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.used = 0
        self.peak = 0

    @property
    def free(self) -> int:
        return self.num_blocks - self.used

    def can_allocate(self, n: int) -> bool:
        return n <= self.free

    def allocate(self, n: int) -> None:
        if n > self.free:
            raise RuntimeError(f"KV cache: asked for {n} blocks, {self.free} free")
        self.used += n
        if self.used > self.peak:
            self.peak = self.used

    def release(self, n: int) -> None:
        self.used -= n
        assert self.used >= 0, "released more KV blocks than were allocated"
