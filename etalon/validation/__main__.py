"""``python -m etalon.validation --job validation/vllm_cpu_smollm2.yaml``: check the simulator against vLLM.

Starts vLLM on CPU, profiles it (or takes ``--profile``), re-anchors the profile before each
live Poisson run of the job, replays each run through ``etalon.validate`` with vLLM's own
scheduler settings, writes docs/validation_vllm_cpu.md and ``result.json``, and stops vLLM.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from etalon.cli_errors import UserError, run_cli
from etalon.launchers.vllm_cpu import vllm_cpu_missing_reason
from etalon.launchers.vllm_cpu.paths import repo_root

PROG = "etalon.validation"


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a fraction of the capacity must be in (0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    root = repo_root()
    p = argparse.ArgumentParser(prog="python -m etalon.validation",
                                description="Check etalon's simulator against vLLM on CPU and write the table.")
    p.add_argument("--job", default=str(root / "validation" / "vllm_cpu_smollm2.yaml"),
                   help="the validation job (YAML/JSON; validation/README.md); default: %(default)s")
    p.add_argument("--profile", default=None,
                   help="use this fitted profile instead of profiling the server afresh")
    p.add_argument("--save-profile", default=None, help="also write the fresh profile here")
    p.add_argument("--output-dir", default=str(root / ".cache" / "validation_vllm_cpu"),
                   help="profiles, live runs, validation outputs and result.json; default: %(default)s")
    p.add_argument("--doc", default=str(root / "docs" / "validation_vllm_cpu.md"),
                   help="the Markdown page to write; default: %(default)s")
    p.add_argument("--num-requests", type=_count, default=None,
                   help="requests per live run instead of the job's")
    p.add_argument("--loads", type=_fraction, nargs="+", default=None,
                   help="load levels (fractions of the capacity) instead of the job's")
    return p


def run(args: argparse.Namespace, command: str) -> int:
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = shlex.join(["python", "-m", PROG, *(sys.argv[1:] if argv is None else argv)])
    return run_cli(PROG, lambda: run(args, command))


if __name__ == "__main__":
    sys.exit(main())
