"""Request length generators: how many prompt (prefill) and output (decode) tokens each has.

``lengths(n)`` returns ``(prefill, decode)`` integer arrays, every entry >= 1, of length up to
``n`` (fewer only when a trace runs out). Every provider then applies the
``--request-generator-max-tokens`` cap with ``clip_total_tokens``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from etalon.cli_errors import UserError
from etalon.options import option
from etalon.registry import raw

from .checks import (
    require_int_at_least,
    require_non_negative,
    require_ordered,
    require_positive,
)
from .traces import read_length_trace

if TYPE_CHECKING:
    from .config import WorkloadConfig
    from .sessions import TurnPlan

MAX_TOKENS_FLAG = "--request-generator-max-tokens"


def clip_total_tokens(
    prefill: np.ndarray, decode: np.ndarray, max_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """Proportional clipping of requests longer than ``max_tokens`` in total.

    Where ``p + d > M``: ``p' = clip(floor(p * M / (p + d)), 1, M - 1)`` and ``d' = M - p'``,
    so the clipped total is exactly ``M``, the prefill/decode ratio is kept up to rounding and
    both stay >= 1. Requests within the cap are unchanged.
    """
    p = np.asarray(prefill, dtype=np.int64)
    d = np.asarray(decode, dtype=np.int64)
    total = p + d
    over = total > max_tokens
    if not over.any():
        return p, d
    scaled = np.clip((p * max_tokens) // np.maximum(total, 1), 1, max_tokens - 1)
    new_p = np.where(over, scaled, p)
    new_d = np.where(over, max_tokens - new_p, d)
    return new_p, new_d


def split_by_ratio(
    total: np.ndarray, prefill_to_decode_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Splits totals ``T >= 2`` so that prefill/decode is about ``r``.

    ``d = clip(floor(T / (1 + r) + 1/2), 1, T - 1)`` and ``p = T - d``.
    """
    t = np.asarray(total, dtype=np.int64)
    decode = np.floor(t / (1.0 + prefill_to_decode_ratio) + 0.5).astype(np.int64)
    decode = np.clip(decode, 1, t - 1)
    return t - decode, decode


def zipf_pmf(theta: float, num_values: int) -> np.ndarray:
    """Bounded Zipf: ``P(k) = k^-theta / H`` for ranks ``k = 1..N``.

    ``H = sum_{k=1..N} k^-theta`` is the exact finite sum (``math.fsum``, correctly rounded),
    not the zeta-function approximation, so the pmf sums to one over the support.
    """
    ranks = np.arange(1, num_values + 1, dtype=np.float64)
    weights = ranks ** (-float(theta))
    return weights / math.fsum(weights)


