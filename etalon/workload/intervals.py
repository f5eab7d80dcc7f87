"""Inter-arrival time generators for open-loop load, and the closed-loop users' entry.

``intervals(n)`` returns up to ``n`` gaps in seconds. The schedule (``schedule.py``) puts the
first request at ``t = 0`` and request ``i`` at the sum of the first ``i`` gaps, so ``n``
requests need ``n - 1`` gaps. A trace generator returns fewer gaps when its rows run out.

``closed_loop`` is the one generator that is not an arrival process: its users send the next
request when their last one returned, so its schedule only orders the requests (all at
``t = 0``) and the load generator and the simulator time the sends (``ClosedLoop``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from etalon.cli_errors import UserError
from etalon.options import option
from etalon.registry import raw

from .checks import require_int_at_least, require_non_negative, require_positive
from .traces import read_arrival_times

if TYPE_CHECKING:
    from .config import WorkloadConfig


class IntervalGenerator(ABC):
    """Produces inter-arrival gaps (seconds, >= 0).

    A generator declares its settings as a ``params`` config class; they become the flags
    ``--<params_prefix><field>`` (and the same keys in files) of every command with a workload.
    """

    params: ClassVar[type | None] = None
    params_prefix: ClassVar[str] = ""

    @abstractmethod
    def intervals(self, n: int) -> np.ndarray:
        """Up to ``n`` gaps; fewer only when a finite source (a trace) runs out."""

    @classmethod
    @abstractmethod
    def from_config(cls, params: Any, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> IntervalGenerator:
        """Builds the generator from its own ``params`` (None without) and the workload."""


register = raw("interval_generator").register


def _count(n: int) -> int:
    return require_int_at_least(n, 0, "number of intervals")


@dataclass(frozen=True)
class PoissonParams:
    qps: float = option(1.0, "Mean request rate (requests/s) of the Poisson arrivals.")


@register("poisson")
class PoissonIntervals(IntervalGenerator):
    """Exponential gaps with mean ``1/qps``: a Poisson arrival process, uncapped."""

    params = PoissonParams
    params_prefix = "poisson_request_interval_generator_"

    def __init__(self, qps: float, rng: np.random.Generator) -> None:
        self.qps = require_positive(qps, "--poisson-request-interval-generator-qps")
        self.rng = rng

    def intervals(self, n: int) -> np.ndarray:
        return self.rng.exponential(1.0 / self.qps, size=_count(n))

    @classmethod
    def from_config(cls, params: PoissonParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> PoissonIntervals:
        return cls(params.qps, rng)


@dataclass(frozen=True)
class GammaParams:
    qps: float = option(1.0, "Mean request rate (requests/s) of the gamma arrivals.")
    cv: float = option(0.5, "Coefficient of variation of the gamma inter-arrival gaps "
                            "(1 = Poisson).")


@register("gamma")
class GammaIntervals(IntervalGenerator):
    """Gamma gaps with mean ``1/qps`` and coefficient of variation ``cv``.

    shape ``k = 1/cv^2`` and scale ``1/(qps k)``, so mean ``k * scale = 1/qps`` and
    std/mean ``= 1/sqrt(k) = cv``. ``cv = 1`` is Poisson; ``cv > 1`` is burstier.
    """

    params = GammaParams
    params_prefix = "gamma_request_interval_generator_"

    def __init__(self, qps: float, cv: float, rng: np.random.Generator) -> None:
        self.qps = require_positive(qps, "--gamma-request-interval-generator-qps")
        self.cv = require_positive(cv, "--gamma-request-interval-generator-cv")
        self.shape = 1.0 / (self.cv * self.cv)
        self.scale = 1.0 / (self.qps * self.shape)
        self.rng = rng

    def intervals(self, n: int) -> np.ndarray:
        return self.rng.gamma(self.shape, self.scale, size=_count(n))

    @classmethod
    def from_config(cls, params: GammaParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> GammaIntervals:
        return cls(params.qps, params.cv, rng)


@register("static")
class StaticIntervals(IntervalGenerator):
    """All gaps zero: every request is due at ``t = 0`` (a burst, back to back)."""

    def intervals(self, n: int) -> np.ndarray:
        return np.zeros(_count(n))

    @classmethod
    def from_config(cls, params: None, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> StaticIntervals:
        return cls()


@dataclass(frozen=True)
class TraceIntervalParams:
    trace_file: str | None = option(None, "CSV with an arrival_time or arrived_at column "
                                          "(seconds).", metavar="PATH")
    time_scale_factor: float = option(1.0, "Multiplies the trace's gaps: 2.0 runs it at half "
                                           "the rate, 0.5 at double.")


@register("trace")
class TraceIntervals(IntervalGenerator):
    """Replays the arrival times of a trace.

    Gaps are the differences of the *sorted* arrival times, each multiplied by
    ``time_scale_factor``: 2.0 stretches time (half the request rate), 0.5 compresses it
    (double the rate). A trace of ``m`` rows gives ``m - 1`` gaps, i.e. ``m`` requests.
    """

    params = TraceIntervalParams
    params_prefix = "trace_request_interval_generator_"

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
    def from_config(cls, params: TraceIntervalParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> TraceIntervals:
        if not params.trace_file:
            raise UserError(
                "--trace-request-interval-generator-trace-file is required when "
                "--request-interval-generator-provider is trace"
            )
        return cls(params.trace_file, params.time_scale_factor)


@dataclass(frozen=True)
class ClosedLoopParams:
    users: int = option(1, "Concurrent users, each sending its next request when its last one "
                           "finished (closed loop: the server's speed sets the rate).")
    think_time_s: float = option(0.0, "Seconds a user waits between a response's end and its "
                                      "next request.")


@dataclass(frozen=True)
class ClosedLoop:
    """How a closed-loop run times its sends: ``users`` requests in flight at most, each user's
    next request ``think_time_s`` after its previous response ended. Requests go to users in
    schedule order as they free up, so the run sends them in that order."""

    users: int
    think_time_s: float = 0.0


@register("closed_loop")
class ClosedLoopUsers(IntervalGenerator):
    """Closed-loop users: no arrival process. The schedule is the order requests are taken in
    (every scheduled time 0); the achieved rate is users / (latency + think time)."""

    params = ClosedLoopParams
    params_prefix = "closed_loop_request_interval_generator_"

    def __init__(self, users: int, think_time_s: float) -> None:
        self.loop = ClosedLoop(
            require_int_at_least(users, 1, "--closed-loop-request-interval-generator-users"),
            require_non_negative(think_time_s,
                                 "--closed-loop-request-interval-generator-think-time-s"))

    def intervals(self, n: int) -> np.ndarray:
        return np.zeros(_count(n))

    @classmethod
    def from_config(cls, params: ClosedLoopParams, cfg: WorkloadConfig,
                    rng: np.random.Generator) -> ClosedLoopUsers:
        return cls(params.users, params.think_time_s)


def make_interval_generator(cfg: WorkloadConfig, rng: np.random.Generator) -> IntervalGenerator:
    """The generator the config selects, its parameters checked."""
    from etalon.registry import registry

    generator = registry("interval_generator").get(cfg.request_interval_generator_provider)
    return generator.from_config(cfg.interval, cfg, rng)
