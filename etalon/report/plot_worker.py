"""A command's PNG plots drawn in a second process while it writes its other results.

matplotlib takes ~0.6 s to import and ~0.1 s a figure: a quarter of a 10k-request simulation
as a whole command. The plots are a view of results the command writes anyway and their specs
are small (``etalon.report.figures``), so the command starts a helper process first, which
imports matplotlib while the run goes on, hands it the specs, and writes its Parquet, CSV and
report while they are drawn. Without the helper (one CPU, a library caller, a helper that could
not start) the same files are drawn in process. A plot that fails is a warning: the results
beside it are already safe.

A live run (``run_benchmark``) draws in process: its helper would start either during the
measured load, taking CPU from the load generator, or after it, when importing matplotlib
(and the command's own module, as a spawned process does) takes longer than drawing in
process does (10k requests: 1.4 s to every output in process, 1.6-1.7 s with a helper).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from etalon.report.figures import PlotSpec


def _warm_up() -> None:
    import etalon.report.plots  # noqa: F401  (matplotlib: the cost the helper takes early)


def _draw(specs: dict[str, PlotSpec], out_dir: Path) -> dict[str, Path]:
    """Draws where it runs; named here so that the caller never imports matplotlib."""
    from etalon.report.plots import draw_all

    return draw_all(specs, out_dir)


def warn_not_drawn(exc: BaseException) -> None:
    """The one line a failed plot costs (the results beside it are safe)."""
    print(f"etalon: warning: plots were not written ({type(exc).__name__}: {exc})",
          file=sys.stderr)


class PlotWorker:
    """Draws plot specs, in a helper process when :meth:`start` got one, else in process.

    A helper draws as soon as it is handed the specs; in process they are drawn at
    :meth:`finish`, after the caller's results are written. Use as a context manager (or call
    :meth:`finish`): the helper is shut down either way, and :meth:`finish` waits for every
    plot and returns ``{"plot/<name>": path}`` of those drawn.
    """

    def __init__(self, pool: ProcessPoolExecutor | None = None):
        self._pool = pool
        self._pending: list[Future] = []
        self._later: list[tuple[dict[str, PlotSpec], Path]] = []  # drawn in process at finish
        self._drawn: dict[str, Path] = {}
        self.submitted: set[str] = set()  # the names of every plot handed over so far

    @classmethod
    def start(cls) -> "PlotWorker":
        """A worker with its own process where there is a second CPU, else an in-process one.
        The helper is spawned (not forked: the caller may hold threads, e.g. Arrow's pool)."""
        if (os.cpu_count() or 1) < 2:
            return cls()
        try:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            pool.submit(_warm_up)
        except (OSError, RuntimeError):
            return cls()
        return cls(pool)

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def submit(self, specs: dict[str, PlotSpec], out_dir: str | Path) -> None:
        """Has each spec drawn into ``out_dir/<name>.png``."""
        if not specs:
            return
        self.submitted.update(specs)
        if self._pool is not None:
            try:
                self._pending.append(self._pool.submit(_draw, specs, Path(out_dir)))
                return
            except RuntimeError:  # the helper died or was shut down: draw here instead
                self._pool = None
        self._later.append((specs, Path(out_dir)))

    def finish(self) -> dict[str, Path]:
        """Draws what is left to draw here, waits for the helper's plots; ``{"plot/<name>":
        path}`` of those drawn."""
        for specs, out_dir in self._later:
            try:
                self._drawn.update(_draw(specs, out_dir))
            except Exception as exc:  # plots are a view; the results beside them are safe
                warn_not_drawn(exc)
        for future in self._pending:
            try:
                self._drawn.update(future.result())
            except Exception as exc:  # a failed figure, or a helper that died (BrokenProcessPool)
                warn_not_drawn(exc)
        self._later.clear()
        self._pending.clear()
        self._stop()
        return {f"plot/{name}": path for name, path in self._drawn.items()}

    def _stop(self) -> None:
        """Ends the helper once every plot it was handed is in. Nothing is left for it to do,
        and a graceful exit (tearing down its interpreter and matplotlib) would keep the
        command waiting 0.15 s more."""
        if self._pool is not None:
            for worker in list((getattr(self._pool, "_processes", None) or {}).values()):
                worker.terminate()  # (a private attribute: the pool names no public way)
        # the pool's own thread reaps them (a second join here would race it for the exit status)
        self.close()

    def close(self) -> None:
        """Lets the helper go; plots not drawn yet are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "PlotWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
