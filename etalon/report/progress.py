"""A cheap live progress line for a running benchmark: completed, in flight, errors, rate.

It draws with tqdm, at most every ``min_interval_s`` seconds, and turns itself off (every call
a no-op) when told to or when its stream is not a terminal, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(...)`` as often as you like; ``close()`` once at the end (or use ``with``)."""

    def __init__(
        self,
        total: int | None = None,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        min_interval_s: float = 0.25,
        description: str = "requests",
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout
        is_tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self.enabled = enabled and is_tty
        self._min_interval_s = min_interval_s
        self._last_draw = float("-inf")
        self._bar = None
        self._pending: tuple[int, int, int, float] | None = None
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit="req", file=self._stream,
                             mininterval=min_interval_s, dynamic_ncols=True, leave=True)

    def update(self, completed: int, in_flight: int, errors: int, elapsed_s: float) -> None:
        """Shows the counts; ``completed`` excludes ``errors``, ``elapsed_s`` is run time (s).

        The achieved rate shown is requests sent (completed + errors + in flight) per second.
        """
        if self._bar is None:
            return
        self._pending = (completed, in_flight, errors, elapsed_s)
        now = time.monotonic()
        if now - self._last_draw >= self._min_interval_s:
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        if self._bar is None or self._pending is None:
            return
        completed, in_flight, errors, elapsed_s = self._pending
        sent = completed + errors + in_flight
        rate = sent / elapsed_s if elapsed_s > 0 else 0.0
        self._bar.n = completed + errors
        self._bar.set_postfix_str(
            f"ok {completed}, in flight {in_flight}, errors {errors}, sent {rate:.2f} req/s",
            refresh=False,
        )
        self._bar.refresh()

    def close(self) -> None:
        """Draws the last counts and releases the line; safe to call twice."""
        if self._bar is not None:
            self._draw()
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
