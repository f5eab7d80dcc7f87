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

import sys
from contextlib import ExitStack
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from etalon.calibration.anchor import AnchorProbe, AnchorSettings, anchored, default_prompt_tokens
from etalon.calibration.cli import ProfiledServer, open_session, write_records
from etalon.calibration.measure import why_failed
from etalon.cli_errors import UserError
from etalon.client.connection import SCRAPE_OPTIONS, ConnectionConfig
from etalon.commands import entry_points
from etalon.options import add_options, apply_namespace, check_required, embed, option
from etalon.profiles import load_profile, save_profile

PROG = "etalon.anchor_profile"
DESCRIPTION = "Re-anchor a fitted profile to the engine's speed now."
_D = AnchorSettings(prompt_tokens=0)


@dataclass
class AnchorConfig:
    REQUIRED: ClassVar[tuple[str, ...]] = ("profile",)

    profile: str | None = option(None, "the fitted profile (JSON)", metavar="FILE")
    output: str | None = option(None, "where the re-anchored profile goes (none: PROFILE with "
                                      ".anchored.json)", metavar="FILE")
    prompt_tokens: int | None = option(None, "prompt length of the probe (none: the middle of "
                                             "the profiled lengths)")
    output_tokens: int = option(_D.output_tokens, "output tokens of each probe request")
    num_requests: int = option(_D.requests, "probe requests, one in flight (the first is "
                                            "dropped)")
    records: str | None = option(None, "also write the probe's records (JSONL) here",
                                 metavar="FILE")
    connection: ConnectionConfig = embed(ConnectionConfig, title="server and client",
                                         defaults={"timeout": 3600.0}, exclude=SCRAPE_OPTIONS)
    server_info: ProfiledServer = embed(ProfiledServer, title="server and client")


def configure(parser) -> None:
    add_options(parser, AnchorConfig)


def execute(ns) -> int:
    return run(apply_namespace(AnchorConfig(), ns))


def default_output(profile: Path) -> Path:
    return profile.with_name(profile.name.removesuffix(".json") + ".anchored.json")


def run(args: AnchorConfig) -> int:
    check_required(args)
    args.connection.validate()
    source = Path(args.profile)
    profile = load_profile(source)
    probe = AnchorProbe(AnchorSettings(args.prompt_tokens or default_prompt_tokens(profile),
                                       args.output_tokens, args.num_requests)).validate()
    dest = Path(args.output) if args.output else default_output(source)
    if dest.suffix != ".json":
        raise UserError(f"--output {dest}: profiles are .json files")
    with ExitStack() as stack:
        session = open_session(args.connection, args.server_info, stack, PROG)
        print(f"{PROG}: {probe.announce()}", file=sys.stderr)
        records = probe.measure(session.target, profile.prefill or profile.decode)
    if args.records:
        write_records(records, Path(args.records))
    entries = probe.judge_profile(records, profile)
    if not entries:
        first = next((r for r in records if not r.ok), None)
        why = f" (first failure: {why_failed(first)})" if first else ""
        raise UserError(f"{probe.inconclusive()}{why}; {source} left as it was")
    save_profile(anchored(profile, entries), dest)
    for name, entry in entries.items():
        print(f"{name}: {entry.describe(name)}")
    print(f"{PROG}: re-anchored profile written to {dest}", file=sys.stderr)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    sys.exit(main())
