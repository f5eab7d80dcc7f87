"""Drives the engine with the wall clock and hands each request's tokens to its HTTP stream."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

from etalon.engine import Engine, Sequence


MAX_CATCH_UP_S = 0.005  # oversleep up to this is absorbed; a longer stall is real lateness
#: The engine's wall clock. Not ``loop.time()``: under uvloop that is libuv's millisecond clock,
#: cached at the start of each loop iteration, which would start steps up to ~1 ms "early".
clock = time.monotonic


class QueueFull(Exception):
    """The engine's waiting queue is at its bound (the server answers 429)."""


@dataclass
class TokenEvent:
    """``count`` tokens became available at ``clock()`` time ``at``; ``done`` closes the stream."""

    count: int
    at: float
    done: bool = False


class EngineRunner:
    """Runs engine steps on the event loop: plan, sleep for the step's modelled duration, apply.

    Each request gets an ``asyncio.Queue`` of ``TokenEvent``s; the HTTP handler streams from it.
    """

    def __init__(self, engine: Engine, max_queue: int = 1024):
        self.engine = engine
        self.max_queue = max_queue
        self._ids = itertools.count()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def submit(self, prompt_tokens: int, output_tokens: int,
               block_hashes: list[int] | None = None) -> Sequence:
        if len(self.engine.waiting) >= self.max_queue:
            raise QueueFull(f"queue full ({self.max_queue} waiting)")
        now = clock()
        seq = Sequence(next(self._ids), prompt_tokens, output_tokens, now, tag=asyncio.Queue(),
                       block_hashes=block_hashes)
        self.engine.add(seq)
        self._wakeup.set()
        return seq

    def abort(self, seq: Sequence) -> None:
        """Drops a request whose client went away, freeing its KV blocks."""
        self.engine.abort(seq)

    async def _run(self) -> None:
        """Steps back to back on the modelled timeline: a step that follows another starts at the
        previous one's planned end, so event-loop wake-up jitter does not accumulate into a
        slower engine than the model (and the simulator) describe."""
        planned_end: float | None = None
        while True:
            now = clock()
            if planned_end is not None and now - planned_end < MAX_CATCH_UP_S:
                now = planned_end
            planned_end = None
            result = self.engine.schedule(now)
            if result is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if isinstance(result, float):  # a batching window: wake at its end or on arrival
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), max(0.0, result - now))
                except asyncio.TimeoutError:
                    pass
                continue
            end = result.start + result.duration
            delay = end - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            planned_end = end
            outcome = self.engine.complete(result, clock())
            for seq, count in outcome.emitted:
                seq.tag.put_nowait(TokenEvent(count, end))
            for seq in outcome.decoded:
                seq.tag.put_nowait(TokenEvent(outcome.decode_steps, end))
            for seq in outcome.finished:
                seq.tag.put_nowait(TokenEvent(0, end, done=True))
