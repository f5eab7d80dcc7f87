"""``python -m etalon.anchor_profile``: re-anchor a fitted profile to the engine's speed now.

Sends a few isolated requests (seconds, not the minutes of a profile) to the profiled server,
compares their TTFT and inter-token gaps with the profile's own predictions, and writes a copy
of the profile whose prefill and decode sections predict that much slower or faster
(``etalon.calibration.anchor``). Use it before simulating or validating against a server whose
machine may have changed speed since it was profiled::

    python -m etalon.anchor_profile --profile p.json --server http://127.0.0.1:8000/v1 \\
        --model my-model --tokenizer ./tok --output p.now.json
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from etalon.calibration.anchor import AnchorSettings, anchored, default_prompt_tokens, judge, plan
from etalon.calibration.cli import add_server_args, check_server_args, open_session, write_records
from etalon.calibration.measure import send
from etalon.profiles.profile import load_profile, save_profile
from etalon.cli_errors import UserError, run_cli

PROG = "etalon.anchor_profile"


def build_parser() -> argparse.ArgumentParser:
    d = AnchorSettings(prompt_tokens=0)
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", required=True, help="the fitted profile (JSON)")
    p.add_argument("--output", default=None,
                   help="where the re-anchored profile goes (PROFILE with .anchored.json when not given)")
    p.add_argument("--prompt-tokens", type=int, default=None,
                   help="prompt length of the probe (the middle of the profiled lengths when not given)")
    p.add_argument("--output-tokens", type=int, default=d.output_tokens,
                   help="output tokens of each probe request")
    p.add_argument("--num-requests", type=int, default=d.requests,
                   help="probe requests, one in flight (the first is dropped)")
    p.add_argument("--records", default=None, help="also write the probe's records (JSONL) here")
    add_server_args(p)
    return p


def default_output(profile: Path) -> Path:
    return profile.with_name(profile.name.removesuffix(".json") + ".anchored.json")


def run(args) -> int:
    check_server_args(args)
    source = Path(args.profile)
    profile = load_profile(source)
    settings = AnchorSettings(args.prompt_tokens or default_prompt_tokens(profile),
                              args.output_tokens, args.num_requests).validate()
    dest = Path(args.output) if args.output else default_output(source)
    if dest.suffix != ".json":
        raise UserError(f"--output {dest}: profiles are .json files")
    with ExitStack() as stack:
        session = open_session(args, stack, PROG)
        print(f"{PROG}: {settings.requests} requests of {settings.prompt_tokens} prompt and "
              f"{settings.output_tokens} output tokens, one in flight", file=sys.stderr)
        records = send(session.target, plan(settings), concurrency=1)
    if args.records:
        write_records(records, Path(args.records))
    entries = judge(records, profile, settings)
    if not entries:
        first = next((r for r in records if not r.ok), None)
        why = f" (first failure: {first.error_type}: {first.error_message})" if first else ""
        raise UserError(f"no probe request after the first completed with tokens{why}; "
                        f"{source} left as it was")
    save_profile(anchored(profile, entries), dest)
    for name, e in entries.items():
        what = "TTFT" if name == "prefill" else "inter-token gap"
        print(f"{name}: engine {_speed(e['scale'])} than when profiled ({what} {e['measured_s'] * 1e3:.1f} "
              f"ms now, {e['predicted_s'] * 1e3:.1f} ms fitted, where the profile measured "
              f"{e['profiled_ratio']:.3f} x the fit); scale {e['scale']:.3f}")
    print(f"{PROG}: re-anchored profile written to {dest}", file=sys.stderr)
    return 0


def _speed(scale: float) -> str:
    return f"{abs(scale - 1):.1%} " + ("slower" if scale >= 1 else "faster")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
