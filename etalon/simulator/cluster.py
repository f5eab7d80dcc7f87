"""Replicas, routers and the KV-transfer link of a simulated deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from etalon.cli_errors import UserError
from etalon.engine import Engine, Step
from etalon.registry import raw, registry


@dataclass
class Replica:
    """One engine plus what the event loop needs to know about its step in flight."""

    replica_id: int
    engine: Engine
    pool: str = "serve"  # "serve" (aggregated), "prefill" or "decode"
    memory: dict | None = None  # per-device memory picture (bytes) when the model is known
    outstanding: int = 0  # routed here and not finished: what least-outstanding routing reads
    step: Step | None = None
    times: np.ndarray | None = None  # end times of the decode steps of a fast-forward segment
    version: int = 0  # bumps when a segment is cut short, so its old completion event is stale
    # time series, one sample per scheduled step or segment: (t, batch, waiting, kv blocks used,
    # prompt tokens looked up in the prefix cache so far, and found there so far)
    samples: list[tuple[float, int, int, int, int, int]] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return self.step is not None


Router = Callable[[list[Replica]], Replica]


def _round_robin() -> Router:
    state = {"next": 0}

    def route(replicas: list[Replica]) -> Replica:
        r = replicas[state["next"] % len(replicas)]
        state["next"] += 1
        return r
    return route


def _least_outstanding() -> Router:
    def route(replicas: list[Replica]) -> Replica:
        return min(replicas, key=lambda r: (r.outstanding, r.replica_id))
    return route


def _random(rng: np.random.Generator) -> Router:
    def route(replicas: list[Replica]) -> Replica:
        return replicas[int(rng.integers(len(replicas)))]
    return route


# A router factory takes the simulation's seeded stream and returns ``route(replicas)``.
raw("router").register("round_robin", lambda rng: _round_robin())
raw("router").register("least_outstanding", lambda rng: _least_outstanding())
raw("router").register("random", _random)


def make_router(name: str, rng: np.random.Generator) -> Router:
    return registry("router").get(name)(rng)


@dataclass
class Link:
    """A point-to-point link that sends one KV cache at a time, first come first served.

    A transfer of ``b`` bytes occupies the link for ``b / bandwidth`` seconds and arrives
    ``latency`` seconds after it leaves the link.
    """

    bandwidth: float  # bytes/s
    latency: float  # s
    free_at: float = 0.0
    bytes_sent: float = 0.0
    busy_time: float = 0.0

    def __post_init__(self) -> None:
        if self.bandwidth <= 0 or self.latency < 0:
            raise UserError(f"transfer link needs bandwidth > 0 and latency >= 0, "
                             f"got {self.bandwidth} B/s and {self.latency} s")

    def send(self, now: float, nbytes: float) -> float:
        """Queues a transfer at ``now``; returns when it arrives."""
        start = max(now, self.free_at)
        occupy = nbytes / self.bandwidth
        self.free_at = start + occupy
        self.bytes_sent += nbytes
        self.busy_time += occupy
        return self.free_at + self.latency
