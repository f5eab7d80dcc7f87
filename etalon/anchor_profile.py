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

from etalon.calibration.anchor import AnchorProbe, AnchorSettings, anchored, default_prompt_tokens
from etalon.calibration.cli import add_server_args, check_server_args, open_session, write_records
from etalon.cli_errors import UserError, run_cli
from etalon.profiles import load_profile, save_profile

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
    probe = AnchorProbe(AnchorSettings(args.prompt_tokens or default_prompt_tokens(profile),
                                       args.output_tokens, args.num_requests)).validate()
    dest = Path(args.output) if args.output else default_output(source)
    if dest.suffix != ".json":
        raise UserError(f"--output {dest}: profiles are .json files")
    with ExitStack() as stack:
        session = open_session(args, stack, PROG)
        print(f"{PROG}: {probe.announce()}", file=sys.stderr)
        records = probe.measure(session.target, profile.prefill or profile.decode)
    if args.records:
        write_records(records, Path(args.records))
    entries = probe.judge_profile(records, profile)
    if not entries:
        first = next((r for r in records if not r.ok), None)
        why = f" (first failure: {first.error_type}: {first.error_message})" if first else ""
        raise UserError(f"{probe.inconclusive()}{why}; {source} left as it was")
    save_profile(anchored(profile, entries), dest)
    for name, entry in entries.items():
        print(f"{name}: {entry.describe(name)}")
    print(f"{PROG}: re-anchored profile written to {dest}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
