"""Inter-arrival time generators for open-loop load.

``intervals(n)`` returns up to ``n`` gaps in seconds. The schedule (``schedule.py``) puts the
first request at ``t = 0`` and request ``i`` at the sum of the first ``i`` gaps, so ``n``
requests need ``n - 1`` gaps. A trace generator returns fewer gaps when its rows run out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from .checks import require_int_at_least, require_positive
from .registry import Registry
from .traces import read_arrival_times

if TYPE_CHECKING:
    from .config import WorkloadConfig


class IntervalGenerator(ABC):
    """Produces inter-arrival gaps (seconds, >= 0)."""

    @abstractmethod
    def intervals(self, n: int) -> np.ndarray:
        """Up to ``n`` gaps; fewer only when a finite source (a trace) runs out."""

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: WorkloadConfig, rng: np.random.Generator) -> IntervalGenerator:
        """Builds the generator from the shared workload flags."""


INTERVAL_GENERATORS: Registry[IntervalGenerator] = Registry("request interval generator")


def _count(n: int) -> int:
    return require_int_at_least(n, 0, "number of intervals")


@INTERVAL_GENERATORS.register("poisson")
class PoissonIntervals(IntervalGenerator):
    """Exponential gaps with mean ``1/qps``: a Poisson arrival process, uncapped."""

    def __init__(self, qps: float, rng: np.random.Generator) -> None:
        self.qps = require_positive(qps, "--poisson-request-interval-generator-qps")
        self.rng = rng

    def intervals(self, n: int) -> np.ndarray:
        return self.rng.exponential(1.0 / self.qps, size=_count(n))

    @classmethod
    def from_config(cls, cfg: WorkloadConfig, rng: np.random.Generator) -> PoissonIntervals:
        return cls(cfg.poisson_request_interval_generator_qps, rng)


@INTERVAL_GENERATORS.register("gamma")
class GammaIntervals(IntervalGenerator):
    """Gamma gaps with mean ``1/qps`` and coefficient of variation ``cv``.

    shape ``k = 1/cv^2`` and scale ``1/(qps k)``, so mean ``k * scale = 1/qps`` and
    std/mean ``= 1/sqrt(k) = cv``. ``cv = 1`` is Poisson; ``cv > 1`` is burstier.
    """

    def __init__(self, qps: float, cv: float, rng: np.random.Generator) -> None:
        self.qps = require_positive(qps, "--gamma-request-interval-generator-qps")
        self.cv = require_positive(cv, "--gamma-request-interval-generator-cv")
        self.shape = 1.0 / (self.cv * self.cv)
        self.scale = 1.0 / (self.qps * self.shape)
        self.rng = rng

    def intervals(self, n: int) -> np.ndarray:
        return self.rng.gamma(self.shape, self.scale, size=_count(n))

    @classmethod
    def from_config(cls, cfg: WorkloadConfig, rng: np.random.Generator) -> GammaIntervals:
        return cls(
            cfg.gamma_request_interval_generator_qps,
            cfg.gamma_request_interval_generator_cv,
            rng,
        )


@INTERVAL_GENERATORS.register("static")
class StaticIntervals(IntervalGenerator):
    """All gaps zero: every request is due at ``t = 0`` (a burst, back to back)."""

    def intervals(self, n: int) -> np.ndarray:
        return np.zeros(_count(n))

    @classmethod
    def from_config(cls, cfg: WorkloadConfig, rng: np.random.Generator) -> StaticIntervals:
        return cls()


@INTERVAL_GENERATORS.register("trace")
class TraceIntervals(IntervalGenerator):
    """Replays the arrival times of a trace.

    Gaps are the differences of the *sorted* arrival times, each multiplied by
    ``time_scale_factor``: 2.0 stretches time (half the request rate), 0.5 compresses it
    (double the rate). A trace of ``m`` rows gives ``m - 1`` gaps, i.e. ``m`` requests.
    """

    def __init__(self, trace_file: str, time_scale_factor: float = 1.0) -> None:
        self.time_scale_factor = require_positive(
            time_scale_factor, "--trace-request-interval-generator-time-scale-factor"
        )
        times = np.sort(read_arrival_times(trace_file))
        self.trace_file = trace_file
        self._gaps = np.diff(times) * self.time_scale_factor
        self._next = 0

    def intervals(self, n: int) -> np.ndarray:
        """Successive calls continue where the previous one stopped."""
        take = self._gaps[self._next : self._next + _count(n)].copy()
        self._next += len(take)
        return take

    @classmethod
    def from_config(cls, cfg: WorkloadConfig, rng: np.random.Generator) -> TraceIntervals:
        if not cfg.trace_request_interval_generator_trace_file:
            raise ValueError(
                "--trace-request-interval-generator-trace-file is required when "
                "--request-interval-generator-provider is trace"
            )
        return cls(
            cfg.trace_request_interval_generator_trace_file,
            cfg.trace_request_interval_generator_time_scale_factor,
        )


def make_interval_generator(cfg: WorkloadConfig, rng: np.random.Generator) -> IntervalGenerator:
    """The generator the config selects, its parameters checked."""
    return INTERVAL_GENERATORS.get(cfg.request_interval_generator_provider).from_config(cfg, rng)
