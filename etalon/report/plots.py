"""Drawing a run's PNG plots: each a :class:`~etalon.report.figures.PlotSpec` (what it shows,
made by ``etalon.report.figures``; a plot without data has none and is not drawn).

matplotlib's object API with the Agg canvas directly: no pyplot global state, no display.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from etalon.report.figures import PlotSpec


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
