"""``etalon profile ops`` (``python -m etalon.operator_profiler``): time a model's layer operators.

Builds one device's share of a layer of ``--model`` (random weights, ``--tp`` shapes) with
PyTorch on the local GPU, or the CPU, times every operator (norms, QKV, rotary, attention, O,
residual add, gate/up, activation, down; embedding and LM head) over a grid of prefill lengths
and decode batch x context points, and writes:

- ``operator_profile.json``: one row per operator and point — the FLOPs, bytes and GEMM rows the
  operator roofline charges it, and the measured median, p10 and p90 seconds per launch;
- ``operator_fit.json``: the operator roofline's efficiencies and kernel floor fitted to it, the
  roofline's error per operator before and after, and under ``model`` a perf-model file for
  ``etalon simulate --perf-model-file``::

    etalon profile ops --model llama-3-8b --device cuda --output-dir h200_ops
    python -c 'import json; print(json.dumps(json.load(open("h200_ops/operator_fit.json"))["model"]))' > h200.json
    etalon simulate --perf-model-file h200.json ...

PyTorch is not an etalon dependency: install it for the device you profile.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from etalon.calibration.operator_profile import (
    OperatorMeasurement,
    OperatorProfile,
    fit_operator_profile,
    grid,
    load_operator_profile,
    point_kernels,
)
from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.estimator.hardware import hardware_catalog
from etalon.options import add_options, apply_namespace, check_required, option

PROG = "etalon.operator_profiler"
DESCRIPTION = "Time a model's layer operators with PyTorch and fit the operator roofline to them."


@dataclass
class OperatorProfilerConfig:
    REQUIRED: ClassVar[tuple[str, ...]] = ("model",)

    model: str | None = option(None, "catalog name (see `etalon estimate catalog`) or config "
                                     "path: the layer shapes to time")
    hardware: str | None = option(None, "catalog accelerator the fit reads peaks from (none: "
                                        "matched from the GPU's name; cpu-2core on a CPU)")
    device: str = option("auto", "cuda, cuda:N, cpu, or auto (a GPU when there is one)")
    dtype: str | None = option(None, "bf16, fp16 or fp32 (none: bf16 on a GPU, fp32 on a CPU)")
    tp: int = option(1, "tensor-parallel size: time one device's share of each layer")
    prefill_tokens: list[int] = option(default_factory=lambda: [16, 64, 256, 1024, 4096],
                                       help="prompt lengths of the prefill points")
    decode_batch_sizes: list[int] = option(default_factory=lambda: [1, 8, 32, 128],
                                           help="sequences per decode point")
    context_lengths: list[int] = option(default_factory=lambda: [512, 2048, 8192],
                                        help="context of each sequence at the decode points")
    repetitions: int = option(10, "timed loops per operator and point (median, p10, p90 kept)")
    warmup: int = option(3, "untimed calls before each operator's loops")
    loop_ms: float = option(2.0, "how long one timed loop runs (calls repeated to fill it)")
    seed: int = option(0, "random weights and inputs")
    fit: bool = option(True, "fit the operator roofline to the profile and report its error")
    refit: str | None = option(None, "fit an operator_profile.json measured before (no PyTorch "
                                     "needed) instead of measuring; --hardware overrides its "
                                     "hardware", metavar="FILE")
    output_dir: str = option("operator_profile", "where operator_profile.json and "
                                                 "operator_fit.json go")


def configure(parser) -> None:
    add_options(parser, OperatorProfilerConfig)


def execute(ns) -> int:
    return run(apply_namespace(OperatorProfilerConfig(), ns))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: PyTorch sees no CUDA device here")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise UserError(f"--device {device}: expected cpu, cuda, cuda:N or auto")
    return device


def match_hardware(device: str, name: str) -> str:
    """The catalog entry for the device: cpu-2core on a CPU; on a GPU the entry whose name
    holds the GPU's model (``NVIDIA H200`` -> h200) and shares most words with its name
    (``A100-SXM4-80GB`` -> a100-80gb), the first of a tie."""
    if device == "cpu":
        return "cpu-2core"
    words = set(re.findall(r"[a-z0-9]+", name.lower()))
    model = next(iter(re.findall(r"[a-z]*\d+[a-z]*", name.lower())), None)
    best, score = None, 0
    for key, spec in hardware_catalog().items():
        theirs = set(re.findall(r"[a-z0-9]+", spec.name.lower()))
        if model in theirs and len(words & theirs) > score:
            best, score = key, len(words & theirs)
    if best is None:
        raise UserError(f"no catalog hardware matches the GPU {name!r}: give --hardware")
    return best


def measure(args: OperatorProfilerConfig, device: str, name: str, dtype: str,
            hardware: str) -> OperatorProfile:
    """Times every operator at every grid point; prints one line per point."""
    import torch

    from etalon.calibration.torch_ops import LayerOperators, Timer

    profile = OperatorProfile({"model": args.model, "hardware": hardware, "tp": args.tp,
                               "dtype": dtype, "device": name,
                               "torch": torch.__version__, "python": platform.python_version(),
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "repetitions": args.repetitions, "loop_ms": args.loop_ms})
    roofline = profile.model()
    layer = LayerOperators(roofline.model, args.tp, dtype, device, args.seed)
    timer = Timer(device, args.repetitions, args.warmup, args.loop_ms / 1e3)
    points = grid(args.prefill_tokens, args.decode_batch_sizes, args.context_lengths)
    skipped: set[str] = set()
    for i, point in enumerate(points, 1):
        started = time.perf_counter()
        calls = layer.calls(point)
        for name, kernel in point_kernels(roofline, point).items():
            fn = calls.get(name)
            if fn is None:
                skipped.add(name)
                continue
            t = timer.time(fn)
            profile.measurements.append(OperatorMeasurement(
                name, kernel.kind, point.phase, point.tokens, point.batch, point.context,
                kernel.flops, kernel.bytes, kernel.rows, t.median_s, t.p10_s, t.p90_s, t.repetitions))
        del calls
        print(f"{PROG}: [{i}/{len(points)}] {point.label()}: {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
    if skipped:
        profile.source["not_measured"] = sorted(skipped)
    return profile


def print_fit(fit) -> None:
    print(f"{'operator':<14} {'points':>6} {'measured (ms)':>13} {'default err':>11} {'fitted err':>10}")
    for name, row in fit.per_operator.items():
        print(f"{name:<14} {row['points']:>6} {row['measured_s'] * 1e3:>13.3f} "
              f"{row['default_mean_abs_error']:>10.1%} {row['fitted_mean_abs_error']:>10.1%}")
    print(f"{'all':<14} {'':>6} {'':>13} {fit.default_error:>10.1%} {fit.fitted_error:>10.1%}")
    e = fit.efficiency
    print(f"fitted: gemm_efficiency {e.gemm_efficiency:.3f}, gemm_half_rows {e.gemm_half_rows:.1f}, "
          f"attention_efficiency {e.attention_efficiency:.3f}, bandwidth_efficiency "
          f"{e.bandwidth_efficiency:.3f}, bandwidth_half_bytes {e.bandwidth_half_bytes:.0f}, "
          f"kernel_floor {e.kernel_floor * 1e6:.1f} us")


def write_fit(profile: OperatorProfile, out: Path, hardware: str | None = None) -> None:
    fit = fit_operator_profile(profile, hardware)
    out.mkdir(parents=True, exist_ok=True)
    (out / "operator_fit.json").write_text(json.dumps(fit.to_dict(), indent=1) + "\n")
    print_fit(fit)
    if fit.unconstrained:
        print(f"{PROG}: the timings do not constrain {', '.join(fit.unconstrained)}; kept at "
              "the defaults", file=sys.stderr)
    print(f"{PROG}: fit written to {out / 'operator_fit.json'}", file=sys.stderr)


def run(args: OperatorProfilerConfig) -> int:
    if args.refit:
        write_fit(load_operator_profile(args.refit), Path(args.output_dir), args.hardware)
        return 0
    check_required(args)
    from etalon.calibration.torch_ops import TORCH_DTYPES, torch_missing_reason

    reason = torch_missing_reason()
    if reason:
        raise UserError(f"timing operators needs PyTorch: {reason}; --refit FILE fits a profile "
                        "measured elsewhere")
    if args.tp < 1 or args.repetitions < 1 or args.warmup < 0 or args.loop_ms <= 0:
        raise UserError("--tp and --repetitions must be >= 1, --warmup >= 0, --loop-ms > 0")
    device = resolve_device(args.device)
    dtype = args.dtype or ("fp32" if device == "cpu" else "bf16")
    if dtype not in TORCH_DTYPES:
        raise UserError(f"--dtype {dtype}: expected one of {', '.join(TORCH_DTYPES)}")
    from etalon.calibration.torch_ops import device_name

    name = device_name(device)
    hardware = args.hardware or match_hardware(device, name)
    out = Path(args.output_dir)
    print(f"{PROG}: {args.model} (TP {args.tp}, {dtype}) on {name}; the fit reads "
          f"{hardware}'s peaks", file=sys.stderr)
    profile = measure(args, device, name, dtype, hardware)
    path = out / "operator_profile.json"
    profile.save(path)
    print(f"{PROG}: {len(profile.measurements)} operator timings written to {path}", file=sys.stderr)
    if args.fit:
        write_fit(profile, out)
    return 0


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())
