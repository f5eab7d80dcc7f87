"""Builds prompts of a requested token length from the packaged corpus.

Each prompt starts with a short request tag ``(<request_id>)`` followed by corpus text from an
offset drawn from ``default_rng([seed, request_id])``. The tag makes every prompt of a run
distinct from its first tokens, so a server's prefix cache cannot reuse another request's KV
blocks even when two offsets collide; the offsets make the bodies differ too. Same seed and
request id, same prompt, in any process.

A request of a prefix group (``Request.prefix_group``) opens with its group's shared prefix: a
tag ``[system prompt <group>]`` and corpus text from an offset drawn from the group's own
stream (``SeedSequence(seed, spawn_key=(PREFIX_STREAM, group))``), exactly ``prefix_tokens``
tokens long and the same text for every request of the group, so a real server's prefix cache
hits on it; the request's own tag and text follow.

With an exact tokenizer the prompt has exactly ``num_tokens`` tokens (verified by re-encoding,
see ``build_counted``). With ``ApproxTokenizer`` it has exactly ``4 * num_tokens`` characters,
i.e. ``num_tokens`` tokens under that estimate.
"""

from __future__ import annotations

import logging

import numpy as np

from .checks import require_int_at_least
from .corpus import load_corpus
from .tokenizer import ApproxTokenizer, Tokenizer

from etalon.cli_errors import UserError

log = logging.getLogger(__name__)

_MAX_FIXUPS = 8
PREFIX_STREAM = 0x50524546  # spawn key of the prefix groups' streams ("PREF")


