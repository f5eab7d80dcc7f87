"""What the profilers and the probe CLIs share: their settings, reaching the server, writing
outputs, and the run of a probe into a copy of a profile (``probe_into_copy``).

Flag names follow ``etalon.run_benchmark`` (``--server local|URL``, ``--server-args``,
``--llm-api``, ``--tokenizer``, ``--output-dir``, ``--should-use-given-dir``, ...) because the
connection settings are the same ``ConnectionConfig``: a user who ran a benchmark profiles the
same server with the same words.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol, TypeVar

from etalon.calibration.fitting import FitSettings
from etalon.calibration.measure import Target, why_failed
from etalon.calibration.probe import Probe
from etalon.calibration.server_info import describe_server, redact_url
from etalon.cli_errors import UserError
from etalon.client.connection import SCRAPE_OPTIONS, ConnectionConfig
from etalon.options import check_required, embed, option
from etalon.profiles import Profile, ProbeResult, Section, load_profile, save_profile
from etalon.records import RecordWriter, RequestRecord
from etalon.report.outputs import OutputConfig


def _fit_default(name: str):
    return next(f.default for f in fields(FitSettings) if f.name == name)


@dataclass
class ProfiledServer:
    """What the profile records about the server, and the seed of its prompts."""

    hardware: str | None = option(None, "what the server runs on, recorded in the profile "
                                        "(e.g. h100-80gb)")
    seed: int = option(0, "seed of prompts and send order")


@dataclass
class Measurement:
    fixed_request_generator_decode_tokens: int = option(2, "output tokens of every profiling "
                                                           "request")
    num_repetitions: int = option(3, "times each point is measured")


@dataclass
class FitOptions:
    cv_folds: int = option(_fit_default("cv_folds"), "cross-validation folds")
    max_extrapolation_error: float = option(
        _fit_default("max_extrapolation_error"), "largest held-out extrapolation error "
        "(fraction) at which the profile still claims predictions beyond its longest point")

    def settings(self, seed: int) -> FitSettings:
        if self.cv_folds < 2:
            raise UserError(f"--cv-folds must be >= 2, got {self.cv_folds}")
        if not 0 < self.max_extrapolation_error < 1:
            raise UserError("--max-extrapolation-error must be a fraction in (0, 1)")
        return FitSettings(cv_folds=self.cv_folds, seed=seed,
                           max_extrapolation_error=self.max_extrapolation_error)


@dataclass
class ProfilerConfig:
    """What both profilers take; each adds its own measurement plan."""

    connection: ConnectionConfig = embed(ConnectionConfig, title="server and client",
                                         defaults={"timeout": 3600.0}, exclude=SCRAPE_OPTIONS)
    server_info: ProfiledServer = embed(ProfiledServer, title="server and client")
    measurement: Measurement = embed(Measurement, title="measurement")
    fit: FitOptions = embed(FitOptions, title="fit")
    outputs: OutputConfig = embed(OutputConfig, title="outputs",
                                  defaults={"output_dir": "profiling_outputs"},
                                  exclude=("no_report",))  # a profile is not a run
    merge_into: str | None = option(None, "also add the fitted section to this profile file "
                                          "(created if missing)", metavar="FILE")

    def check(self) -> None:
        self.connection.validate()
        if self.merge_into and not self.merge_into.endswith(".json"):
            raise UserError(f"--merge-into {self.merge_into}: profiles are .json files")


@dataclass
class Session:
    """A reachable server: how to send to it, and what the profile says about it."""

    target: Target
    source: dict


def open_session(connection: ConnectionConfig, server_info: ProfiledServer, stack: ExitStack,
                 prog: str) -> Session:
    """Starts the embedded server (``--server local``) or checks that the URL answers."""
    from etalon import __version__

    client, embedded = connection.open(stack, prog)
    if embedded:
        info = {"server": "embedded", "engine": "etalon-embedded", "engine_version": __version__,
                "server_args": connection.server_args or None}
    else:
        info = {"server": redact_url(client.base_url),
                **describe_server(client.base_url, client.model, client.api_key)}
    target = Target(connection.llm_api, client, connection.tokenizer, server_info.seed,
                    deadline=time.monotonic() + connection.timeout)
    source = {**info, "model": client.model, "hardware": server_info.hardware,
              "llm_api": connection.llm_api,
              "tokenizer": Path(connection.tokenizer).name if connection.tokenizer else None}
    return Session(target, {k: v for k, v in source.items() if v is not None})


@dataclass
class ProbeRunOptions:
    """What a CLI probing a profile takes besides the probe's own settings (embedded flat, so
    its flags read as the command's own)."""

    records: str | None = option(None, "also write the probe's records (JSONL) here",
                                 metavar="FILE")
    connection: ConnectionConfig = embed(ConnectionConfig, title="server and client",
                                         defaults={"timeout": 3600.0}, exclude=SCRAPE_OPTIONS)
    server_info: ProfiledServer = embed(ProfiledServer, title="server and client")


