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
from etalon.calibration.batching import BatchingSettings, default_probe_length, probe_batching
from etalon.calibration.join import JoinSettings, probe_join
from etalon.calibration.prefill import DEFAULT_LENGTHS, PrefillSettings, fit_prefill, measure_prefill
from etalon.calibration.wake_up import DEFAULT_GAPS, WakeUpSettings, probe_wake_up
from etalon.profiles.profile import Profile
from etalon.cli_errors import run_cli

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
                              args.idle_probe_repetitions, args.seed).validate()
    out = output_dir(args)
    with ExitStack() as stack:
        session = open_session(args, stack, PROG)
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
