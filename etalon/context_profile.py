"""``python -m etalon.context_profile``: measure what attention over a cached prefix costs, for
a profile fitted without it.

Runs the context probe (``etalon.calibration.context``) against a server with prefix caching on
and writes a copy of the profile whose prefill section carries the measured price
(``prefill.context``). The profilers' prompts share no prefix, so a profile taken with caching
off describes the same engine; this adds the one number caching needs::

    python -m etalon.context_profile --profile p.json --server http://127.0.0.1:8000/v1 \\
        --model my-model --tokenizer ./tok --prefixes 256 512 768 --output p.context.json
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from etalon.calibration.cli import ProfiledServer, open_session, write_records
from etalon.calibration.context import ContextProbe, ContextSettings
from etalon.calibration.measure import why_failed
from etalon.cli_errors import UserError
from etalon.client.connection import SCRAPE_OPTIONS, ConnectionConfig
from etalon.commands import entry_points
from etalon.options import add_options, apply_namespace, check_required, embed, option
from etalon.profiles import load_profile, save_profile

PROG = "etalon.context_profile"
DESCRIPTION = "Measure what attention over a cached prefix costs, into a copy of a profile."
_D = ContextSettings()


@dataclass
class ContextConfig:
    REQUIRED: ClassVar[tuple[str, ...]] = ("profile",)

    profile: str | None = option(None, "the fitted profile (JSON)", metavar="FILE")
    output: str | None = option(None, "where the profile with the measured price goes (none: "
                                      "PROFILE with .context.json)", metavar="FILE")
    prefixes: list[int] = option(default_factory=lambda: list(_D.prefix_lengths),
                                 help="cached-prefix lengths, multiples of the server's KV block")
    suffix_tokens: int = option(_D.suffix_tokens, "new tokens after each prefix (below the "
                                                  "server's KV block)")
    num_repetitions: int = option(_D.repetitions, "requests per prefix length, and with none")
    records: str | None = option(None, "also write the probe's records (JSONL) here",
                                 metavar="FILE")
    connection: ConnectionConfig = embed(ConnectionConfig, title="server and client",
                                         defaults={"timeout": 3600.0}, exclude=SCRAPE_OPTIONS)
    server_info: ProfiledServer = embed(ProfiledServer, title="server and client")


def configure(parser) -> None:
    add_options(parser, ContextConfig)


def execute(ns) -> int:
    return run(apply_namespace(ContextConfig(), ns))


def run(args: ContextConfig) -> int:
    check_required(args)
    args.connection.validate()
    source = Path(args.profile)
    profile = load_profile(source)
    if profile.prefill is None:
        raise UserError(f"{source}: no prefill section to add the price to")
    probe = ContextProbe(ContextSettings(args.suffix_tokens, tuple(args.prefixes),
                                         args.num_repetitions)).validate()
    dest = Path(args.output) if args.output else source.with_name(
        source.name.removesuffix(".json") + ".context.json")
    if dest.suffix != ".json":
        raise UserError(f"--output {dest}: profiles are .json files")
    with ExitStack() as stack:
        session = open_session(args.connection, args.server_info, stack, PROG)
        print(f"{PROG}: {probe.announce()}", file=sys.stderr)
        records = probe.measure(session.target, profile.prefill)
    if args.records:
        write_records(records, Path(args.records))
    result = probe.judge(records, profile.prefill)
    if result is None:
        first = next((r for r in records if not r.ok), None)
        why = f" (first failure: {why_failed(first)})" if first else ""
        raise UserError(f"{probe.inconclusive()}{why}; {source} left as it was")
    profile.prefill.attach(result)
    save_profile(profile, dest)
    print(f"prefill: {result.describe()}")
    print(f"{PROG}: profile with the cached-context price written to {dest}", file=sys.stderr)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    sys.exit(main())