class ProbeCopyConfig(Protocol):
    """The settings of a CLI that probes a fitted profile into a copy of it."""

    profile: str | None
    output: str | None
    probing: ProbeRunOptions


P = TypeVar("P", bound=Probe)


def probe_into_copy(args: ProbeCopyConfig, prog: str, suffix: str, written: str,
                    prepare: Callable[[Profile], tuple[P, Section | None]],
                    judge: Callable[[P, list[RequestRecord], Profile], Mapping[str, ProbeResult]]
                    ) -> int:
    """Runs a probe against the fitted profile ``--profile`` and saves a copy carrying its
    results; the exit code.

    One place for what ``etalon.anchor_profile`` and ``etalon.context_profile`` share, so both
    name their output, reach the server, keep ``--records`` and explain an inconclusive probe
    alike. ``prepare`` builds the validated probe and gives the section it plans from;
    ``judge`` turns the records into ``{section name: result}``, empty when inconclusive (a
    one-line ``UserError`` quoting the first failed record; nothing written but the records).
    The copy goes to ``--output`` (none: PROFILE with ``suffix``); stdout gets each result,
    stderr ``"{prog}: {written} written to {path}"``.
    """
    check_required(args)
    probing = args.probing
    probing.connection.validate()
    source = Path(args.profile)
    profile = load_profile(source)
    probe, section = prepare(profile)
    dest = Path(args.output) if args.output else source.with_name(
        source.name.removesuffix(".json") + suffix)
    if dest.suffix != ".json":
        raise UserError(f"--output {dest}: profiles are .json files")
    with ExitStack() as stack:
        session = open_session(probing.connection, probing.server_info, stack, prog)
        print(f"{prog}: {probe.announce()}", file=sys.stderr)
        records = probe.measure(session.target, section)
    if probing.records:
        write_records(records, Path(probing.records))
    results = judge(probe, records, profile)
    if not results:
        first = next((r for r in records if not r.ok), None)
        why = f" (first failure: {why_failed(first)})" if first else ""
        raise UserError(f"{probe.inconclusive()}{why}; {source} left as it was")
    for name, result in results.items():
        profile.section(name).attach(result)
    save_profile(profile, dest)
    for name, result in results.items():
        print(f"{name}: {result.describe(name)}")
    print(f"{prog}: {written} written to {dest}", file=sys.stderr)
    return 0


def write_records(records: list[RequestRecord], path: Path) -> None:
    if path.exists():
        path.unlink()
    with RecordWriter(path) as writer:
        writer.write_all(records)


def save_outputs(profile: Profile, name: str, out: Path, merge_into: str | None,
                 prog: str) -> Path:
    """Writes ``<name>_profile.json`` (and merges into ``--merge-into``); returns its path."""
    from etalon.calibration.merge import merge_profiles

    path = save_profile(profile, out / f"{name}_profile.json")
    print(f"{prog}: profile written to {path}", file=sys.stderr)
    if merge_into:
        target = Path(merge_into)
        merged = merge_profiles([load_profile(target), profile]) if target.exists() else profile
        save_profile(merged, target)
        print(f"{prog}: {name} section merged into {target}", file=sys.stderr)
    return path


def print_fit(section, prog: str) -> None:
    """A few readable lines: the fitted coefficients, the fit quality and the valid range."""
    p = section.physical
    terms = " + ".join(f"{c:.4g}*{n}" for c, n in zip(p.coefficients, p.features))
    q = section.quality
    cv = "n/a" if q.get("cv_mape") is None else f"{q['cv_mape']:.2%}"
    print(f"{section.name}: t = {p.intercept:.4g} + {terms}  (seconds)")
    print(f"  chosen: {section.chosen}; R2 {q['r2']:.4f}, MAPE {q['mape']:.2%}, "
          f"cross-validated MAPE {cv} over {q['num_points']} points")
    ranges = ", ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi) in section.valid_range.items())
    e = section.extrapolation
    claim = (f"claimed up to {', '.join(f'{k} {v:g}' for k, v in e.limits.items())} "
             f"within {e.error:.1%}" if e.claimed else f"no extrapolation claimed ({e.reason})")
    print(f"  valid range: {ranges}; {claim}")
    for result in section.results():
        print(f"  {result.describe(section.name)}")
