"""Paged KV-cache accounting: a pool of fixed-size blocks, allocated per sequence.

Only counts matter here (no block tables): admission checks, growth during decode, freeing on
finish or preemption, and the peak, which the simulator reports.

With prefix caching (vLLM's automatic prefix caching) a *full* block is also known by a hash
chain over its tokens' identities: block ``i``'s hash is ``hash((hash of block i-1, identity of
block i's tokens))``, so equal hashes mean equal content *and* equal prefix. A hashed block in
use is shared (reference-counted) by every sequence whose prompt starts with it; when its last
user frees it, it stays in the pool as *cached* (free, but still holding its KV) until the pool
needs the space, and then the least recently freed cached block is evicted first. Empty blocks
are handed out before any cached block is evicted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence

from etalon.cli_errors import UserError

# Token-identity kinds inside a synthetic request (see ``synthetic_block_hashes``).
_SHARED, _OWN, _STRADDLE = 0, 1, 2
_ROOT = 0x65746C6E  # the chain's seed: the "previous hash" of block 0


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks needed to hold ``tokens`` KV entries (ceiling division)."""
    return -(-tokens // block_size)


def chain_hashes(identities: Iterable[Hashable]) -> list[int]:
    """One hash per block: ``h_i = hash((h_{i-1}, identity_i))`` with ``h_{-1}`` fixed.

    Identities must hash the same in every process (ints and tuples of ints do; ``str`` does
    not under hash randomisation), so a simulation is reproducible.
    """
    out, h = [], _ROOT
    for ident in identities:
        h = hash((h, ident))
        out.append(h)
    return out


def token_block_hashes(token_ids: Sequence[int], block_size: int) -> list[int]:
    """Hashes of the full blocks of a real prompt: a block's identity is its token ids."""
    full = len(token_ids) // block_size
    return chain_hashes(tuple(token_ids[i * block_size:(i + 1) * block_size])
                        for i in range(full))


def synthetic_block_hashes(request_id: int, prompt_tokens: int, prefix_group: int | None,
                           prefix_tokens: int, block_size: int) -> list[int]:
    """Hashes of the full blocks of a synthetic prompt (the simulator has no token ids).

    A token's identity is ``(prefix_group, position)`` inside the group's shared prefix of
    ``prefix_tokens`` and ``(request_id, position)`` after it; a block is the run of its
    tokens' identities, written compactly as (kind, owner(s), first position).
    """
    shared = prefix_tokens if prefix_group is not None else 0
    idents = []
    for start in range(0, prompt_tokens - block_size + 1, block_size):
        end = start + block_size
        if end <= shared:
            idents.append((_SHARED, prefix_group, start))
        elif start >= shared:
            idents.append((_OWN, request_id, start))
        else:
            idents.append((_STRADDLE, prefix_group, shared, request_id, start))
    return chain_hashes(idents)


class BlockPool:
    """A fixed number of KV blocks of ``block_size`` tokens each.

    ``used`` counts blocks holding KV of running sequences (a shared block once); ``cached``
    counts freed blocks kept for their content. ``used + cached <= num_blocks`` always, and
    ``free`` (what a sequence may still get) includes the cached blocks, which are evicted on
    demand.
    """

    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1 or block_size < 1:
            raise UserError(
                f"KV cache needs num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}"
            )
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.used = 0
        self.peak = 0
        self.evictions = 0
        self._refs: dict[int, int] = {}  # hash -> sequences using that block
        self._lru: OrderedDict[int, None] = OrderedDict()  # cached blocks, least recent first

    @property
    def free(self) -> int:
        return self.num_blocks - self.used

    @property
    def cached(self) -> int:
        return len(self._lru)

    def can_allocate(self, n: int) -> bool:
        return n <= self.free

    def allocate(self, n: int) -> None:
        """``n`` new unhashed blocks: empty ones first, then cached ones evicted LRU."""
        if n > self.free:
            raise RuntimeError(f"KV cache: asked for {n} blocks, {self.free} free")
        self.used += n
        if self.used > self.peak:
            self.peak = self.used
        if self._lru:
            self._evict(self.used + len(self._lru) - self.num_blocks)

    def release(self, n: int) -> None:
        """Frees ``n`` unhashed blocks (they hold nothing worth keeping)."""
        self.used -= n
        assert self.used >= 0, "released more KV blocks than were allocated"

    # -- prefix caching ------------------------------------------------------------------------

    def match(self, hashes: Sequence[int], limit: int) -> int:
        """How many leading ``hashes`` (at most ``limit``) are in the pool, in use or cached."""
        n = 0
        refs, lru = self._refs, self._lru
        for h in hashes[:limit]:
            if h not in refs and h not in lru:
                break
            n += 1
        return n

    def evictable(self, hashes: Sequence[int]) -> int:
        """How many of ``hashes`` (all present) are cached, i.e. would leave the free space."""
        refs = self._refs
        return sum(1 for h in hashes if h not in refs)

    def acquire(self, hashes: Sequence[int]) -> None:
        """Takes a reference on each of ``hashes`` (all present: ``match`` found them)."""
        refs, lru = self._refs, self._lru
        for h in hashes:
            if h in refs:
                refs[h] += 1
            else:
                del lru[h]
                refs[h] = 1
                self.used += 1
        if self.used > self.peak:
            self.peak = self.used

    def register(self, hashes: Sequence[int]) -> None:
        """Makes a sequence's just-filled private blocks, one per hash, known by their hashes.

        A hash already present (another sequence computed the same block meanwhile, or it is
        cached) is shared instead: the sequence's private copy goes back to the pool.
        """
        refs, lru = self._refs, self._lru
        for h in hashes:
            if h in refs:
                refs[h] += 1
                self.used -= 1
            elif h in lru:
                del lru[h]
                refs[h] = 1
            else:
                refs[h] = 1

    def release_hashed(self, hashes: Sequence[int]) -> None:
        """Drops one reference on each of ``hashes``; a block nobody uses becomes cached.

        Freed tail-first, as vLLM does, so a prompt's later blocks are evicted before its
        earlier ones (which more requests share).
        """
        refs, lru = self._refs, self._lru
        for h in reversed(hashes):
            left = refs[h] - 1
            if left:
                refs[h] = left
            else:
                del refs[h]
                lru[h] = None
                self.used -= 1
        assert self.used >= 0, "released more KV blocks than were allocated"

    def _evict(self, n: int) -> None:
        lru = self._lru
        for _ in range(n):
            lru.popitem(last=False)
        if n > 0:
            self.evictions += n
