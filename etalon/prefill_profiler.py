"""``python -m etalon.prefill_profiler``: measure TTFT against prompt length and fit a predictor.

Sends isolated requests (one in flight, warm-up first, a few repetitions per length) to an
OpenAI-compatible server or the embedded one, fits ``prefill_time(prompt_tokens)``, and writes a
profile (JSON), the raw records (``prefill_requests.jsonl``) and a plot of measured vs fitted.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack

from etalon.calibration.cli import (
    add_common_args,
    check_common,
    fit_settings,
    open_session,
    output_dir,
    print_fit,
    save_outputs,
    write_records,
)
from etalon.calibration.prefill import DEFAULT_LENGTHS, PrefillSettings, fit_prefill, measure_prefill
from etalon.calibration.profile import Profile
from etalon.cli_errors import run_cli

PROG = "etalon.prefill_profiler"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--prefill-lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS),
                   help="prompt lengths to profile (tokens)")
    p.add_argument("--num-warmup-requests", type=int, default=2,
                   help="requests sent first and not measured")
    add_common_args(p, decode_tokens=2, repetitions=3)
    return p


def run(args) -> int:
    check_common(args)
    settings = PrefillSettings(tuple(args.prefill_lengths), args.num_repetitions,
                               args.num_warmup_requests,
                               args.fixed_request_generator_decode_tokens, args.seed).validate()
    fit = fit_settings(args)
    out = output_dir(args)
    with ExitStack() as stack:
        session = open_session(args, stack, PROG)
        n = len(settings.prompt_lengths) * settings.num_repetitions + settings.num_warmup
        print(f"{PROG}: {n} isolated requests, one in flight", file=sys.stderr)
        records, meas = measure_prefill(session.target, settings, PROG)
    write_records(records, out / "prefill_requests.jsonl")
    section = fit_prefill(meas, fit, settings)
    profile = Profile(source=session.source, prefill=section)
    save_outputs(profile, "prefill", out, args, PROG)
    if not args.no_plots:
        from etalon.calibration.plots import plot_prefill

        plot_prefill(section, out / "prefill_fit.png")
    print_fit(section, PROG)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
