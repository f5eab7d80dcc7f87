"""The chart description the HTML report's script draws: series of points plus marks (lines,
shaded spans), in plain JSON. Python decides what to draw, the script only how."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

SERIES_KINDS = ("line", "step", "points")


def compact(values: Sequence[float] | np.ndarray, digits: int = 5) -> list[float | None]:
    """Numbers rounded to ``digits`` significant digits (NaN/inf -> None): a chart needs no
    more, and the report stays small."""
    out: list[float | None] = []
    for v in np.asarray(values, dtype=float).tolist():
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
    return out


@dataclass
class Series:
    """One curve or cloud; ``group`` picks its colour (a run, a configuration)."""

    name: str
    x: Sequence[float] | np.ndarray
    y: Sequence[float] | np.ndarray
    kind: str = "line"
    group: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SERIES_KINDS:
            raise ValueError(f"series kind {self.kind!r} is not one of {SERIES_KINDS}")
        if len(self.x) != len(self.y):
            raise ValueError(f"series {self.name!r}: {len(self.x)} x values, {len(self.y)} y")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "group": self.group,
                "x": compact(self.x), "y": compact(self.y)}


@dataclass
class Chart:
    """One plot: axes, series and marks. ``vlines``/``hlines``: ``{"x"|"y", "label", "group"}``;
    ``vspans``: ``{"x0", "x1", "label", "group"}``. ``log_toggle`` offers a log/linear x switch."""

    id: str
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xlog: bool = False
    log_toggle: bool = False
    ymin: float | None = None
    ymax: float | None = None
    vlines: list[dict] = field(default_factory=list)
    hlines: list[dict] = field(default_factory=list)
    vspans: list[dict] = field(default_factory=list)
    note: str = ""

    @property
    def empty(self) -> bool:
        return not any(len(s.x) for s in self.series)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "xlabel": self.xlabel, "ylabel": self.ylabel,
                "xlog": self.xlog, "logToggle": self.log_toggle, "ymin": self.ymin,
                "ymax": self.ymax, "vlines": self.vlines, "hlines": self.hlines,
                "vspans": self.vspans, "note": self.note,
                "series": [s.to_dict() for s in self.series]}
