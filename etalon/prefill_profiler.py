"""``python -m etalon.prefill_profiler``: measure TTFT against prompt length and fit a predictor.

Sends isolated requests (one in flight, warm-up first, a few repetitions per length) to an
OpenAI-compatible server or the embedded one, fits ``prefill_time(prompt_tokens)``, then probes
what a prompt joining decoding sequences adds to their step (``etalon.calibration.join``), how a
step with several prompts is priced (``etalon.calibration.batching``), and writes a
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
from etalon.calibration.batching import BatchingProbe, BatchingSettings, default_probe_length
from etalon.calibration.join import JoinProbe, JoinSettings
from etalon.calibration.prefill import DEFAULT_LENGTHS, PrefillSettings, fit_prefill, measure_prefill
from etalon.calibration.probe import Probe
from etalon.calibration.wake_up import DEFAULT_GAPS, WakeUpProbe, WakeUpSettings
from etalon.cli_errors import run_cli
from etalon.profiles import Profile

PROG = "etalon.prefill_profiler"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--prefill-lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS),
                   help="prompt lengths to profile (tokens)")
    p.add_argument("--num-warmup-requests", type=int, default=2,
                   help="requests sent first and not measured")
    b = p.add_argument_group("batching probe (how a step with several prompts is priced)")
    b.add_argument("--batching-probe-length", type=int, default=None,
                   help="prompt length of the probe (default: the middle profiled length)")
    b.add_argument("--batching-probe-prompts", type=int, default=2,
                   help="prompts sharing the probed step")
    b.add_argument("--no-batching-probe", action="store_true",
                   help="skip the probe; the profile then prices each prompt's attention alone")
    j = p.add_argument_group("join probe (what a prompt adds to the step of sequences decoding)")
    j.add_argument("--join-probe-length", type=int, default=None,
                   help="prompt length of the joining prompts (default: the batching probe's)")
    j.add_argument("--join-probe-decoders", type=int, default=4,
                   help="sequences decoding when a prompt joins (0 skips the probe; the "
                        "profile then charges a prompt's fixed work to its request path)")
    j.add_argument("--join-probe-decode-tokens", type=int, default=64,
                   help="tokens each decoder generates; raise it for an engine whose decode "
                        "steps are much shorter than its prefills")
    w = p.add_argument_group("idle probe (the first step after a pause)")
    w.add_argument("--idle-probe-gaps", type=float, nargs="+", default=list(DEFAULT_GAPS),
                   help="idle seconds before the probe's requests (0 = back to back)")
    w.add_argument("--idle-probe-repetitions", type=int, default=3, help="requests per gap")
    w.add_argument("--idle-probe-length", type=int, default=None,
                   help="prompt length of the probe (default: the batching probe's)")
    w.add_argument("--no-idle-probe", action="store_true",
                   help="skip the probe; the profile then charges nothing for pauses")
    add_common_args(p, decode_tokens=2, repetitions=3)
    return p


def run(args) -> int:
    check_common(args)
    settings = PrefillSettings(tuple(args.prefill_lengths), args.num_repetitions,
                               args.num_warmup_requests,
                               args.fixed_request_generator_decode_tokens, args.seed).validate()
    fit = fit_settings(args)
    probe_length = args.batching_probe_length or default_probe_length(settings.prompt_lengths)
    probe_repetitions = max(2, args.num_repetitions - 1)  # the batching and join probes' groups
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
                                          args.seed)).validate()
    # the join first: the batching probe takes its per-prompt cost out
    probes: list[Probe] = [p for p in (join, batching, idle) if p is not None]
    out = output_dir(args)
    with ExitStack() as stack:
        session = open_session(args, stack, PROG)
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
