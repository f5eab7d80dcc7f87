"""``python -m etalon.run_benchmark``: an open-loop benchmark of an OpenAI-compatible server.

The arrival schedule is computed up front; Ray actor clients (or threads with ``--no-ray``) send
each request at its scheduled time and stream the answer; every finished request is appended to
``requests.jsonl`` at once; metrics, plots and W&B read those records and nothing else.

With ``--prefill-profile FILE --ttft-slack S`` each request's TTFT deadline is the profile's
predicted prefill time of its *requested* prompt length plus ``S``, computed for the whole
schedule before anything is sent and stored in its record's ``ttft_deadline``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from etalon.cli_errors import UserError, run_cli
from etalon.client import CLIENTS, ClientConfig
from etalon.client.pool import PoolSpec, run_pool
from etalon.records import RecordWriter, RequestRecord
from etalon.workload.config import WorkloadConfig, add_workload_args
from etalon.workload.schedule import build_requests

PROG = "etalon.run_benchmark"


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Flags about the server, the clients and the outputs (workload flags are separate)."""
    g = p.add_argument_group("server and clients")
    g.add_argument("--model", default=None,
                   help="model name sent in each request (default: the embedded server's)")
    g.add_argument("--server", default=None,
                   help="'local' starts the embedded server for the run; otherwise a base URL "
                        "(default: $OPENAI_API_BASE)")
    g.add_argument("--server-args", default="",
                   help="extra flags for the embedded server, e.g. \"--scheduler sarathi\"")
    g.add_argument("--llm-api", default="openai-completions", choices=sorted(CLIENTS),
                   help="client backend")
    g.add_argument("--num-ray-clients", type=int, default=2, help="load-generator actors")
    g.add_argument("--num-concurrent-requests-per-client", type=int, default=10,
                   help="in-flight cap per client; a request over it waits, which shows as "
                        "dispatch lag")
    g.add_argument("--no-ray", action="store_true",
                   help="run the load generators as threads of this process instead of Ray actors")
    g.add_argument("--ray-address", default=None, help="join an existing Ray cluster")
    g.add_argument("--timeout", type=float, default=600.0,
                   help="time limit of the whole run in seconds: sending stops, in-flight "
                        "requests are cancelled and recorded")
    g.add_argument("--request-timeout", type=float, default=600.0, help="per-request limit (s)")
    g.add_argument("--idle-timeout", type=float, default=120.0,
                   help="a stream silent this long (s) is a stalled request")
    g.add_argument("--tokenizer", default=None,
                   help="local Hugging Face tokenizer folder: exact prompt lengths and output "
                        "counts when the server sends no usage (default: word approximation)")
    g.add_argument("--additional-sampling-params", type=_json_object, default={},
                   help="JSON object merged into every request body")
    g.add_argument("--no-ignore-eos", action="store_true",
                   help="do not send vLLM's ignore_eos/min_tokens (for servers that reject them)")
    g.add_argument("--require-exact-output-lengths", action="store_true",
                   help="make a request that delivered fewer output tokens than requested (by "
                        "more than max(1 token, 2 %%)) a failed record (error_type short_output)")
    d = p.add_argument_group("deadlines (SLOs)")
    d.add_argument("--ttft-deadline", type=float, default=None,
                   help="TTFT deadline (s), the same for every request")
    d.add_argument("--prefill-profile", default=None, metavar="FILE",
                   help="per-request TTFT deadlines: the profile's predicted prefill time of the "
                        "requested prompt length plus --ttft-slack (excludes --ttft-deadline)")
    d.add_argument("--ttft-slack", type=float, default=None, metavar="S",
                   help="seconds added to the predicted prefill time (with --prefill-profile)")
    d.add_argument("--tbt-deadline", type=float, default=None, help="time-between-tokens deadline (s)")
    o = p.add_argument_group("outputs")
    o.add_argument("--output-dir", default="result_outputs", help="where results go")
    o.add_argument("--should-use-given-dir", action=argparse.BooleanOptionalAction, default=True,
                   help="write into --output-dir itself (else into a timestamped subfolder)")
    o.add_argument("--should-write-metrics", action=argparse.BooleanOptionalAction, default=False,
                   help="log config, summary, per-request table and plots to W&B")
    o.add_argument("--wandb-project", default=None)
    o.add_argument("--wandb-group", default=None)
    o.add_argument("--wandb-run-name", default=None)
    o.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    o.add_argument("--no-progress", action="store_true", help="no live progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m etalon.run_benchmark",
                                description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_args(p)
    add_workload_args(p)
    return p


def _check(args) -> None:
    if args.num_ray_clients < 1:
        raise UserError(f"--num-ray-clients must be >= 1, got {args.num_ray_clients}")
    if args.num_concurrent_requests_per_client < 1:
        raise UserError("--num-concurrent-requests-per-client must be >= 1")
    for flag in ("timeout", "request_timeout", "idle_timeout", "ttft_deadline", "tbt_deadline"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if args.tokenizer and not Path(args.tokenizer).exists():
        raise UserError(f"--tokenizer {args.tokenizer}: no such file or folder")
    if args.prefill_profile is not None and args.ttft_deadline is not None:
        raise UserError("--prefill-profile and --ttft-deadline are mutually exclusive: the "
                        "profile sets each request's TTFT deadline")
    if args.prefill_profile is not None and args.ttft_slack is None:
        raise UserError("--prefill-profile needs --ttft-slack S (seconds added to the predicted "
                        "prefill time)")
    if args.ttft_slack is not None:
        if args.prefill_profile is None:
            raise UserError("--ttft-slack needs --prefill-profile FILE")
        if not (math.isfinite(args.ttft_slack) and args.ttft_slack >= 0):
            raise UserError(f"--ttft-slack must be a finite number >= 0, got {args.ttft_slack}")


def _ttft_deadlines(args, requests) -> dict[int, float] | None:
    """``{request_id: TTFT deadline (s)}`` from ``--prefill-profile``, for the whole schedule.

    The requested prompt length is used (known before sending, so the deadline is fixed up
    front). A prompt beyond what the profile claims fails the run before it starts.
    """
    if args.prefill_profile is None:
        return None
    from etalon.calibration.deadlines import max_prompt_tokens, ttft_deadline_for
    from etalon.calibration.profile import load_profile
    from etalon.calibration.section import OutOfRangeError

    where = f"--prefill-profile {args.prefill_profile}"
    try:
        profile = load_profile(args.prefill_profile)
        profile.section("prefill")
    except ValueError as exc:
        raise UserError(f"--prefill-profile: {exc}") from None
    lengths = [r.prompt_tokens for r in requests]
    try:
        deadlines = ttft_deadline_for(profile, lengths, args.ttft_slack)
    except OutOfRangeError:
        limit = max_prompt_tokens(profile)
        over = sum(n > limit for n in lengths)
        raise UserError(f"{where}: covers prompts up to {limit} tokens, but {over} of "
                        f"{len(lengths)} scheduled requests are longer (longest {max(lengths)}); "
                        f"shorten the prompts or profile longer ones") from None
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None
    bad = [n for n, d in zip(lengths, deadlines) if not d > 0]
    if bad:
        raise UserError(f"{where}: the predicted TTFT deadline of a {bad[0]}-token prompt is "
                        f"not > 0 s; pass a larger --ttft-slack")
    return {r.request_id: float(d) for r, d in zip(requests, deadlines)}


def _output_dir(args) -> Path:
    out = Path(args.output_dir)
    if not args.should_use_given_dir:
        out = out / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    stale = out / "requests.jsonl"
    if stale.exists():
        stale.unlink()  # a fresh run; records are appended as they finish
    return out


def run(args) -> int:
    _check(args)
    workload = WorkloadConfig.from_args(args)
    requests = build_requests(workload)
    ttft_deadlines = _ttft_deadlines(args, requests)
    out = _output_dir(args)
    with ExitStack() as stack:
        base_url, model = _server(args, stack)
        config = ClientConfig(base_url=base_url, model=model,
                              api_key=os.environ.get("OPENAI_API_KEY"),
                              request_timeout=args.request_timeout, idle_timeout=args.idle_timeout,
                              additional_sampling_params=args.additional_sampling_params,
                              ignore_eos=not args.no_ignore_eos, tokenizer=args.tokenizer,
                              require_exact_output_lengths=args.require_exact_output_lengths)
        spec = PoolSpec(args.llm_api, config, args.num_ray_clients,
                        args.num_concurrent_requests_per_client, args.tokenizer, workload.seed,
                        use_ray=not args.no_ray, ray_address=args.ray_address)
        run_config = {
            "benchmark": {k: v for k, v in vars(args).items() if k not in WorkloadConfig.__dataclass_fields__},
            "workload": asdict(workload), "client": config.redacted(),
            "num_requests_scheduled": len(requests),
        }
        records = _dispatch(spec, requests, out, args, ttft_deadlines)
    return _finish(records, run_config, out, args, requests)


def _server(args, stack: ExitStack) -> tuple[str, str]:
    from etalon.server.process import resolve_server

    base_url, model, _ = resolve_server(args.server, args.model, args.server_args, args.tokenizer,
                                        stack, PROG)
    return base_url, model


def _dispatch(spec: PoolSpec, requests, out: Path, args,
              ttft_deadlines: dict[int, float] | None = None) -> list[RequestRecord]:
    from etalon.report.progress import Progress

    records: list[RequestRecord] = []
    progress = Progress(len(requests), enabled=not args.no_progress)
    with RecordWriter(out / "requests.jsonl") as writer:
        def on_record(data: dict) -> None:
            record = RequestRecord.from_dict(data)
            if ttft_deadlines is not None:
                record.ttft_deadline = ttft_deadlines.get(record.request_id)
            records.append(record)
            writer.write(record)

        def on_progress(totals: dict, elapsed: float) -> None:
            progress.update(totals["completed"] - totals["errors"], totals["in_flight"],
                            totals["errors"], elapsed)

        try:
            result = run_pool(spec, requests, on_record, time_limit=args.timeout,
                              on_progress=on_progress)
        finally:
            progress.close()
    if result.interrupted:
        print(f"{PROG}: interrupted; writing what finished", file=sys.stderr)
    if result.timed_out or result.not_dispatched:
        print(f"{PROG}: time limit of {args.timeout:g} s reached; {result.not_dispatched} "
              f"request(s) never sent", file=sys.stderr)
    args._anchors = result.anchors
    args._not_dispatched = result.not_dispatched
    return records


def _finish(records, run_config: dict, out: Path, args, requests) -> int:
    from etalon.metrics.summary import summarize
    from etalon.report.console import print_summary
    from etalon.report.files import write_run_outputs

    records.sort(key=lambda r: r.request_id)
    # The load check compares sends with the realised schedule (not the nominal rate, which a
    # short Poisson schedule misses by sampling noise alone); the nominal rate is reported.
    summary = summarize(records, ttft_deadline=args.ttft_deadline, tbt_deadline=args.tbt_deadline)
    if args.prefill_profile is not None:
        summary["parameters"].update(ttft_slack_s=args.ttft_slack,
                                     prefill_profile=str(args.prefill_profile))
    summary["run"] = {"nominal_qps": _target_qps(args), "num_scheduled": len(requests),
                      "not_dispatched": args._not_dispatched,
                      "clock_anchors": args._anchors, "finished_at": time.time()}
    run_config = {k: v for k, v in run_config.items()}
    run_config["benchmark"] = {k: v for k, v in run_config["benchmark"].items()
                               if not k.startswith("_")}
    paths = write_run_outputs(out, records, summary, run_config, plots=not args.no_plots)
    print_summary(summary)
    print(f"{PROG}: results in {out}", file=sys.stderr)
    if args.should_write_metrics:
        if not args.wandb_project:
            print(f"{PROG}: --should-write-metrics needs --wandb-project; W&B skipped",
                  file=sys.stderr)
        else:
            from etalon.report.wandb_logger import log_to_wandb

            plots = {k: v for k, v in paths.items() if k.startswith("plot/")}
            log_to_wandb(args.wandb_project, args.wandb_group, args.wandb_run_name, run_config,
                         summary, records, plots)
    return 0


def _target_qps(args) -> float | None:
    provider = args.request_interval_generator_provider
    if provider == "poisson":
        return args.poisson_request_interval_generator_qps
    if provider == "gamma":
        return args.gamma_request_interval_generator_qps
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
