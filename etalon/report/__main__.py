"""``python -m etalon.report RUN_DIR [RUN_DIR ...] -o report.html`` (``etalon report``): one
self-contained HTML page of runs (live and simulated alike, overlaid and compared against the
first) and/or capacity-search folders."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from etalon.commands import entry_points, exit_process

PROG = "etalon.report"
DESCRIPTION = ("One self-contained HTML report (opens offline) of run folders, overlaid and "
               "compared against the first, and/or capacity-search folders.")


@dataclass
class ReportArgs:
    directories: list[str] = field(default_factory=list)
    output: str | None = None
    title: str | None = None


def configure(parser) -> None:
    parser.add_argument("directories", nargs="+", metavar="DIR",
                        help="run folders (a benchmark's or a simulation's --output-dir) or "
                             "capacity-search folders; the first run is the reference")
    parser.add_argument("-o", "--output", metavar="FILE", default=None,
                        help="where the page goes (default: report.html inside the only folder "
                             "given, else ./report.html)")
    parser.add_argument("--title", metavar="TEXT", default=None,
                        help="the page's title (default: the folders' names)")


def execute(ns) -> int:
    from etalon.report.html import REPORT_FILE, write_report

    args = ReportArgs(list(ns.directories), ns.output, ns.title)
    output = args.output or (str(Path(args.directories[0]) / REPORT_FILE)
                             if len(args.directories) == 1 else REPORT_FILE)
    started = time.perf_counter()
    path = write_report(args.directories, output, title=args.title)
    size = path.stat().st_size
    print(f"{PROG}: wrote {path} ({size / 1e3:.0f} kB in {time.perf_counter() - started:.1f} s)",
          file=sys.stderr)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
