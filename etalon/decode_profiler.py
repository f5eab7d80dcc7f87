"""``python -m etalon.decode_profiler``: measure decode step time against batch size and context.

For each level (batch size x prompt length) sends the whole batch at once with long outputs,
keeps the inter-token gaps of the window where every request of the level is decoding, and fits
``decode_step_time(batch_size, total_context_tokens)``. Writes a profile (JSON), the raw records
(``decode_requests.jsonl``) and a plot of measured vs fitted.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass

from etalon.calibration.cli import Measurement, ProfilerConfig, open_session, print_fit, save_outputs, write_records
from etalon.calibration.decode import DecodeSettings, fit_decode, measure_decode
from etalon.commands import entry_points, exit_process
from etalon.options import add_options, apply_namespace, embed, option
from etalon.profiles import Profile

PROG = "etalon.decode_profiler"
DESCRIPTION = "Measure decode step time against batch size and context."
_D = DecodeSettings()


@dataclass
class DecodeProfilerConfig(ProfilerConfig):
    batch_sizes: list[int] = option(default_factory=lambda: list(_D.batch_sizes),
                                    help="concurrency levels: requests sent at once")
    prompt_lengths: list[int] = option(default_factory=lambda: list(_D.prompt_lengths),
                                       help="prompt length of every request of a level (tokens)")
    bins_per_level: int = option(_D.bins_per_level, "context bins each level's gaps are "
                                                    "summarised into")
    no_warmup: bool = option(False, "skip the warm-up level")
    measurement: Measurement = embed(Measurement, title="measurement", defaults={
        "fixed_request_generator_decode_tokens": _D.decode_tokens,
        "num_repetitions": _D.num_repetitions})


def configure(parser) -> None:
    add_options(parser, DecodeProfilerConfig)


def execute(ns) -> int:
    return run(apply_namespace(DecodeProfilerConfig(), ns))


def run(args: DecodeProfilerConfig) -> int:
    args.check()
    m, seed = args.measurement, args.server_info.seed
    settings = DecodeSettings(tuple(args.batch_sizes), tuple(args.prompt_lengths),
                              m.fixed_request_generator_decode_tokens, m.num_repetitions,
                              args.bins_per_level, not args.no_warmup, seed).validate()
    fit = args.fit.settings(seed)
    out = args.outputs.prepare()
    with ExitStack() as stack:
        session = open_session(args.connection, args.server_info, stack, PROG)
        print(f"{PROG}: {len(settings.levels())} levels of "
              f"{settings.decode_tokens} output tokens", file=sys.stderr)
        records, points, summary = measure_decode(session.target, settings, PROG)
    write_records(records, out / "decode_requests.jsonl")
    section = fit_decode(points, fit, settings, summary)
    profile = Profile(source=session.source, decode=section)
    save_outputs(profile, "decode", out, args.merge_into, PROG)
    if not args.outputs.no_plots:
        from etalon.calibration.plots import plot_decode

        plot_decode(section, out / "decode_fit.png")
    print_fit(section, PROG)
    rep = section.settings["repeatability"]
    if rep["speed_drift"] is not None:
        print(f"  repetitions: the engine's speed moved {rep['speed_drift']:.1%} between them; a "
              f"level's repetitions differ by {rep['level_scatter']:.1%} (median over levels)")
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