class LengthGenerator(ABC):
    """Produces ``(prefill, decode)`` token counts, capped at ``max_tokens`` in total.

    Like the interval generators, a length generator declares its settings as a ``params``
    config class whose fields become ``--<params_prefix><field>`` flags and file keys.
    """

    params: ClassVar[type | None] = None
    params_prefix: ClassVar[str] = ""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = require_int_at_least(max_tokens, 2, MAX_TOKENS_FLAG)

    def lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` requests' lengths, each >= 1, each total <= ``max_tokens``."""
        prefill, decode = self._raw_lengths(require_int_at_least(n, 0, "number of requests"))
        return clip_total_tokens(prefill, decode, self.max_tokens)

    @abstractmethod
    def _raw_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Lengths before the cap; each entry >= 1."""

    def session_plan(self, n: int) -> TurnPlan | None:
        """``n`` requests as the turns of the generator's own sessions, when its data has them
        (a dataset's whole conversations); None: it draws independent lengths (which
        ``--session-turns`` may chain into sessions)."""
        return None

    @classmethod
    @abstractmethod
    def from_config(cls, params: Any, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> LengthGenerator:
        """Builds the generator from its own ``params`` and the workload (for the cap)."""


register = raw("length_generator").register


def _check_range(min_tokens: int, max_tokens: int, prefix: str) -> tuple[int, int]:
    low = require_int_at_least(min_tokens, 2, f"--{prefix}-min-tokens")
    high = require_int_at_least(max_tokens, 2, f"--{prefix}-max-tokens")
    require_ordered(low, high, f"--{prefix}-min-tokens", f"--{prefix}-max-tokens")
    return low, high


@dataclass(frozen=True)
class UniformParams:
    min_tokens: int = option(1024, "Smallest total (prompt + output) tokens of a request.")
    max_tokens: int = option(4096, "Largest total (prompt + output) tokens of a request.")
    prefill_to_decode_ratio: float = option(20.0, "Prompt tokens per output token when "
                                                  "splitting the total.")


@register("uniform")
class UniformLengths(LengthGenerator):
    """Total tokens uniform on the integers ``[min_tokens, max_tokens]``, split by the ratio."""

    params = UniformParams
    params_prefix = "uniform_request_length_generator_"

    PREFIX = "uniform-request-length-generator"

    def __init__(
        self,
        min_tokens: int,
        max_tokens: int,
        prefill_to_decode_ratio: float,
        rng: np.random.Generator,
        cap: int = 8192,
    ) -> None:
        super().__init__(cap)
        self.min_tokens, self.max_total = _check_range(min_tokens, max_tokens, self.PREFIX)
        self.ratio = require_positive(
            prefill_to_decode_ratio, f"--{self.PREFIX}-prefill-to-decode-ratio"
        )
        self.rng = rng

    def _raw_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        total = self.rng.integers(self.min_tokens, self.max_total, size=n, endpoint=True)
        return split_by_ratio(total, self.ratio)

    @classmethod
    def from_config(cls, params: UniformParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> UniformLengths:
        return cls(params.min_tokens, params.max_tokens, params.prefill_to_decode_ratio, rng,
                   cap=cfg.request_generator_max_tokens)


@dataclass(frozen=True)
class ZipfParams:
    theta: float = option(0.6, "Zipf exponent: P(rank k) is proportional to 1/k^theta "
                               "(0 = uniform).")
    scramble: bool = option(False, "Map Zipf ranks to totals through a seeded permutation "
                                   "instead of in order.")
    min_tokens: int = option(1024, "Smallest total (prompt + output) tokens; rank 1 unless "
                                   "scrambled.")
    max_tokens: int = option(4096, "Largest total (prompt + output) tokens of a request.")
    prefill_to_decode_ratio: float = option(20.0, "Prompt tokens per output token when "
                                                  "splitting the total.")


@register("zipf")
class ZipfLengths(LengthGenerator):
    """Total tokens from a bounded Zipf over ``[min_tokens, max_tokens]``, split by the ratio.

    Rank ``k`` (``1..N``, ``N = max - min + 1``) has probability ``k^-theta / H``. Unscrambled,
    rank ``k`` is the total ``min_tokens + k - 1`` (short requests most frequent); scrambled,
    ranks map to totals through a seeded random permutation, so the popular totals are spread
    over the range. Sampled by inverse CDF: ``searchsorted(cumsum(pmf), u, side="right")``.
    """

    PREFIX = "zipf-request-length-generator"
    params = ZipfParams
    params_prefix = "zipf_request_length_generator_"

    def __init__(
        self,
        theta: float,
        scramble: bool,
        min_tokens: int,
        max_tokens: int,
        prefill_to_decode_ratio: float,
        rng: np.random.Generator,
        cap: int = 8192,
    ) -> None:
        super().__init__(cap)
        self.theta = require_non_negative(theta, f"--{self.PREFIX}-theta")
        self.min_tokens, self.max_total = _check_range(min_tokens, max_tokens, self.PREFIX)
        self.ratio = require_positive(
            prefill_to_decode_ratio, f"--{self.PREFIX}-prefill-to-decode-ratio"
        )
        self.scramble = bool(scramble)
        self.rng = rng
        num_values = self.max_total - self.min_tokens + 1
        self.pmf = zipf_pmf(self.theta, num_values)
        self._cdf = np.cumsum(self.pmf)
        self._cdf[-1] = 1.0  # u < 1 always lands inside the support despite rounding
        totals = np.arange(self.min_tokens, self.max_total + 1, dtype=np.int64)
        self.values = rng.permutation(totals) if self.scramble else totals

    def _raw_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        ranks = np.searchsorted(self._cdf, self.rng.random(n), side="right")
        return split_by_ratio(self.values[ranks], self.ratio)

    @classmethod
    def from_config(cls, params: ZipfParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> ZipfLengths:
        return cls(params.theta, params.scramble, params.min_tokens, params.max_tokens,
                   params.prefill_to_decode_ratio, rng, cap=cfg.request_generator_max_tokens)


@dataclass(frozen=True)
class FixedParams:
    prefill_tokens: int = option(256, "Prompt tokens of every request.")
    decode_tokens: int = option(64, "Output tokens of every request.")


@register("fixed")
class FixedLengths(LengthGenerator):
    """Every request has the same prefill and decode token counts."""

    params = FixedParams
    params_prefix = "fixed_request_generator_"

    def __init__(self, prefill_tokens: int, decode_tokens: int, cap: int = 8192) -> None:
        super().__init__(cap)
        self.prefill_tokens = require_int_at_least(
            prefill_tokens, 1, "--fixed-request-generator-prefill-tokens"
        )
        self.decode_tokens = require_int_at_least(
            decode_tokens, 1, "--fixed-request-generator-decode-tokens"
        )

    def _raw_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.full(n, self.prefill_tokens, dtype=np.int64),
            np.full(n, self.decode_tokens, dtype=np.int64),
        )

    @classmethod
    def from_config(cls, params: FixedParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> FixedLengths:
        return cls(params.prefill_tokens, params.decode_tokens,
                   cap=cfg.request_generator_max_tokens)


@dataclass(frozen=True)
class TraceLengthParams:
    trace_file: str | None = option(None, "CSV with num_prefill_tokens and num_decode_tokens "
                                          "columns.", metavar="PATH")
    prefill_scale_factor: float = option(1.0, "Multiplies the trace's prompt token counts.")
    decode_scale_factor: float = option(1.0, "Multiplies the trace's output token counts.")
    cycle: bool = option(False, "Start the trace again from its first row when its rows run "
                                "out, instead of ending the schedule there.")


@register("trace")
class TraceLengths(LengthGenerator):
    """Replays a trace's token counts in file order, scaled.

    ``p' = max(1, floor(p * prefill_scale_factor + 1/2))``, likewise for decode. Successive
    calls continue where the previous stopped; when rows run out, fewer are returned, or with
    ``cycle`` the trace starts over (a 100k-request run from a 30k-row trace).
    """

    params = TraceLengthParams
    params_prefix = "trace_request_length_generator_"

    def __init__(
        self,
        trace_file: str,
        prefill_scale_factor: float = 1.0,
        decode_scale_factor: float = 1.0,
        cap: int = 8192,
        cycle: bool = False,
    ) -> None:
        super().__init__(cap)
        self.cycle = cycle
        self.prefill_scale_factor = require_positive(
            prefill_scale_factor, "--trace-request-length-generator-prefill-scale-factor"
        )
        self.decode_scale_factor = require_positive(
            decode_scale_factor, "--trace-request-length-generator-decode-scale-factor"
        )
        trace = read_length_trace(trace_file)
        self.trace_file = trace_file
        self._prefill = _scale(trace.prefill, self.prefill_scale_factor)
        self._decode = _scale(trace.decode, self.decode_scale_factor)
        self._next = 0

    def __len__(self) -> int:
        return len(self._prefill)

    def _raw_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cycle:
            rows = np.arange(self._next, self._next + n) % len(self._prefill)
        else:
            rows = slice(self._next, self._next + n)
        prefill, decode = self._prefill[rows].copy(), self._decode[rows].copy()
        self._next += len(prefill)
        return prefill, decode

    @classmethod
    def from_config(cls, params: TraceLengthParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> TraceLengths:
        if not params.trace_file:
            raise UserError(
                "--trace-request-length-generator-trace-file is required when "
                "--request-length-generator-provider is trace"
            )
        return cls(params.trace_file, params.prefill_scale_factor, params.decode_scale_factor,
                   cap=cfg.request_generator_max_tokens, cycle=params.cycle)


def _scale(tokens: np.ndarray, factor: float) -> np.ndarray:
    return np.maximum(np.floor(tokens * factor + 0.5), 1).astype(np.int64)


def make_length_generator(cfg: WorkloadConfig, rng: np.random.Generator) -> LengthGenerator:
    """The generator the config selects, its parameters checked."""
    from etalon.registry import registry

    generator = registry("length_generator").get(cfg.request_length_generator_provider)
    return generator.from_config(cfg.lengths, cfg, rng)
