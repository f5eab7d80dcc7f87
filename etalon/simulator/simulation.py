"""The discrete-event loop: engines on a virtual clock, aggregated or disaggregated.

Events live in a heap keyed by (time, priority, sequence number), so equal times resolve the
same way every run. A decode-only step is stable until a sequence finishes or the KV cache fills,
so a replica runs such steps as one *segment* (one event, vectorised times). An arrival routed to
a replica in the middle of a segment cuts the segment at the first step boundary after it — the
same moment a step-by-step loop would have let the new request in.

In a closed loop (``run(..., closed_loop=...)``) the first ``users`` requests are sent at 0 and
each finished request sends the next one of the schedule a think time after its end, as the
live load generator's users do; those arrivals go through the heap like any other event. In
multi-turn sessions (``sessions=...``) a session's first turn arrives as scheduled and each
finished turn sends the session's next one a think time after its end.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from etalon.engine import Sequence, Step
from etalon.record_table import RecordTable
from etalon.records import RequestRecord
from etalon.simulator.cluster import Link, Replica, Router
from etalon.workload.intervals import ClosedLoop
from etalon.workload.request import Request
from etalon.workload.sessions import Sessions

STEP_DONE, TRANSFER_DONE, WAKE = 0, 1, 3  # arrivals sort at priority 2
ARRIVAL = 2
MAX_SEGMENT_STEPS = 4096


class _TokenTimes:
    """Finished requests' token times, packed into large shared blocks; a request's times are a
    view of its block until the run's table joins them.

    One small array per request (~440 floats for ShareGPT) lives on the C heap, which does
    not give freed memory back to the system: 100k requests would keep ~350 MB of RSS after
    the table has copied them. Blocks this size are mapped and unmapped whole, so the memory
    returns once the views are gone.
    """

    BLOCK = 1 << 20  # float64s: 8 MiB

    def __init__(self) -> None:
        self._block = np.empty(0)
        self._used = 0

    def take(self, seq: Sequence) -> np.ndarray:
        n = seq.generated
        if n > len(self._block) - self._used:
            self._block, self._used = np.empty(max(self.BLOCK, n)), 0
        view = self._block[self._used:self._used + n]
        self._used += n
        return seq.token_times(out=view)


class _Finished:
    """The finished (and rejected) requests as columns: one tuple of :data:`FIELDS` per
    request and its token times (a view of a shared block), in the order they finished. The
    run's result is the table of these, in request order: no record objects (what a
    100k-request simulation spent ~1.5 s making and then taking apart into columns)."""

    FIELDS = ("request_id", "scheduled_at", "sent_at", "requested_prompt_tokens",
              "requested_output_tokens", "replica_id", "session_id", "turn", "prefix_group",
              "prefix_tokens", "completed_at", "num_prompt_tokens", "prompt_tokens_source",
              "num_output_tokens", "output_tokens_source", "finish_reason",
              "finish_reason_source", "error_type", "error_message")
    _EMPTY = np.empty(0)

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.times: list[np.ndarray] = []

    def add(self, row: tuple, times: np.ndarray | None) -> None:
        self.rows.append(row)
        self.times.append(self._EMPTY if times is None else times)

    def table(self) -> RecordTable:
        """Every request, in request-id order; each chunk is one token."""
        order = sorted(range(len(self.rows)), key=lambda i: self.rows[i][0])
        columns = zip(*(self.rows[i] for i in order)) if order else ((),) * len(self.FIELDS)
        values = {name: list(col) for name, col in zip(self.FIELDS, columns)}
        return RecordTable.from_values(values, [self.times[i] for i in order])


@dataclass
class SimResult:
    """``table``: every request's record as columns, in request order (what metrics, files
    and reports read)."""

    table: RecordTable
    replicas: list[Replica]
    link: Link | None
    end_time: float
    events: int = 0
    rejected: list[int] = field(default_factory=list)

    @cached_property
    def records(self) -> list[RequestRecord]:
        """The records as objects, for code that walks requests one by one."""
        return self.table.to_records()


class Simulation:
    """Aggregated: ``serve`` replicas. Disaggregated: ``prefill`` and ``decode`` replicas joined
    by ``link``; the first token reaches the user once the KV cache has crossed the link."""

    def __init__(self, serve: list[Replica] | None = None, *, router: Router,
                 prefill: list[Replica] | None = None, decode: list[Replica] | None = None,
                 decode_router: Router | None = None, link: Link | None = None,
                 kv_bytes_per_token: float = 0.0):
        self.disaggregated = bool(prefill)
        if self.disaggregated and not (decode and link is not None):
            raise ValueError("a disaggregated simulation needs prefill and decode replicas and a link")
        if not self.disaggregated and not serve:
            raise ValueError("a simulation needs at least one replica")
        self.front = prefill if self.disaggregated else serve
        self.decode = decode or []
        self.router = router
        self.decode_router = decode_router or router
        self.link = link
        self.kv_bytes_per_token = kv_bytes_per_token
        self.replicas = (prefill or []) + (decode or []) + (serve or [])
        # Time from a request's arrival to its entry into a front replica's engine: the front
        # end a live server has (HTTP, tokenization), as the front pool's perf model measured it.
        self.request_path_s = self.front[0].engine.perf.request_path_s
        self._heap: list = []
        self._seq = itertools.count()
        self._requests: dict[int, Request] = {}
        self._token_times = _TokenTimes()
        self._finished = _Finished()
        self._rejected: list[int] = []
        self._unsent: deque[Request] = deque()  # a closed loop's requests no user took yet
        self._later_turns: dict[tuple[int, int], Request] = {}  # (session, turn) not yet sent
        self._think_s = 0.0
        self.now = 0.0
        self.events = 0

    # -- the loop ----------------------------------------------------------------------------

    def run(self, requests: list[Request], closed_loop: ClosedLoop | None = None,
            sessions: Sessions | None = None) -> SimResult:
        arrivals = sorted(requests, key=lambda r: (r.arrival_time, r.request_id))
        if sessions is not None:
            self._think_s = sessions.think_time_s
            self._later_turns = {(r.session_id, r.turn): r for r in arrivals if r.turn > 0}
            arrivals = [r for r in arrivals if r.turn == 0]
        if closed_loop is not None:
            self._unsent = deque(arrivals[closed_loop.users:])
            self._think_s = closed_loop.think_time_s
            arrivals = [replace(r, arrival_time=0.0) for r in arrivals[:closed_loop.users]]
        self._requests = {r.request_id: r for r in arrivals}
        path = self.request_path_s
        i, n = 0, len(arrivals)
        heap = self._heap
        while i < n or heap:
            if i < n and (not heap or (arrivals[i].arrival_time + path, ARRIVAL) < heap[0][:2]):
                req = arrivals[i]
                i += 1
                self.now = req.arrival_time + path
                self._arrive(req)
            else:
                t, _prio, _n, handler, args = heapq.heappop(heap)
                self.now = t
                handler(*args)
            self.events += 1
        table, self._finished = self._finished.table(), _Finished()  # (frees the blocks' views)
        return SimResult(table, self.replicas, self.link, self.now, self.events, self._rejected)

    def _push(self, t: float, prio: int, handler, *args) -> None:
        heapq.heappush(self._heap, (t, prio, next(self._seq), handler, args))

    # -- arrivals and routing ----------------------------------------------------------------

    def _arrive(self, req: Request) -> None:
        out_tokens = 1 if self.disaggregated else req.output_tokens
        seq = Sequence(req.request_id, req.prompt_tokens, out_tokens, self.now,  # engine's view
                       block_hashes=self.front[0].engine.block_hashes_of(req))
        self._enqueue(self.router(self.front), seq)

    def _enqueue(self, replica: Replica, seq: Sequence) -> None:
        try:
            replica.engine.add(seq)
        except ValueError as exc:  # can never fit this replica's KV cache
            self._rejected.append(seq.request_id)
            self._finish(seq, None, error=str(exc))
            return
        seq.tag = replica
        replica.outstanding += 1
        self._kick(replica)

    def _kick(self, replica: Replica) -> None:
        """Something arrived at ``replica``: start a step, or cut its decode segment short."""
        if not replica.busy:
            self._start_step(replica)
            return
        times = replica.times
        if times is None or len(times) == 1:
            return
        # Step j starts at times[j - 1] (step 0 at step.start); keep the steps started by now.
        keep = 1 + int(np.searchsorted(times[:-1], self.now, side="right"))
        if keep < len(times):
            replica.times = times[:keep]
            replica.version += 1
            self._push(float(replica.times[-1]), STEP_DONE, self._step_done, replica, replica.version)

    # -- steps -------------------------------------------------------------------------------

    def _start_step(self, replica: Replica) -> None:
        engine = replica.engine
        result = engine.schedule(self.now)
        if result is None or isinstance(result, float):
            self._sample(replica, 0)  # idle from now: nothing runs until an arrival or the wake
        if result is None:
            return
        if isinstance(result, float):
            replica.version += 1
            self._push(result, WAKE, self._wake, replica, replica.version)
            return
        step: Step = result
        if step.plan.decode_only:
            k = min(engine.decode_horizon(step.plan), MAX_SEGMENT_STEPS)
            replica.times = engine.decode_times(step, k)
            end = float(replica.times[-1])
        else:
            replica.times = None
            end = self.now + step.duration
        replica.step = step
        replica.version += 1
        self._sample(replica, len(step.plan.decode) + len(step.plan.prefill))
        self._push(end, STEP_DONE, self._step_done, replica, replica.version)

    def _sample(self, replica: Replica, batch: int) -> None:
        """The replica's state from now on: a step's batch when one starts, 0 when the engine
        goes idle (else an idle stretch would read as the last step's batch and KV use). An idle
        engine that stays idle adds no sample."""
        engine = replica.engine
        sample = (self.now, batch, len(engine.waiting), engine.pool.used,
                  engine.prefix_query_tokens, engine.prefix_hit_tokens)
        last = replica.samples[-1] if replica.samples else None
        if batch == 0 and last is not None and last[1:] == sample[1:]:
            return
        replica.samples.append(sample)

    def _wake(self, replica: Replica, version: int) -> None:
        if version == replica.version and not replica.busy:
            self._start_step(replica)

    def _step_done(self, replica: Replica, version: int) -> None:
        if version != replica.version:
            return  # superseded by a shorter segment
        engine, step = replica.engine, replica.step
        if replica.times is not None:
            outcome = engine.fast_forward(step, replica.times)
        else:
            outcome = engine.complete(step, self.now)
        replica.step, replica.times = None, None
        for seq in outcome.finished:
            replica.outstanding -= 1
            if replica.pool == "prefill":
                arrive = self.link.send(self.now, seq.prompt_tokens * self.kv_bytes_per_token)
                self._push(arrive, TRANSFER_DONE, self._transferred, seq)
            else:
                self._finish(seq, replica)
        self._start_step(replica)

    def _transferred(self, prefilled: Sequence) -> None:
        req = self._requests[prefilled.request_id]
        if req.output_tokens == 1:
            prefilled.token_segments = [self.now]
            prefilled.finished_at = self.now
            self._finish(prefilled, prefilled.tag)
            return
        seq = Sequence(req.request_id, req.prompt_tokens, req.output_tokens, req.arrival_time)
        seq.num_computed = seq.prefill_target = req.prompt_tokens
        seq.generated = 1
        seq.token_segments = [self.now]  # the first token reaches the user with the KV cache
        self._enqueue(self.decode_router(self.decode), seq)

    # -- records -----------------------------------------------------------------------------

    def _finish(self, seq: Sequence, replica: Replica | None, error: str | None = None) -> None:
        """Keeps a finished (or rejected) request's record; in a closed loop its user sends the
        next request of the schedule a think time after this one ended, in a session the next
        turn follows (a failed turn ends its session: the conversation cannot go on)."""
        end = self._record(seq, replica, error)
        nxt = None
        if self._unsent:
            nxt = self._unsent.popleft()
        elif self._later_turns:  # a session goes on unless this turn failed
            done = self._requests[seq.request_id]
            nxt = self._later_turns.pop((done.session_id, done.turn + 1), None)
            nxt = nxt if error is None else None
        if nxt is not None:
            req = replace(nxt, arrival_time=end + self._think_s)
            self._requests[req.request_id] = req
            self._push(req.arrival_time + self.request_path_s, ARRIVAL, self._arrive, req)

    def _record(self, seq: Sequence, replica: Replica | None, error: str | None) -> float:
        """Adds the request's record (every token a chunk of one); returns when it ended."""
        req = self._requests[seq.request_id]
        session = req.session_id
        head = (req.request_id, req.arrival_time, req.arrival_time, req.prompt_tokens,
                req.output_tokens, replica.replica_id if replica is not None else None, session,
                req.turn if session is not None else None, req.prefix_group, req.prefix_tokens)
        if error is not None:
            self._finished.add(head + (None, None, None, None, None, None, None, "rejected",
                                       error), None)
            return self.now
        times = self._token_times.take(seq)
        self._finished.add(head + (seq.finished_at, req.prompt_tokens, "simulated", len(times),
                                   "simulated", "length", "simulated", None, None), times)
        return seq.finished_at
