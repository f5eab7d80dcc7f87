"""``python -m etalon.decode_profiler``: measure decode step time against batch size and context.

For each level (batch size x prompt length) sends the whole batch at once with long outputs,
keeps the inter-token gaps of the window where every request of the level is decoding, and fits
``decode_step_time(batch_size, total_context_tokens)``. Writes a profile (JSON), the raw records
(``decode_requests.jsonl``) and a plot of measured vs fitted.
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
from etalon.calibration.decode import DecodeSettings, fit_decode, measure_decode
from etalon.cli_errors import run_cli
from etalon.profiles import Profile

PROG = "etalon.decode_profiler"


def build_parser() -> argparse.ArgumentParser:
    d = DecodeSettings()
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(d.batch_sizes),
                   help="concurrency levels: requests sent at once")
    p.add_argument("--prompt-lengths", type=int, nargs="+", default=list(d.prompt_lengths),
                   help="prompt length of every request of a level (tokens)")
    p.add_argument("--bins-per-level", type=int, default=d.bins_per_level,
                   help="context bins each level's gaps are summarised into")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up level")
    add_common_args(p, decode_tokens=d.decode_tokens, repetitions=d.num_repetitions)
    return p


def run(args) -> int:
    check_common(args)
    settings = DecodeSettings(tuple(args.batch_sizes), tuple(args.prompt_lengths),
                              args.fixed_request_generator_decode_tokens, args.num_repetitions,
                              args.bins_per_level, not args.no_warmup, args.seed).validate()
    fit = fit_settings(args)
    out = output_dir(args)
    with ExitStack() as stack:
        session = open_session(args, stack, PROG)
        print(f"{PROG}: {len(settings.levels())} levels of "
              f"{settings.decode_tokens} output tokens", file=sys.stderr)
        records, points, summary = measure_decode(session.target, settings, PROG)
    write_records(records, out / "decode_requests.jsonl")
    section = fit_decode(points, fit, settings, summary)
    profile = Profile(source=session.source, decode=section)
    save_outputs(profile, "decode", out, args, PROG)
    if not args.no_plots:
        from etalon.calibration.plots import plot_decode

        plot_decode(section, out / "decode_fit.png")
    print_fit(section, PROG)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
