"""``python -m etalon.prefill_profiler``: measure TTFT against prompt length and fit a predictor.

Sends isolated requests (one in flight, warm-up first, a few repetitions per length) to an
OpenAI-compatible server or the embedded one, fits ``prefill_time(prompt_tokens)``, then probes
what a prompt joining decoding sequences adds to their step (``etalon.calibration.join``), how a
step with several prompts is priced (``etalon.calibration.batching``), and writes a
profile (JSON), the raw records (``prefill_requests.jsonl``) and a plot of measured vs fitted.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass

from etalon.calibration.batching import BatchingSettings, default_probe_length, probe_batching
from etalon.calibration.cli import (
    ProfilerConfig,
    open_session,
    print_fit,
    save_outputs,
    write_records,
)
from etalon.calibration.join import JoinSettings, probe_join
from etalon.calibration.prefill import DEFAULT_LENGTHS, PrefillSettings, fit_prefill, measure_prefill
from etalon.calibration.profile import Profile
from etalon.calibration.wake_up import DEFAULT_GAPS, WakeUpSettings, probe_wake_up
from etalon.commands import entry_points
from etalon.options import add_options, apply_namespace, option

PROG = "etalon.prefill_profiler"
DESCRIPTION = "Measure TTFT against prompt length and fit a predictor."


@dataclass
class PrefillProfilerConfig(ProfilerConfig):
    prefill_lengths: list[int] = option(default_factory=lambda: list(DEFAULT_LENGTHS),
                                        help="prompt lengths to profile (tokens)")
    num_warmup_requests: int = option(2, "requests sent first and not measured")
    batching_probe_length: int | None = option(
        None, "prompt length of the batching probe (none: the middle profiled length)")
    batching_probe_prompts: int = option(2, "prompts sharing the probed step")
    no_batching_probe: bool = option(False, "skip the batching probe; the profile then prices "
                                            "each prompt's attention alone")
    join_probe_length: int | None = option(None, "prompt length of the joining prompts (none: "
                                                 "the batching probe's)")
    join_probe_decoders: int = option(4, "sequences decoding when a prompt joins (0 skips the "
                                         "probe; the profile then charges a prompt's fixed "
                                         "work to its request path)")
    join_probe_decode_tokens: int = option(64, "tokens each decoder generates; raise it for an "
                                               "engine whose decode steps are much shorter than "
                                               "its prefills")
    idle_probe_gaps: list[float] = option(default_factory=lambda: list(DEFAULT_GAPS),
                                          help="idle seconds before the idle probe's requests "
                                               "(0 = back to back)")
    idle_probe_repetitions: int = option(3, "idle-probe requests per gap")
    idle_probe_length: int | None = option(None, "prompt length of the idle probe (none: the "
                                                 "batching probe's)")
    no_idle_probe: bool = option(False, "skip the idle probe; the profile then charges nothing "
                                        "for pauses")


def configure(parser) -> None:
    add_options(parser, PrefillProfilerConfig)


def execute(ns) -> int:
    return run(apply_namespace(PrefillProfilerConfig(), ns))


def run(args: PrefillProfilerConfig) -> int:
    args.check()
    m, seed = args.measurement, args.server_info.seed
    settings = PrefillSettings(tuple(args.prefill_lengths), m.num_repetitions,
                               args.num_warmup_requests,
                               m.fixed_request_generator_decode_tokens, seed).validate()
    fit = args.fit.settings(seed)
    probe_length = args.batching_probe_length or default_probe_length(settings.prompt_lengths)
    probe_repetitions = max(2, m.num_repetitions - 1)  # the batching and join probes' groups
    probe = None
    if not args.no_batching_probe:
        probe = BatchingSettings(probe_length, args.batching_probe_prompts,
                                 probe_repetitions).validate()
    join = None
    if args.join_probe_decoders:
        join = JoinSettings(args.join_probe_length or probe_length, args.join_probe_decoders,
                            args.join_probe_decode_tokens, repetitions=probe_repetitions).validate()
    idle = None
    if not args.no_idle_probe:
        idle = WakeUpSettings(args.idle_probe_length or probe_length, tuple(args.idle_probe_gaps),
                              args.idle_probe_repetitions, seed).validate()
    out = args.outputs.prepare()
    with ExitStack() as stack:
        session = open_session(args.connection, args.server_info, stack, PROG)
        n = len(settings.prompt_lengths) * settings.num_repetitions + settings.num_warmup
        print(f"{PROG}: {n} isolated requests, one in flight", file=sys.stderr)
        records, meas = measure_prefill(session.target, settings, PROG)
        write_records(records, out / "prefill_requests.jsonl")
        section = fit_prefill(meas, fit, settings)
        if join is not None:  # first: the batching probe takes its per-prompt cost out
            print(f"{PROG}: join probe, {join.repetitions} x {join.joins} prompts of "
                  f"{join.prompt_tokens} tokens joining {join.decoders} decoding sequences",
                  file=sys.stderr)
            section.join = probe_join(session.target, join, section)
            if not section.join:
                print(f"{PROG}: join probe inconclusive (no prompt's first token came with a "
                      f"decoder's; did the decoders finish first? raise "
                      f"--join-probe-decode-tokens); the request path keeps the prompt's "
                      f"fixed work", file=sys.stderr)
        if probe is not None:
            print(f"{PROG}: batching probe, {probe.repetitions} x 2 groups of "
                  f"{probe.prompt_tokens}-token prompts", file=sys.stderr)
            section.batching = probe_batching(session.target, probe, section)
            if not section.batching:
                print(f"{PROG}: batching probe inconclusive (no group's prompts shared one "
                      f"step; is the server's per-step token budget below "
                      f"{probe.followers * probe.prompt_tokens}?); prompts are priced alone",
                      file=sys.stderr)
        if idle is not None:
            print(f"{PROG}: idle probe, {idle.repetitions} requests after each of "
                  f"{len(idle.gaps_s)} pauses", file=sys.stderr)
            section.wake_up = probe_wake_up(session.target, idle, section)
    profile = Profile(source=session.source, prefill=section)
    save_outputs(profile, "prefill", out, args.merge_into, PROG)
    if not args.outputs.no_plots:
        from etalon.calibration.plots import plot_prefill

        plot_prefill(section, out / "prefill_fit.png")
    print_fit(section, PROG)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    sys.exit(main())
