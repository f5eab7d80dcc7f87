"""``python -m etalon.prefill_profiler``: measure TTFT against prompt length and fit a predictor.

Sends isolated requests (one in flight, warm-up first, a few repetitions per length) to an
OpenAI-compatible server or the embedded one, fits ``prefill_time(prompt_tokens)``, then probes
what a prompt joining decoding sequences adds to their step (``etalon.calibration.join``), how a
step with several prompts is priced (``etalon.calibration.batching``), and, on a server with
prefix caching, what attention over a cached prefix costs (``etalon.calibration.context``,
``--context-probe-prefixes``), and writes a
profile (JSON), the raw records (``prefill_requests.jsonl``) and a plot of measured vs fitted.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass

from etalon.calibration.cli import (
    ProfilerConfig,
    open_session,
    print_fit,
    save_outputs,
    write_records,
)
from etalon.calibration.batching import BatchingProbe, BatchingSettings, default_probe_length
from etalon.calibration.context import ContextProbe, ContextSettings
from etalon.calibration.join import JoinProbe, JoinSettings
from etalon.calibration.prefill import DEFAULT_LENGTHS, PrefillSettings, fit_prefill, measure_prefill
from etalon.calibration.probe import Probe
from etalon.calibration.wake_up import DEFAULT_GAPS, WakeUpProbe, WakeUpSettings
from etalon.commands import entry_points, exit_process
from etalon.options import add_options, apply_namespace, option
from etalon.profiles import Profile

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
    context_probe_prefixes: list[int] = option(
        default_factory=list,
        help="cached-prefix lengths of the context probe, multiples of the server's KV block "
             "(e.g. 256 512 768; none: no probe). Needs prefix caching on: it prices a new "
             "token's attention over a cached prefix")
    context_probe_suffix: int = option(64, "new tokens after each cached prefix (below the "
                                           "server's KV block)")


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
    batching = join = idle = None
    if not args.no_batching_probe:
        batching = BatchingProbe(BatchingSettings(probe_length, args.batching_probe_prompts,
                                                  probe_repetitions)).validate()
    if args.join_probe_decoders:
        join = JoinProbe(JoinSettings(args.join_probe_length or probe_length, args.join_probe_decoders,
                                      args.join_probe_decode_tokens,
                                      repetitions=probe_repetitions)).validate()
    if not args.no_idle_probe:
        idle = WakeUpProbe(WakeUpSettings(args.idle_probe_length or probe_length,
                                          tuple(args.idle_probe_gaps), args.idle_probe_repetitions,
                                          seed)).validate()
    context = None
    if args.context_probe_prefixes:
        context = ContextProbe(ContextSettings(args.context_probe_suffix,
                                               tuple(args.context_probe_prefixes),
                                               probe_repetitions)).validate()
    # the join first: the batching probe takes its per-prompt cost out
    probes: list[Probe] = [p for p in (join, batching, idle, context) if p is not None]
    out = args.outputs.prepare()
    with ExitStack() as stack:
        session = open_session(args.connection, args.server_info, stack, PROG)
        n = len(settings.prompt_lengths) * settings.num_repetitions + settings.num_warmup
        print(f"{PROG}: {n} isolated requests, one in flight", file=sys.stderr)
        records, meas = measure_prefill(session.target, settings, PROG)
        write_records(records, out / "prefill_requests.jsonl")
        section = fit_prefill(meas, fit, settings)
        for probe in probes:
            print(f"{PROG}: {probe.announce()}", file=sys.stderr)
            result = probe.run(session.target, section)
            if result is None:
                print(f"{PROG}: {probe.inconclusive()}", file=sys.stderr)
            else:
                section.attach(result)
    profile = Profile(source=session.source, prefill=section)
    save_outputs(profile, "prefill", out, args.merge_into, PROG)
    if not args.outputs.no_plots:
        from etalon.calibration.plots import plot_prefill

        plot_prefill(section, out / "prefill_fit.png")
    print_fit(section, PROG)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
