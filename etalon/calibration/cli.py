"""What the prefill and decode profiler CLIs share: flags, reaching the server, writing outputs.

Flag names follow ``etalon.run_benchmark`` (``--server local|URL``, ``--server-args``,
``--llm-api``, ``--tokenizer``, ``--output-dir``, ``--should-use-given-dir``, ...), so a user who
ran a benchmark can profile the same server with the same words.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from etalon.calibration.fitting import FitSettings
from etalon.calibration.measure import Target
from etalon.calibration.server_info import describe_server, redact_url
from etalon.cli_errors import UserError
from etalon.client import CLIENTS, ClientConfig
from etalon.profiles import Profile, load_profile, save_profile
from etalon.records import RecordWriter, RequestRecord


def add_common_args(p: argparse.ArgumentParser, *, decode_tokens: int, repetitions: int) -> None:
    add_server_args(p)
    _add_measurement_args(p, decode_tokens=decode_tokens, repetitions=repetitions)


def add_server_args(p: argparse.ArgumentParser) -> None:
    """How to reach the server, and what to record about it (every tool that sends to one)."""
    g = p.add_argument_group("server and client")
    g.add_argument("--model", default=None,
                   help="model name sent in each request (default: the embedded server's)")
    g.add_argument("--server", default=None,
                   help="'local' starts the embedded server; otherwise a base URL "
                        "(default: $OPENAI_API_BASE)")
    g.add_argument("--server-args", default="",
                   help="extra flags for the embedded server, e.g. \"--perf-model-file m.json\"")
    g.add_argument("--llm-api", default="openai-completions", choices=sorted(CLIENTS),
                   help="client backend")
    g.add_argument("--tokenizer", default=None,
                   help="local Hugging Face tokenizer folder: prompts of exact length "
                        "(default: etalon's word approximation; the server's usage counts are "
                        "used as x either way)")
    g.add_argument("--timeout", type=float, default=3600.0,
                   help="time limit of the whole profiling run (s)")
    g.add_argument("--request-timeout", type=float, default=600.0, help="per-request limit (s)")
    g.add_argument("--no-ignore-eos", action="store_true",
                   help="do not send vLLM's ignore_eos/min_tokens (for servers that reject them)")
    g.add_argument("--hardware", default=None,
                   help="what the server runs on, recorded in the profile (e.g. h100-80gb)")
    g.add_argument("--seed", type=int, default=0, help="seed of prompts and send order")


def check_server_args(args) -> None:
    for flag in ("timeout", "request_timeout"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be > 0")
    if args.tokenizer and not Path(args.tokenizer).exists():
        raise UserError(f"--tokenizer {args.tokenizer}: no such file or folder")


def _add_measurement_args(p: argparse.ArgumentParser, *, decode_tokens: int, repetitions: int) -> None:
    m = p.add_argument_group("measurement")
    m.add_argument("--fixed-request-generator-decode-tokens", type=int, default=decode_tokens,
                   help="output tokens of every profiling request")
    m.add_argument("--num-repetitions", type=int, default=repetitions,
                   help="times each point is measured")
    f = p.add_argument_group("fit")
    d = FitSettings()
    f.add_argument("--cv-folds", type=int, default=d.cv_folds, help="cross-validation folds")
    f.add_argument("--max-extrapolation-error", type=float, default=d.max_extrapolation_error,
                   help="largest held-out extrapolation error (fraction) at which the profile "
                        "still claims predictions beyond its longest point")
    o = p.add_argument_group("outputs")
    o.add_argument("--output-dir", default="profiling_outputs", help="where results go")
    o.add_argument("--should-use-given-dir", action=argparse.BooleanOptionalAction, default=True,
                   help="write into --output-dir itself (else into a timestamped subfolder)")
    o.add_argument("--merge-into", default=None,
                   help="also add the fitted section to this profile file (created if missing)")
    o.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def fit_settings(args) -> FitSettings:
    if args.cv_folds < 2:
        raise UserError(f"--cv-folds must be >= 2, got {args.cv_folds}")
    if not 0 < args.max_extrapolation_error < 1:
        raise UserError("--max-extrapolation-error must be a fraction in (0, 1)")
    return FitSettings(cv_folds=args.cv_folds, seed=args.seed,
                       max_extrapolation_error=args.max_extrapolation_error)


def check_common(args) -> None:
    check_server_args(args)
    if args.merge_into and not args.merge_into.endswith(".json"):
        raise UserError(f"--merge-into {args.merge_into}: profiles are .json files")


@dataclass
class Session:
    """A reachable server: how to send to it, and what the profile says about it."""

    target: Target
    source: dict


def open_session(args, stack: ExitStack, prog: str) -> Session:
    """Starts the embedded server (``--server local``) or checks that the URL answers."""
    from etalon import __version__

    from etalon.server.process import resolve_server

    api_key = os.environ.get("OPENAI_API_KEY")
    base_url, model, embedded = resolve_server(args.server, args.model, args.server_args,
                                               args.tokenizer, stack, prog)
    if embedded:
        info = {"server": "embedded", "engine": "etalon-embedded", "engine_version": __version__,
                "server_args": args.server_args or None}
    else:
        info = {"server": redact_url(base_url), **describe_server(base_url, model, api_key)}
    config = ClientConfig(base_url=base_url, model=model, api_key=api_key,
                          request_timeout=args.request_timeout,
                          idle_timeout=min(args.request_timeout, 120.0),
                          ignore_eos=not args.no_ignore_eos, tokenizer=args.tokenizer)
    target = Target(args.llm_api, config, args.tokenizer, args.seed,
                    deadline=time.monotonic() + args.timeout)
    source = {**info, "model": model, "hardware": args.hardware, "llm_api": args.llm_api,
              "tokenizer": Path(args.tokenizer).name if args.tokenizer else None}
    return Session(target, {k: v for k, v in source.items() if v is not None})


def output_dir(args) -> Path:
    out = Path(args.output_dir)
    if not args.should_use_given_dir:
        out = out / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_records(records: list[RequestRecord], path: Path) -> None:
    if path.exists():
        path.unlink()
    with RecordWriter(path) as writer:
        writer.write_all(records)


def save_outputs(profile: Profile, name: str, out: Path, args, prog: str) -> Path:
    """Writes ``<name>_profile.json`` (and merges into ``--merge-into``); returns its path."""
    from etalon.calibration.merge import merge_profiles

    path = save_profile(profile, out / f"{name}_profile.json")
    print(f"{prog}: profile written to {path}", file=sys.stderr)
    if args.merge_into:
        target = Path(args.merge_into)
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
