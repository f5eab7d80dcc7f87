"""``python -m etalon.validation --job validation/vllm_cpu_smollm2.yaml``: check the simulator against vLLM.

Starts vLLM on CPU, profiles it (or takes ``--profile``), re-anchors the profile before each
live Poisson run of the job, replays each run through ``etalon.validate`` with vLLM's own
scheduler settings, writes docs/validation_vllm_cpu.md and ``result.json``, and stops vLLM.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.launchers.vllm_cpu import vllm_cpu_missing_reason
from etalon.launchers.vllm_cpu.paths import repo_root
from etalon.options import add_options, apply_namespace, option

PROG = "etalon.validation"
DESCRIPTION = "Check etalon's simulator against vLLM on CPU and write the table."


@dataclass
class EngineValidationConfig:
    job: str = option(default_factory=lambda: str(repo_root() / "validation" /
                                                  "vllm_cpu_smollm2.yaml"),
                      help="the validation job (YAML/JSON; validation/README.md)", metavar="FILE")
    profile: str | None = option(None, "use this fitted profile instead of profiling the server "
                                       "afresh", metavar="FILE")
    save_profile: str | None = option(None, "also write the fresh profile here", metavar="FILE")
    output_dir: str = option(default_factory=lambda: str(repo_root() / ".cache" /
                                                         "validation_vllm_cpu"),
                             help="profiles, live runs, validation outputs and result.json",
                             metavar="DIR")
    doc: str = option(default_factory=lambda: str(repo_root() / "docs" /
                                                  "validation_vllm_cpu.md"),
                      help="the Markdown page to write", metavar="FILE")
    num_requests: int | None = option(None, "requests per live run instead of the job's")
    loads: list[float] | None = option(None, "load levels (fractions of the capacity) instead "
                                             "of the job's")

    def validate(self) -> EngineValidationConfig:
        if self.num_requests is not None and self.num_requests < 2:
            raise UserError(f"--num-requests must be >= 2, got {self.num_requests}")
        for load in self.loads or ():
            if not 0 < load < 1:
                raise UserError(f"--loads: a fraction of the capacity must be in (0, 1), "
                                f"got {load:g}")
        return self


def configure(parser) -> None:
    add_options(parser, EngineValidationConfig)


def execute(ns) -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["validate-engine"]:  # run as `etalon validate-engine ...`
        argv = argv[1:]
    command = shlex.join(["python", "-m", PROG, *argv])
    return run(apply_namespace(EngineValidationConfig(), ns).validate(), command)


def run(args: EngineValidationConfig, command: str) -> int:
    """Checks everything a user can get wrong before vLLM starts, then runs the loop."""
    from etalon.validation.job import load_job

    job = load_job(args.job).with_overrides(num_requests=args.num_requests, loads=args.loads)
    if args.profile and args.save_profile:
        raise UserError("--profile and --save-profile exclude each other")
    if args.profile and not Path(args.profile).is_file():
        raise UserError(f"--profile {args.profile}: no such file")
    doc = Path(args.doc)
    if not doc.parent.is_dir():
        raise UserError(f"--doc {doc}: folder {doc.parent} does not exist")
    reason = vllm_cpu_missing_reason()
    if reason:
        raise UserError(f"vLLM on CPU is not set up: {reason}")

    from etalon.validation.loop import run_loop
    from etalon.validation.render import render

    out = Path(args.output_dir)
    result = run_loop(job, out, command=command, profile=Path(args.profile) if args.profile else None,
                      save_profile=Path(args.save_profile) if args.save_profile else None)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    doc.write_text(render(result))
    print(f"{PROG}: wrote {doc} (details in {out})", file=sys.stderr)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
