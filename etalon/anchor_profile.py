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

from dataclasses import dataclass
from typing import ClassVar

from etalon.calibration.anchor import AnchorProbe, AnchorSettings, default_prompt_tokens
from etalon.calibration.cli import ProbeRunOptions, probe_into_copy
from etalon.commands import entry_points, exit_process
from etalon.options import add_options, apply_namespace, embed, option
from etalon.profiles import Profile, Section

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
    probing: ProbeRunOptions = embed(ProbeRunOptions)


def configure(parser) -> None:
    add_options(parser, AnchorConfig)


def execute(ns) -> int:
    return run(apply_namespace(AnchorConfig(), ns))


def run(args: AnchorConfig) -> int:
    """The anchor probe into a copy of ``--profile``: one set of records re-anchors each
    section it can (``AnchorProbe.judge_profile``)."""
    def prepare(profile: Profile) -> tuple[AnchorProbe, Section | None]:
        """One probe for both sections; it plans from neither, so either will do."""
        probe = AnchorProbe(AnchorSettings(args.prompt_tokens or default_prompt_tokens(profile),
                                           args.output_tokens, args.num_requests)).validate()
        return probe, profile.prefill or profile.decode

    return probe_into_copy(args, PROG, ".anchored.json", "re-anchored profile", prepare,
                           AnchorProbe.judge_profile)


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
