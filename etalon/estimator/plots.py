"""PNG plots of estimates (matplotlib's Agg renderer: no display needed).

Each function takes plain numbers, writes one file and returns its path, so the CLI and library
callers decide what to plot and where. Figures are built with matplotlib's object API rather
than pyplot, so no global backend or figure state is touched (safe inside notebooks), and
matplotlib is imported on first use because most runs print tables only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

Curve = tuple[Sequence[float], Sequence[float]]


def _figure(width: float = 7.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def line_plot(curves: Mapping[str, Curve], title: str, xlabel: str, ylabel: str, path: Path,
              logx: bool = True, logy: bool = False) -> Path:
    """One line per label, e.g. throughput vs sequence length by server count."""
    fig, ax = _figure()
    for label, (xs, ys) in curves.items():
        ax.plot(list(xs), list(ys), marker="o", markersize=3, label=label)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def stack_plot(xs: Sequence[float], layers: Mapping[str, Sequence[float]], title: str, xlabel: str,
               ylabel: str, path: Path, limit: float | None = None, limit_label: str = "") -> Path:
    """Stacked areas, e.g. client or server storage by sequence length; ``limit`` draws a line."""
    fig, ax = _figure()
    ax.stackplot(list(xs), *[list(v) for v in layers.values()], labels=list(layers), alpha=0.85)
    if limit is not None:
        ax.axhline(limit, color="black", linestyle="--", linewidth=1, label=limit_label or "limit")
    ax.set_xscale("log", base=2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path)


def stacked_bars(labels: Sequence[str], parts: Mapping[str, Sequence[float]], title: str, ylabel: str,
                 path: Path, limit: float | None = None, limit_label: str = "") -> Path:
    """One stacked bar per label, e.g. per-device memory of candidate layouts."""
    fig, ax = _figure(max(5.0, 1.3 * len(labels) + 3))
    bottom = [0.0] * len(labels)
    for name, values in parts.items():
        ax.bar(list(labels), list(values), bottom=bottom, label=name)
        bottom = [b + max(v, 0.0) for b, v in zip(bottom, values)]
    if limit is not None:
        ax.axhline(limit, color="black", linestyle="--", linewidth=1, label=limit_label or "limit")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)
