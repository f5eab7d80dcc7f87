"""Prefix generators: which shared prompt prefix (a system prompt) each request starts with.

A prefix generator runs after the length generator and composes with any of them: the length
generator draws each request's *own* part (its suffix) and its output, and the prefix generator
prepends a shared prefix, so ``prompt = prefix_tokens + suffix``. ``none`` (the default) adds
nothing. ``shared`` draws each request's group from ``G`` groups, uniformly or by a bounded
Zipf law, and gives every group a prefix of ``P`` tokens; the requests of a group share those
``P`` tokens exactly (same text live, same block hashes in the engine).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from etalon.cli_errors import UserError
from etalon.options import option
from etalon.registry import raw

from .checks import require_int_at_least, require_non_negative
from .lengths import MAX_TOKENS_FLAG, clip_total_tokens, zipf_pmf

if TYPE_CHECKING:
    from .config import WorkloadConfig


@dataclass(frozen=True)
class Prefixes:
    """Per-request prefixes: ``group[i]`` (-1: none) and ``tokens[i]`` (0 with no group)."""

    group: np.ndarray
    tokens: np.ndarray


class PrefixGenerator(ABC):
    """Adds shared prefixes to requests whose own lengths are already drawn."""

    params: ClassVar[type | None] = None
    params_prefix: ClassVar[str] = ""

    @abstractmethod
    def apply(self, suffix: np.ndarray, output: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, Prefixes]:
        """``(prompt, output, prefixes)`` for requests with own prompt parts ``suffix``."""

    @classmethod
    @abstractmethod
    def from_config(cls, params: Any, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> PrefixGenerator:
        """Builds the generator from its own ``params`` (None without) and the workload."""


register = raw("prefix_generator").register


@register("none")
class NoPrefixes(PrefixGenerator):
    """Every prompt is the request's own: no sharing."""

    def apply(self, suffix: np.ndarray, output: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, Prefixes]:
        n = len(suffix)
        return suffix, output, Prefixes(np.full(n, -1, np.int64), np.zeros(n, np.int64))

    @classmethod
    def from_config(cls, params: None, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> NoPrefixes:
        return cls()


POPULARITY = ("uniform", "zipf")


@dataclass(frozen=True)
class SharedPrefixParams:
    groups: int = option(8, "Prefix groups (distinct system prompts).")
    prefix_tokens: int = option(512, "Tokens of each group's shared prefix.")
    popularity: str = option("uniform", "How requests pick their group.", choices=POPULARITY)
    zipf_s: float = option(1.0, "Zipf exponent of group popularity: P(group k) is "
                                "proportional to 1/(k+1)^s (0 = uniform).")


@register("shared")
class SharedPrefixes(PrefixGenerator):
    """``G`` groups of ``P``-token prefixes; request ``i`` joins group ``g_i`` and its prompt is
    ``P + s_i`` tokens, ``s_i`` being the length generator's prompt tokens.

    ``g_i`` is uniform on ``0..G-1`` or Zipf, ``P(g) = (g+1)^-s / sum_k k^-s`` (group 0 the most
    popular), drawn by inverse CDF from the workload's prefix stream. The length generator's cap
    applies to the suffix and output with ``M - P`` in place of ``M``, so the whole request
    stays within ``--request-generator-max-tokens``.
    """

    params = SharedPrefixParams
    params_prefix = "shared_request_prefix_generator_"
    PREFIX = "--shared-request-prefix-generator"

    def __init__(self, groups: int, prefix_tokens: int, popularity: str, zipf_s: float,
                 rng: np.random.Generator, cap: int = 8192) -> None:
        self.groups = require_int_at_least(groups, 1, f"{self.PREFIX}-groups")
        self.prefix_tokens = require_int_at_least(prefix_tokens, 1, f"{self.PREFIX}-prefix-tokens")
        if popularity not in POPULARITY:
            raise UserError(f"{self.PREFIX}-popularity must be one of {', '.join(POPULARITY)}, "
                            f"got {popularity!r}")
        self.zipf_s = require_non_negative(zipf_s, f"{self.PREFIX}-zipf-s")
        if self.prefix_tokens > cap - 2:
            raise UserError(f"{self.PREFIX}-prefix-tokens ({self.prefix_tokens}) must leave at "
                            f"least 2 tokens of {MAX_TOKENS_FLAG} ({cap}) to each request")
        self.cap = cap
        self.popularity = popularity
        self.rng = rng
        pmf = (zipf_pmf(self.zipf_s, self.groups) if popularity == "zipf"
               else np.full(self.groups, 1.0 / self.groups))
        self._cdf = np.cumsum(pmf)
        self._cdf[-1] = 1.0

    def apply(self, suffix: np.ndarray, output: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, Prefixes]:
        suffix, output = clip_total_tokens(suffix, output, self.cap - self.prefix_tokens)
        group = np.searchsorted(self._cdf, self.rng.random(len(suffix)), side="right")
        tokens = np.full(len(suffix), self.prefix_tokens, np.int64)
        return suffix + tokens, output, Prefixes(group.astype(np.int64), tokens)

    @classmethod
    def from_config(cls, params: SharedPrefixParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> SharedPrefixes:
        return cls(params.groups, params.prefix_tokens, params.popularity, params.zipf_s, rng,
                   cap=cfg.request_generator_max_tokens)


def make_prefix_generator(cfg: WorkloadConfig, rng: np.random.Generator) -> PrefixGenerator:
    """The generator the config selects, its parameters checked."""
    from etalon.registry import registry

    generator = registry("prefix_generator").get(cfg.request_prefix_generator_provider)
    return generator.from_config(cfg.prefixes, cfg, rng)
