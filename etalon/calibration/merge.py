"""``python -m etalon.calibration.merge a.json b.json -o both.json``: one profile from several.

The prefill and decode profilers each write a profile with one section; the server and the
simulator take a single ``--profile FILE`` holding both. A later file's section replaces an
earlier one's. Profiles of different models, engines or hardware are refused (a prefill curve of
one deployment with the decode curve of another describes neither) unless ``--force``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.options import add_options, apply_namespace, check_required, option
from etalon.profiles import Profile, load_profile, save_profile
from etalon.profiles.profile import SECTIONS

PROG = "etalon.calibration.merge"
DESCRIPTION = "One profile from several (later sections replace earlier ones)."
MUST_AGREE = ("model", "engine", "engine_version", "hardware")


def merge_profiles(profiles: list[Profile], *, force: bool = False) -> Profile:
    """Sections of later profiles replace earlier ones; ``source`` fields are combined."""
    if not profiles:
        raise UserError("nothing to merge")
    source: dict = {}
    sections: dict = {}
    for p in profiles:
        for key in MUST_AGREE:
            mine, theirs = source.get(key), p.source.get(key)
            if not force and mine is not None and theirs is not None and mine != theirs:
                raise UserError(f"{p.label}: {key} is {theirs!r} but an earlier profile's is "
                                 f"{mine!r}; these profiles describe different deployments "
                                 f"(--force merges anyway)")
        source.update({k: v for k, v in p.source.items() if v is not None})
        sections.update({name: getattr(p, name) for name in SECTIONS if getattr(p, name)})
    return replace(Profile(source=source, **sections), path=None)


@dataclass
class MergeConfig:
    REQUIRED = ("output",)

    output: str | None = option(None, "where the merged profile goes", aliases=("-o",),
                                metavar="FILE")
    force: bool = option(False, "merge profiles whose model/engine/hardware differ")


def configure(parser) -> None:
    parser.add_argument("profiles", nargs="+", help="profile files, earliest first")
    add_options(parser, MergeConfig)


def execute(ns) -> int:
    cfg = check_required(apply_namespace(MergeConfig(), ns))
    merged = merge_profiles([load_profile(f) for f in ns.profiles], force=cfg.force)
    path = save_profile(merged, cfg.output)
    have = [name for name in SECTIONS if getattr(merged, name) is not None]
    print(f"{PROG}: {'+'.join(have)} profile written to {path}", file=sys.stderr)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
