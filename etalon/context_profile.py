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

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from etalon.calibration.cli import ProbeRunOptions, probe_into_copy
from etalon.calibration.context import ContextProbe, ContextSettings
from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.options import add_options, apply_namespace, embed, option
from etalon.profiles import ContextResult, Profile, Section
from etalon.records import RequestRecord

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
    probing: ProbeRunOptions = embed(ProbeRunOptions)


def configure(parser) -> None:
    add_options(parser, ContextConfig)


def execute(ns) -> int:
    return run(apply_namespace(ContextConfig(), ns))


def run(args: ContextConfig) -> int:
    """The context probe into a copy of ``--profile``; only its prefill section is priced."""
    def prepare(profile: Profile) -> tuple[ContextProbe, Section]:
        if profile.prefill is None:
            raise UserError(f"{Path(args.profile)}: no prefill section to add the price to")
        settings = ContextSettings(args.suffix_tokens, tuple(args.prefixes), args.num_repetitions)
        flags = ("--suffix-tokens", "--prefixes", "--num-repetitions")
        return ContextProbe(settings.validate(flags)), profile.prefill

    return probe_into_copy(args, PROG, ".context.json", "profile with the cached-context price",
                           prepare, _judge)


def _judge(probe: ContextProbe, records: list[RequestRecord],
           profile: Profile) -> dict[str, ContextResult]:
    """The price goes into the prefill section, the one the probe planned from."""
    result = probe.judge(records, profile.prefill)
    return {} if result is None else {"prefill": result}


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
