"""Plain-text rendering of estimates: aligned tables and key/value blocks.

Kept dependency-free (no rich) so the CLI prints the same on every machine; ``--json`` is the
machine-readable alternative.
"""

from __future__ import annotations

from collections.abc import Sequence


def fmt(value: object, digits: int = 3) -> str:
    """Numbers with thousands separators or significant digits; everything else as ``str``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned text table; numbers right-aligned."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def block(title: str, items: Sequence[tuple[str, object]]) -> str:
    """A titled list of ``key: value`` lines."""
    width = max((len(k) for k, _ in items), default=0)
    lines = [title, "=" * len(title)]
    lines += [f"{k.ljust(width)}  {fmt(v)}" for k, v in items]
    return "\n".join(lines)
