"""The ``etalon`` command: one entry point whose subcommands are the module entry points.

Each command module has ``PROG`` (its ``python -m`` name), ``DESCRIPTION``, ``configure(parser)``
(adds its flags, generated from its typed config) and ``execute(namespace) -> int``. Both
``etalon bench ...`` and ``python -m etalon.run_benchmark ...`` build their parser with the same
``configure`` and run the same ``execute``, so the two can never drift apart. Modules are
imported only when their subcommand runs, so ``etalon --help`` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import NoReturn

from etalon.cli_errors import run_cli

# subcommand -> (module, one-line help); a nested mapping is a command group.
SUBCOMMANDS: dict[str, tuple[str, str] | dict[str, tuple[str, str]]] = {
    "bench": ("etalon.run_benchmark", "benchmark a live OpenAI-compatible server (open loop)"),
    "sweep": ("etalon.sweep", "a load sweep of a live server: synchronous, throughput, rates "
                              "between"),
    "simulate": ("etalon.simulate", "simulate a serving deployment under a workload"),
    "estimate": ("etalon.estimate", "model a deployment analytically: memory, latency, "
                                    "layouts, distributed pipelines"),
    "serve": ("etalon.serve", "the embedded OpenAI-compatible server (modelled step times)"),
    "profile": {
        "prefill": ("etalon.prefill_profiler", "measure TTFT against prompt length and fit it"),
        "decode": ("etalon.decode_profiler", "measure decode steps against batch and context"),
        "anchor": ("etalon.anchor_profile", "re-anchor a fitted profile to the engine's "
                                            "speed now"),
        "context": ("etalon.context_profile", "measure what attention over a cached prefix "
                                              "costs, into a copy of a profile"),
        "ops": ("etalon.operator_profiler", "time a model's layer operators (PyTorch) and fit "
                                            "the operator roofline"),
        "merge": ("etalon.calibration.merge", "one profile from several"),
        "fit-roofline": ("etalon.calibration.roofline_fit", "fit a roofline's MFU/MBU to a "
                                                           "profile"),
    },
    "validate": ("etalon.validate", "replay a live run through the simulator: predicted vs "
                                    "measured"),
    "search": ("etalon.capacity_search.__main__", "capacity search: the highest request rate "
                                                  "within the SLO"),
    "recommend": ("etalon.capacity_search.recommend", "the cheapest deployment that meets an "
                                                      "SLO at a target request rate"),
    "report": ("etalon.report.__main__", "one self-contained HTML report of runs (overlaid, "
                                         "compared) and capacity searches"),
    "ui": ("etalon.ui.__main__", "the web app (planner, estimators, simulator, recommend, "
                                 "results and history) or, with --desktop, the planner in a "
                                 "window"),
    "validate-engine": ("etalon.validation.__main__", "the real-engine validation loop: profile, "
                                                      "anchor, live runs, replay, table"),
}


class HelpFormatter(argparse.HelpFormatter):
    """Never wraps between "default:" and its value, so ``-h | grep "default: 0.9"`` finds it."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        lines = super()._split_lines(text.replace("(default: ", "(default:\0"), width)
        return [line.replace("\0", " ") for line in lines]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one stderr line and exit 2 (no usage dump)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # "python -m etalon.estimate latency" speaks as "etalon.estimate", like run_cli does
        name = self.prog
        if name.startswith("python -m "):
            name = name.removeprefix("python -m ").split()[0]
        self.exit(2, f"{name}: error: {message}\n")


def build_parser(module: ModuleType, prog: str | None = None) -> Parser:
    parser = Parser(prog=prog or f"python -m {module.PROG}", description=module.DESCRIPTION)
    module.configure(parser)
    return parser


def run_module(module: ModuleType, argv: Sequence[str] | None, prog: str | None = None) -> int:
    """Parses ``argv`` with the module's flags and runs it; user mistakes are one line."""
    ns = build_parser(module, prog).parse_args(argv)
    no_transparent_hugepages()
    return run_cli(module.PROG, lambda: module.execute(ns))


def no_transparent_hugepages() -> None:
    """Stops numpy asking the kernel for huge pages for its large arrays, unless the user
    chose (``NUMPY_MADVISE_HUGEPAGE``).

    Where the kernel compacts memory on demand for such requests (``defrag`` = ``madvise``, the
    common default), the first touch of each new per-token column, after a simulation has
    fragmented the heap, stalls: 1.48 s instead of 0.27 s for one TBT pass over 4.4 M tokens,
    and a 10k-request ``etalon simulate`` took 0.81x the wall time without them
    (the README's Benchmarks). A command's arrays are written once and read a few times, so huge
    pages save it little.
    """
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # another numpy layout: leave its default
        return
    _set_madvise_hugepage(False)


def exit_process(code: int | None) -> NoReturn:
    """Ends a command's process with ``code`` once the command has returned, skipping the
    interpreter's teardown.

    Python's own exit frees every module and object one by one; with pandas, pyarrow and
    matplotlib loaded that takes 0.2-0.3 s on this project's 2-core machines, after every
    result is written (a tenth of a 10k-request ``etalon simulate``). What an exit must do is
    still done, in the interpreter's order: threads are waited for, exit handlers run (Ray's,
    W&B's, multiprocessing's, logging's), and the output streams are flushed. Only for a
    process's own entry point (``__main__`` blocks, the ``etalon`` script), never for a
    caller of ``main()``.
    """
    wait_for_threads = getattr(threading, "_shutdown", None)  # what Py_Finalize calls first
    if wait_for_threads is None:  # another interpreter: its own exit, slower but the same
        sys.exit(code)
    wait_for_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code or 0)


def console() -> NoReturn:
    """The ``etalon`` script: :func:`main`, then :func:`exit_process`."""
    exit_process(main())


def entry_points(module_name: str) -> tuple[Callable[[], Parser], Callable[..., int]]:
    """``build_parser()`` and ``main(argv)`` for a command module::

        build_parser, main = entry_points(__name__)
    """
    def build() -> Parser:
        return build_parser(sys.modules[module_name])

    def main(argv: Sequence[str] | None = None) -> int:
        return run_module(sys.modules[module_name], argv)

    return build, main


def _help(table: dict, prog: str) -> str:
    width = max(len(name) for name in table) + 2
    lines = [f"usage: {prog} <command> [flags]  ({prog} <command> -h for its flags)", "",
             "commands:"]
    for name, entry in table.items():
        if isinstance(entry, dict):
            lines.append(f"  {name:<{width}}{' | '.join(entry)}")
            for sub, (_, text) in entry.items():
                lines.append(f"  {'':<{width}}  {sub}: {text}")
        else:
            lines.append(f"  {name:<{width}}{entry[1]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "etalon") -> int:
    """``etalon <command> [subcommand] [flags]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    table: dict = SUBCOMMANDS
    while True:
        if not args or args[0] in ("-h", "--help"):
            print(_help(table, prog))
            return 0 if args else 2
        name, args = args[0], args[1:]
        if name == "--version" and table is SUBCOMMANDS:
            from etalon import __version__

            print(f"etalon {__version__}")
            return 0
        if name not in table:
            print(f"{prog}: error: unknown command {name!r}; commands: {', '.join(table)}",
                  file=sys.stderr)
            return 2
        prog = f"{prog} {name}"
        entry = table[name]
        if isinstance(entry, dict):
            table = entry
            continue
        return run_module(importlib.import_module(entry[0]), args, prog)


if __name__ == "__main__":
    console()