class PromptBuilder:
    """Prompts of an exact (or, with the approximation, estimated) token count."""

    def __init__(self, tokenizer: Tokenizer, seed: int, corpus: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.seed = require_int_at_least(seed, 0, "--seed")
        text = corpus if corpus is not None else load_corpus()
        if not text.strip():
            raise UserError("prompt corpus is empty")
        # A ring: the corpus followed by a space, so wrapping around reads "... end. Start ...".
        self._ring = " ".join(text.split()) + " "
        self._warned = False
        self._prefixes: dict[tuple[int, int], str | list[int]] = {}
        if tokenizer.exact:
            # Encoded once; prompts slice ids. The leading space makes the first word tokenize
            # like every other word, so a wrap-around join needs no fix-up.
            self._ids = np.asarray(tokenizer.encode(" " + self._ring.rstrip()), dtype=np.int64)
            if len(self._ids) == 0:
                raise UserError(f"tokenizer {tokenizer.name} encodes the corpus to no tokens")
            self._starts = _token_word_starts(tokenizer, self._ids)
        else:
            spaces = np.flatnonzero(np.frombuffer(self._ring.encode("utf-32-le"), "<u4") == 32)
            starts = spaces[:-1] + 1  # the character after each space begins a word
            self._starts = np.concatenate(([0], starts))

    def build(self, num_tokens: int, request_id: int) -> str:
        """A prompt of ``num_tokens`` tokens for ``request_id``."""
        return self.build_counted(num_tokens, request_id)[0]

    def build_request(self, request) -> str:
        """The prompt of a workload ``Request``: its group's shared prefix, if any, then its own
        text; ``prompt_tokens`` tokens in all. A dataset's prompt is sent as it is; a session's
        turn is only its new message (the load generator puts the conversation before it)."""
        if request.prompt_text is not None:
            return request.prompt_text
        if request.session_id is not None:
            return self.build(request.prompt_tokens - request.context_tokens, request.request_id)
        return self.build_counted(request.prompt_tokens, request.request_id,
                                  request.prefix_group, request.prefix_tokens)[0]

    def build_counted(self, num_tokens: int, request_id: int, prefix_group: int | None = None,
                      prefix_tokens: int = 0) -> tuple[str, int]:
        """``(prompt, its token count under the tokenizer)``.

        The count equals ``num_tokens`` except in a pathological tokenizer where no text has
        exactly that many tokens near the target; then the closest found is returned (and a
        warning logged once), so a caller can record the true count instead of the request.
        """
        n = require_int_at_least(num_tokens, 1, "prompt tokens")
        rng = np.random.default_rng([self.seed, require_int_at_least(request_id, 0, "request id")])
        head = None
        if prefix_group is not None:
            shared = require_int_at_least(prefix_tokens, 1, "prefix tokens")
            if shared >= n:
                raise UserError(f"request {request_id}: its {n} prompt tokens leave no room after "
                                f"the {shared}-token shared prefix")
            head = self._prefix(require_int_at_least(prefix_group, 0, "prefix group"), shared)
        if self.tokenizer.exact:
            return self._build_exact(n, request_id, rng, head or [])
        text = self._build_approx(n, request_id, rng, head or "")
        return text, self.tokenizer.count(text)

    def _prefix(self, group: int, num_tokens: int) -> str | list[int]:
        """Group ``group``'s shared prefix of ``num_tokens`` tokens: text under the
        approximation, token ids under an exact tokenizer; built once per builder."""
        key = (group, num_tokens)
        if key not in self._prefixes:
            seq = np.random.SeedSequence(self.seed, spawn_key=(PREFIX_STREAM, group))
            start = int(self._starts[np.random.default_rng(seq).integers(len(self._starts))])
            tag = f"[system prompt {group}] "
            if self.tokenizer.exact:
                tag_ids = self.tokenizer.encode(tag.rstrip())
                tag_ids = tag_ids if len(tag_ids) < num_tokens else []
                self._prefixes[key] = tag_ids + self._window(start, num_tokens - len(tag_ids))
            else:
                chars = num_tokens * self._chars_per_token
                tag = tag if len(tag) < chars else ""
                self._prefixes[key] = tag + self._ring_slice(start, chars - len(tag))
        return self._prefixes[key]

    @property
    def _chars_per_token(self) -> int:
        return getattr(self.tokenizer, "CHARS_PER_TOKEN", ApproxTokenizer.CHARS_PER_TOKEN)

    def _build_approx(self, n: int, request_id: int, rng: np.random.Generator,
                      head: str = "") -> str:
        chars = n * self._chars_per_token - len(head)
        tag = f"({request_id}) "
        if len(tag) >= chars:
            tag = ""
        start = int(self._starts[rng.integers(len(self._starts))])
        return head + tag + self._ring_slice(start, chars - len(tag))

    def _ring_slice(self, start: int, length: int) -> str:
        ring = self._ring
        end = start + length
        if end <= len(ring):
            return ring[start:end]
        whole, rest = divmod(end - len(ring), len(ring))
        return ring[start:] + ring * whole + ring[:rest]

    def _window(self, start: int, count: int) -> list[int]:
        return np.take(self._ids, np.arange(start, start + count), mode="wrap").tolist()

    def _build_exact(self, n: int, request_id: int, rng: np.random.Generator,
                     head: list[int] = ()) -> tuple[str, int]:
        """``head`` (a shared prefix's ids) + the request's tag + corpus ids, then fix-ups at
        the end until re-encoding gives ``n`` tokens."""
        tok = self.tokenizer
        head = list(head)
        tag_ids = tok.encode(f" ({request_id})" if head else f"({request_id})")
        if len(head) + len(tag_ids) >= n:
            tag_ids = []
        own = n - len(head) - len(tag_ids)
        pos = int(self._starts[rng.integers(len(self._starts))])
        ids = head + tag_ids + self._window(pos, own)
        pos += own
        best: tuple[str, int] | None = None
        for _ in range(_MAX_FIXUPS):
            text = tok.decode(ids)
            got = tok.encode(text)
            if len(got) == n:
                return text, n
            best = _closer(best, (text, len(got)), n)
            if len(got) > n:
                ids = got[:n]  # a merge or split at a boundary: cut in token space
            else:
                short = n - len(got)
                ids = got + self._window(pos, short)
                pos += short
        return self._fit_by_characters(n, best, pos)

    def _fit_by_characters(self, n: int, best: tuple[str, int] | None, pos: int) -> tuple[str, int]:
        """Fallback: the longest character prefix of a longer candidate with <= n tokens."""
        tok = self.tokenizer
        assert best is not None
        text = best[0] + tok.decode(self._window(pos, n + 8))
        low, high = 0, len(text)
        while low < high:
            mid = (low + high + 1) // 2
            if tok.count(text[:mid]) <= n:
                low = mid
            else:
                high = mid - 1
        best = _closer(best, (text[:low], tok.count(text[:low])), n)
        if best[1] != n and not self._warned:
            self._warned = True
            log.warning(
                "tokenizer %s: could not build a prompt of exactly %d tokens; got %d",
                tok.name,
                n,
                best[1],
            )
        return best


def _token_word_starts(tokenizer: Tokenizer, ids: np.ndarray) -> np.ndarray:
    """Token positions that begin a word; every position if the tokenizer cannot tell."""
    word_starts = getattr(tokenizer, "word_starts", None)
    if word_starts is not None:
        starts = np.flatnonzero(np.asarray(word_starts(ids.tolist()), dtype=bool))
        if len(starts):
            return starts
    return np.arange(len(ids))


def _closer(a: tuple[str, int] | None, b: tuple[str, int], n: int) -> tuple[str, int]:
    if a is None or abs(b[1] - n) < abs(a[1] - n):
        return b
    return a
