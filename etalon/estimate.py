"""``python -m etalon.estimate``: model a deployment analytically before it exists.

Subcommands: ``memory`` (per-device memory, KV pool and concurrency), ``latency`` (FLOPs and
roofline TTFT/TPOT/throughput), ``plan`` (valid TP sizes, minimum devices, recommended TP x PP x
EP), ``distributed`` (Petals-style pipelines over the internet) and ``catalog`` (what models and
hardware are built in). Every calculation is also recorded in the local history
(``etalon.ui.history``; ``ETALON_HISTORY=off`` skips it). A user mistake prints one ``etalon.estimate: error: ...`` line to stderr
and exits with status 2.

Each subcommand's flags are generated from its typed config (``etalon.estimator.command_configs``);
``--config FILE`` (YAML or JSON, the same keys with ``_`` or ``-``) sets them from a file, and
flags override it. ``SUBCOMMANDS`` lists (name, help, config class, run function) so another
command line (``etalon estimate <sub>``) can mount the same subcommands: ``add_subcommand`` and
``run_subcommand`` do the parser and the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.estimator.command_configs import (
    CatalogConfig,
    DistributedConfig,
    LatencyConfig,
    MemoryConfig,
    PlanConfig,
)
from etalon.estimator.commands import Report, run_catalog, run_latency, run_memory, run_plan
from etalon.estimator.commands_distributed import run_distributed
from etalon.options import add_config_file_flag, add_options, config_from_args, to_mapping
from etalon.ui.history import record_quietly

PROG = "etalon.estimate"
DESCRIPTION = ("Model an LLM deployment analytically: memory and KV cache, roofline latency, "
               "parallel layouts, and Petals-style distributed pipelines.")


class Subcommand(NamedTuple):
    """One estimator subcommand: its name and help, the config its flags come from, and the
    function that turns that config into a ``Report``."""

    name: str
    help: str
    config: type
    run: Callable[[Any], Report]
    config_file: bool = True  # whether it takes --config FILE


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("memory", "per-device memory, KV pool, blocks and max concurrency", MemoryConfig, run_memory),
    Subcommand("latency", "FLOPs and roofline TTFT / TPOT / throughput", LatencyConfig, run_latency),
    Subcommand("plan", "valid TP sizes, minimum devices and a recommended TP x PP (x EP)", PlanConfig, run_plan),
    Subcommand("distributed", "Petals-style pipeline over internet-connected servers", DistributedConfig,
               run_distributed),
    Subcommand("catalog", "list built-in models and hardware", CatalogConfig, run_catalog, config_file=False),
)

COMMANDS: dict[str, Subcommand] = {sub.name: sub for sub in SUBCOMMANDS}


def add_subcommand(subparsers: argparse._SubParsersAction, sub: Subcommand, **kwargs: Any) -> argparse.ArgumentParser:
    """Adds ``sub``'s parser (its config's flags, plus ``--config FILE``) to ``subparsers``."""
    p = subparsers.add_parser(sub.name, help=sub.help, description=sub.help, **kwargs)
    if sub.config_file:
        add_config_file_flag(p)
    add_options(p, sub.config)
    return p


def configure(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=type(parser))
    for sub in SUBCOMMANDS:
        add_subcommand(subparsers, sub)


def print_report(report: Report, as_json: bool) -> None:
    """The report as JSON (plots listed under ``plots``) or as text; a closed pipe is no error."""
    if as_json:
        payload = dict(report.data)
        if report.files:
            payload["plots"] = report.files
        text = json.dumps(payload, indent=2, default=str)
    else:
        text = "\n".join([report.text, *(f"wrote {path}" for path in report.files)])
    try:
        print(text)
    except BrokenPipeError:  # `... | head`: the reader left, which is not an error
        sys.stdout = open(os.devnull, "w")


def run_subcommand(sub: Subcommand, args: argparse.Namespace) -> int:
    """Defaults, then ``--config FILE``, then the flags; validated, run and printed. User
    mistakes raise ``UserError`` (run it under ``etalon.cli_errors.run_cli``)."""
    cfg = config_from_args(sub.config, args, what=f"{sub.name} config file").validate()
    try:
        report = sub.run(cfg)
    except OSError as exc:  # e.g. an --output-dir that cannot be written
        raise UserError(f"{exc.strerror or exc}: {exc.filename or ''}") from None
    print_report(report, cfg.report.json)
    if sub.name != "catalog":  # a lookup, not a calculation
        record_quietly(f"estimate {sub.name}", to_mapping(cfg), report.data, prog=PROG,
                       label=_label(cfg))
    return 0


def _label(cfg: Any) -> str:
    """A short name for the history list: the model and where it runs."""
    d = cfg.deployment
    where = getattr(d, "hardware", None) or ",".join(getattr(cfg, "server_hardware", []) or [])
    return f"{d.model} on {where}"


def execute(args: argparse.Namespace) -> int:
    return run_subcommand(COMMANDS[args.command], args)


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
