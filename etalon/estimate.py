"""``python -m etalon.estimate``: model a deployment analytically before it exists.

Subcommands: ``memory`` (per-device memory, KV pool and concurrency), ``latency`` (FLOPs and
roofline TTFT/TPOT/throughput), ``plan`` (valid TP sizes, minimum devices, recommended TP x PP x
EP), ``distributed`` (Petals-style pipelines over the internet) and ``catalog`` (what models and
hardware are built in). A user mistake prints one ``etalon.estimate: error: ...`` line to stderr
and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from etalon.estimator.commands import Report, run_catalog, run_latency, run_memory, run_plan
from etalon.estimator.commands_distributed import run_distributed
from etalon.estimator.distributed import ROUTES, SPLITS
from etalon.estimator.errors import EstimatorError

PROG = "etalon.estimate"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one stderr line and exit 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message}\n")
        sys.exit(2)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show each flag's default, unless its help already explains it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{text}'")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative numbers, got '{text}'")
    return values


def _str_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return values


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="catalog name (see `catalog`), path to a config.json (or its folder), or Hugging Face repo id "
                        "(required)")
    p.add_argument("--dtype", default=None,
                   help="weight format: bf16, fp16, fp32, fp8, int8, int4 (4.125 bits), mxfp4 (4.25 bits) "
                        "(default: the checkpoint's, e.g. fp8 for DeepSeek-V3, mxfp4 experts for gpt-oss)")
    p.add_argument("--kv-dtype", default="auto", help="KV-cache format: auto (= activation dtype), bf16, fp16, fp32, fp8")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    p.add_argument("--output-dir", default=None, help="write PNG plots into this folder (default: no plots)")


def _device(p: argparse.ArgumentParser, context_help: str, context_default: int | None) -> None:
    p.add_argument("--hardware", required=True,
                   help="catalog GPU/TPU (e.g. h100-sxm, a100-80gb, rtx-4090) or a YAML file (required)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size")
    p.add_argument("--pp", type=int, default=1, help="pipeline-parallel size")
    p.add_argument("--dp", type=int, default=1, help="data-parallel replicas")
    p.add_argument("--ep", type=int, default=1, help="expert-parallel size (MoE; must divide TP x DP)")
    p.add_argument("--context-len", type=int, default=context_default, help=context_help)
    p.add_argument("--batch-size", type=int, default=1, help="concurrent requests in the batch")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="share of device memory vLLM may use")
    p.add_argument("--block-size", type=int, default=16, help="tokens per KV block")
    p.add_argument("--max-num-batched-tokens", type=int, default=8192,
                   help="tokens per engine step (sizes the profile run and chunked prefill)")
    p.add_argument("--max-num-seqs", type=int, default=256, help="sequences sampled in the profile run")


def build_parser() -> argparse.ArgumentParser:
    fmt = _Help
    parser = _Parser(prog=f"python -m {PROG}", formatter_class=fmt,
                     description="Model an LLM deployment analytically: memory and KV cache, roofline latency, "
                                 "parallel layouts, and Petals-style distributed pipelines.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("memory", help="per-device memory, KV pool, blocks and max concurrency", formatter_class=fmt)
    _common(p)
    _device(p, "tokens per request (default: the model's maximum context)", None)

    p = sub.add_parser("latency", help="FLOPs and roofline TTFT / TPOT / throughput", formatter_class=fmt)
    _common(p)
    _device(p, "prompt tokens per request", 1024)
    p.add_argument("--output-len", type=int, default=256, help="generated tokens per request")
    p.add_argument("--mfu", type=float, default=0.5, help="achieved fraction of peak FLOP/s")
    p.add_argument("--mbu", type=float, default=0.8, help="achieved fraction of peak memory bandwidth")
    p.add_argument("--step-overhead-ms", type=float, default=0.5, help="fixed time per engine step")
    p.add_argument("--micro-batches", type=int, default=None, help="batches in flight under PP (default: PP)")

    p = sub.add_parser("plan", help="valid TP sizes, minimum devices and a recommended TP x PP (x EP)", formatter_class=fmt)
    _common(p)
    _device(p, "tokens per request to plan for (default: the model's maximum context)", None)
    p.add_argument("--concurrency", type=int, default=1, help="concurrent requests of --context-len the layout must hold")
    p.add_argument("--devices-per-node", type=int, default=None, help="devices per node (default: the hardware's)")

    p = sub.add_parser("distributed", help="Petals-style pipeline over internet-connected servers", formatter_class=fmt)
    _common(p)
    p.add_argument("--servers", type=int, default=4, help="number of servers")
    p.add_argument("--server-hardware", "--hardware", dest="server_hardware", type=_str_list, default=["rtx-4090"],
                   help="server GPU types, comma-separated, cycled over servers")
    p.add_argument("--client-hardware", default="cpu-16core", help="device running the embeddings and LM head")
    p.add_argument("--rtt-ms", type=float, default=50.0, help="round-trip time between parties")
    p.add_argument("--bandwidth-mbps", type=float, default=100.0, help="link bandwidth both ways, Mbit/s")
    p.add_argument("--upload-mbps", type=float, default=None, help="upload bandwidth (default: --bandwidth-mbps)")
    p.add_argument("--download-mbps", type=float, default=None, help="download bandwidth (default: --bandwidth-mbps)")
    p.add_argument("--route", default="chain", choices=sorted(ROUTES),
                   help="chain: server to server (N+1 hops); client: via the client (2N hops)")
    p.add_argument("--split", default="even", choices=sorted(SPLITS),
                   help="blocks per server: even, or memory (proportional to device memory)")
    p.add_argument("--batch-size", type=int, default=1, help="sequences decoded together")
    p.add_argument("--seq-lens", type=_int_list, default=[128, 256, 512, 1024, 2048, 4096, 8192], help="sequence lengths")
    p.add_argument("--mfu", type=float, default=0.5, help="server/client fraction of peak FLOP/s")
    p.add_argument("--mbu", type=float, default=0.8, help="server/client fraction of peak memory bandwidth")
    p.add_argument("--network-efficiency", type=float, default=0.8, help="fraction of nominal link bandwidth achieved")
    p.add_argument("--sweep-servers", type=_int_list, default=[2, 4, 8, 16], help="server counts to compare")
    p.add_argument("--sweep-hardware", type=_str_list, default=["rtx-2060", "rtx-4060", "rtx-4070-ti", "rtx-4090"],
                   help="server GPU types to compare")
    p.add_argument("--sweep-rtt-ms", type=_float_list, default=[5.0, 25.0, 50.0, 100.0, 200.0], help="RTTs to compare")
    p.add_argument("--sweep-bandwidth-mbps", type=_float_list, default=[10.0, 100.0, 1000.0], help="bandwidths to compare")

    p = sub.add_parser("catalog", help="list built-in models and hardware", formatter_class=fmt)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], Report]] = {
    "memory": run_memory,
    "latency": run_latency,
    "plan": run_plan,
    "distributed": run_distributed,
    "catalog": run_catalog,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = COMMANDS[args.command](args)
    except EstimatorError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    except OSError as exc:  # e.g. an --output-dir that cannot be written
        sys.stderr.write(f"{PROG}: error: {exc.strerror or exc}: {exc.filename or ''}\n")
        return 2
    if args.json:
        payload = dict(report.data)
        if report.files:
            payload["plots"] = report.files
        text = json.dumps(payload, indent=2, default=str)
    else:
        text = "\n".join([report.text, *(f"wrote {path}" for path in report.files)])
    try:
        print(text)
    except BrokenPipeError:  # `... | head`: the reader left, which is not an error
        sys.stdout = open(os.devnull, "w")
    return 0


if __name__ == "__main__":
    sys.exit(main())
