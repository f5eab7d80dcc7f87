"""Spreads a schedule over load generators — Ray actors, or threads of this process — and
collects their records as they finish.

Request ``i`` goes to generator ``i % n``. Every generator anchors to one shared wall-clock start
time, so together they replay the single schedule computed up front.

A session's turns all go to generator ``session_id % n`` (they are one conversation). A closed
loop's users are dealt round-robin too: user ``u`` runs on generator ``u % n``, and request
``i`` belongs to user ``i % users``, so each generator's share of requests matches its share of
users (a generator with fewer users would otherwise run dry later or sooner than the rest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from etalon.client.base import ClientConfig
from etalon.client.dispatcher import LoadGenerator
from etalon.workload.intervals import ClosedLoop
from etalon.workload.request import Request
from etalon.workload.sessions import Sessions

START_LEAD_S = 0.5  # head start between "go" and the first slot, so every generator is ready


class _Handle(Protocol):
    def prepare(self, requests: list[Request]) -> int: ...
    def start(self, start_wall: float, stop_after: float | None) -> dict: ...
    def drain(self) -> list[dict]: ...
    def progress(self) -> dict: ...
    def stop(self) -> None: ...


@dataclass
class PoolSpec:
    client_name: str
    client_config: ClientConfig
    num_clients: int
    concurrency_per_client: int
    tokenizer: str | None
    seed: int
    use_ray: bool = True
    ray_address: str | None = None
    closed_loop: ClosedLoop | None = None
    sessions: Sessions | None = None

    @property
    def num_generators(self) -> int:
        """Generators that get work: no more than a closed loop's users."""
        if self.closed_loop is None:
            return self.num_clients
        return min(self.num_clients, self.closed_loop.users)

    def loop_of(self, generator: int) -> ClosedLoop | None:
        """The closed loop that generator ``generator`` runs: its share of the users."""
        if self.closed_loop is None:
            return None
        n, users = self.num_generators, self.closed_loop.users
        return ClosedLoop(users // n + (generator < users % n), self.closed_loop.think_time_s)

    def shares(self, requests: list[Request]) -> list[list[Request]]:
        """Each generator's requests, in schedule order."""
        n = self.num_generators
        if self.sessions is not None:  # a session's turns stay together, on one generator
            return [[r for r in requests if r.session_id % n == g] for g in range(n)]
        if self.closed_loop is None:
            return [requests[i::n] for i in range(n)]
        users = self.closed_loop.users
        return [[r for i, r in enumerate(requests) if (i % users) % n == g] for g in range(n)]


class _RayHandle:
    """Calls a Ray actor's methods synchronously (they are quick: the work runs in its thread)."""

    def __init__(self, actor):
        import ray

        self._ray, self._actor = ray, actor

    def __getattr__(self, name: str):
        method = getattr(self._actor, name)
        return lambda *a, **k: self._ray.get(method.remote(*a, **k))


def init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    else:
        ray.init(include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}})


def _make_handles(spec: PoolSpec) -> list[_Handle]:
    kwargs = [dict(client_id=i, max_concurrency=spec.concurrency_per_client,
                   tokenizer=spec.tokenizer, seed=spec.seed, closed_loop=spec.loop_of(i),
                   sessions=spec.sessions)
              for i in range(spec.num_generators)]
    if not spec.use_ray:
        return [LoadGenerator(spec.client_name, spec.client_config, **kw) for kw in kwargs]
    import ray

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    init_ray(spec.ray_address)
    # I/O-bound actors take no CPU slot, so Ray's SPREAD does not spread them: on a two-node
    # cluster it put all four on one node in 2 of 3 tries, and a *soft* node affinity did the
    # same. Generator i goes to alive node i mod n, pinned.
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
    actor_cls = ray.remote(num_cpus=0)(LoadGenerator)
    return [_RayHandle(actor_cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                nodes[i % len(nodes)], soft=False)).remote(spec.client_name, spec.client_config, **kw))
            for i, kw in enumerate(kwargs)]


def _started(handle, start_wall: float, time_limit: float | None) -> dict:
    """Starts one generator; adds its wall clock's offset from the driver's.

    Every generator anchors its monotonic clock to the shared ``start_wall``, so records from
    several hosts line up only as well as the hosts' wall clocks agree. The offset is estimated
    the NTP way: the generator's ``wall_now`` against the midpoint of the call, give or take
    half its round trip (``clock_offset_uncertainty_s``); on one host it is ~0."""
    sent = time.time()
    info = handle.start(start_wall, time_limit)
    back = time.time()
    info["clock_offset_s"] = info["wall_now"] - (sent + back) / 2
    info["clock_offset_uncertainty_s"] = (back - sent) / 2
    return info


@dataclass
class PoolResult:
    clock_sync: list[dict] = field(default_factory=list)  # each generator's clock offsets
    start_wall: float = 0.0  # the run's t = 0 on the wall clock
    interrupted: bool = False
    timed_out: bool = False
    not_dispatched: int = 0


def run_pool(spec: PoolSpec, requests: list[Request], on_record: Callable[[dict], None], *,
             time_limit: float | None = None, poll_s: float = 0.2,
             on_progress: Callable[[dict, float], None] | None = None) -> PoolResult:
    """Runs the schedule to completion (or ``time_limit`` seconds, or Ctrl-C).

    ``on_record`` receives each finished record (as a dict) once, as soon as it is collected.
    """
    handles = _make_handles(spec)
    for handle, share in zip(handles, spec.shares(requests)):
        handle.prepare(share)
    result = PoolResult()
    start_wall = result.start_wall = time.time() + START_LEAD_S
    result.clock_sync = [_started(h, start_wall, time_limit) for h in handles]
    done = [False] * len(handles)
    dispatched = [0] * len(handles)

    def collect() -> None:
        totals = {"completed": 0, "errors": 0, "in_flight": 0, "dispatched": 0}
        for i, h in enumerate(handles):
            for rec in h.drain():
                on_record(rec)
            prog = h.progress()
            done[i] = prog["done"]
            dispatched[i] = prog["dispatched"]
            for key in totals:
                totals[key] += prog[key]
        if on_progress is not None:
            on_progress(totals, time.time() - start_wall)

    try:
        while not all(done):
            time.sleep(poll_s)
            collect()
    except KeyboardInterrupt:
        result.interrupted = True
        for h in handles:
            h.stop()
        deadline = time.time() + 10.0
        while not all(done) and time.time() < deadline:
            time.sleep(0.05)
            collect()
    collect()
    if time_limit is not None and time.time() - start_wall >= time_limit:
        result.timed_out = True
    result.not_dispatched = len(requests) - sum(dispatched)
    if spec.use_ray:
        import ray

        for h in handles:
            ray.kill(h._actor)
    return result
