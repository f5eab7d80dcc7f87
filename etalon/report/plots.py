"""PNG plots of a run: latency CDFs, TTFT vs prompt length, output tokens over time, and a
simulation's per-replica state over time.

What a plot shows is a :class:`~etalon.report.figures.PlotSpec` (``etalon.report.figures``,
numpy only); this module draws specs with matplotlib's object API and the Agg canvas
directly, so it never touches pyplot's global state or needs a display. A plot without data
is skipped (not written, not in the result).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from etalon.report.figures import PlotSpec, cdf_spec, run_specs

if TYPE_CHECKING:
    from etalon.metrics.columns import RunColumns
    from etalon.record_table import RecordTable
    from etalon.records import RequestRecord


def draw(spec: PlotSpec, path: str | Path) -> Path:
    """Draws ``spec`` into the PNG at ``path`` (its folder made when missing)."""
    fig = Figure(figsize=spec.size)
    ax = fig.add_subplot()
    for line in spec.lines:
        if line.style == "scatter":
            ax.scatter(line.x, line.y, s=6, alpha=0.6, label=line.label)
        elif line.style == "step":
            ax.step(line.x, line.y, where="post", label=line.label, linewidth=line.width)
        else:
            ax.plot(line.x, line.y, label=line.label, linewidth=line.width)
    for x in spec.vlines:
        ax.axvline(x, linestyle=":", linewidth=0.8, color="grey")
    ax.set(xlabel=spec.xlabel, ylabel=spec.ylabel)
    if spec.title:
        ax.set_title(spec.title)
    if spec.ylim:
        ax.set_ylim(*spec.ylim)
    if spec.legend:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def draw_all(specs: dict[str, PlotSpec], out_dir: str | Path) -> dict[str, Path]:
    """Draws each spec into ``out_dir/<name>.png``; returns ``{name: path}``."""
    out = Path(out_dir)
    return {name: draw(spec, out / f"{name}.png") for name, spec in specs.items()}


def make_plots(records: "Sequence[RequestRecord] | RecordTable | RunColumns",
               out_dir: str | Path) -> dict[str, Path]:
    """Writes every plot of a run that has data into ``out_dir``; returns ``{plot name: path}``."""
    return draw_all(run_specs(records), out_dir)


def _save(fig: Figure, path: Path) -> Path:
    """Margins fixed in inches (room for the tick labels, axis labels and title): a tight
    bounding box would draw every figure twice, half of a plot's cost."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.2 / width, bottom=0.6 / height,
                        top=1 - 0.4 / height)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def plot_cdf(values: Sequence[float] | np.ndarray, path: Path, *, xlabel: str,
             title: str, presorted: bool = False, scale: float = 1.0) -> Path | None:
    """Empirical CDF of ``values`` (see :func:`~etalon.report.figures.cdf_spec`) drawn to
    ``path``; None (nothing written) when there are none."""
    spec = cdf_spec(values, xlabel=xlabel, title=title, presorted=presorted, scale=scale)
    return draw(spec, path) if spec else None
