"""PNG plots of measured against fitted times, so a person can see a fit before trusting it.

matplotlib's object API on the Agg canvas (no pyplot global state, no display needed). The
prefill plot shows every repetition, the fitted curve over the profiled range, and the physical
curve dashed into the claimed extrapolation range; the decode plot shows each level's binned
points with the fitted line, and a measured-vs-predicted parity panel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from etalon.profiles import Section


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def plot_prefill(section: Section, path: str | Path) -> Path:
    m = section.measurements
    x = np.asarray(m["prompt_tokens"], dtype=float)
    y = np.asarray(m["ttft_s"], dtype=float) * 1e3
    lo, hi = section.valid_range["prompt_tokens"]
    limit = section.limit("prompt_tokens")
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.scatter(x, y, s=14, alpha=0.6, label="measured TTFT (each repetition)")
    grid = np.linspace(0, hi, 200)
    ax.plot(grid, section.predict({"prompt_tokens": grid}) * 1e3, color="C1",
            label=f"fitted ({section.chosen})")
    if limit > hi:
        ext = np.linspace(hi, limit, 100)
        ax.plot(ext, section.physical.predict({"prompt_tokens": ext}) * 1e3, "--", color="C1",
                label=f"extrapolation (claimed within {section.extrapolation.error:.0%})")
    ax.axvspan(lo, hi, color="0.9", zorder=0, label="profiled range")
    q = section.quality
    ax.set_title(f"Prefill: R² {q['r2']:.4f}, MAPE {q['mape']:.1%}")
    ax.set_xlabel("prompt tokens (server-reported)")
    ax.set_ylabel("TTFT (ms)")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, Path(path))


def plot_decode(section: Section, path: str | Path) -> Path:
    m = section.measurements
    batch = np.asarray(m["decode_batch"], dtype=float)
    ctx = np.asarray(m["decode_context"], dtype=float)
    y = np.asarray(m["step_time_s"], dtype=float) * 1e3
    fig = Figure(figsize=(11, 4.5))
    ax, parity = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, b in enumerate(np.unique(batch)):
        sel = batch == b
        color = f"C{i % 10}"
        ax.scatter(ctx[sel], y[sel], s=12, color=color, alpha=0.7, label=f"batch {b:g}")
        grid = np.linspace(ctx[sel].min(), ctx[sel].max(), 50)
        ax.plot(grid, section.predict({"decode_batch": b, "decode_context": grid}) * 1e3,
                color=color, lw=1)
    ax.set_xlabel("context tokens in the batch")
    ax.set_ylabel("decode step time (ms)")
    q = section.quality
    ax.set_title(f"Decode: R² {q['r2']:.4f}, MAPE {q['mape']:.1%}")
    ax.legend(fontsize=7)
    pred = section.predict({"decode_batch": batch, "decode_context": ctx}) * 1e3
    parity.scatter(y, pred, s=10, alpha=0.7)
    span = [min(y.min(), pred.min()), max(y.max(), pred.max())]
    parity.plot(span, span, "k--", lw=1)
    parity.set_xlabel("measured (ms)")
    parity.set_ylabel("predicted (ms)")
    parity.set_title("measured vs predicted")
    fig.tight_layout()
    return _save(fig, Path(path))
