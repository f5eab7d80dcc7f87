"""A roofline per operator: every kernel of a step timed on its own, with shape-dependent efficiencies.

The global roofline (``roofline.py``) times a whole stage as ``max(FLOPs / (peak·mfu), bytes /
(bandwidth·mbu))``. Measured on H100s (issue 17) that misses in both directions: small decode
kernels cost a few µs however little they do, small GEMMs are far from peak, large GEMMs reach
~0.7 of peak rather than 0.5, the norms/activation/rotary/residual kernels are uncounted, and an
all-reduce has a fixed cost. Here each kernel of ``operators.OperatorInventory`` takes

    count · ( max(FLOPs / (peak · e_flops(M)),  bytes / (bandwidth · e_bw(bytes)))  +  floor )

with ``e_flops(M) = gemm_efficiency · M / (M + gemm_half_rows)`` (attention: ``attention_efficiency``
instead) and ``e_bw(B) = bandwidth_efficiency · B / (B + bandwidth_half_bytes)``; a collective
takes ``collective_latency + wire_seconds / link_efficiency`` (ring all-reduce: ``2(n-1)/n ·
bytes / link bandwidth``). A step is the sum over kernels plus ``step_overhead`` and
``per_prefill_seq`` per prompt chunk. Every default's source is in ``OperatorEfficiency`` and
docs/operator_roofline.md; ``etalon.calibration.operator_fit`` fits them to a profile.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from etalon.estimator.errors import EstimatorError
from etalon.estimator.hardware import HardwareSpec, load_hardware
from etalon.estimator.layout import ParallelConfig, validate_layout
from etalon.estimator.models import load_model
from etalon.estimator.shards import resolve_dtypes
from etalon.estimator.spec import ModelSpec
from etalon.perf.base import PerfModel, StepBatch
from etalon.perf.operators import ATTENTION, COLLECTIVE, KINDS, Kernel, OperatorInventory
from etalon.perf.roofline import check_overheads, check_spec_keys

MiB = 1024**2


@dataclass(frozen=True)
class OperatorEfficiency:
    """How close each kind of kernel gets to the hardware's peaks; what a fit sets.

    Defaults and their sources (docs/operator_roofline.md has the full list):

    - ``gemm_efficiency`` 0.70: large bf16 GEMMs. cuBLAS square bf16 GEMMs on an H100 SXM reach
      677 / 789 / 798 TFLOP/s at 2048 / 4096 / 8192 (0.68-0.81 of the 989 dense peak; published
      run in github.com/zzc0721/torch-performance-test-data issue 79); issue 17's H100 timings of
      real model GEMM shapes have a median of ~0.68. 0.70 sits between.
    - ``gemm_half_rows`` 64: tokens (GEMM rows) at which a GEMM gets half of that. Assumed: NVIDIA's
      Matrix Multiplication Background User's Guide (tile quantization) explains why a GEMM with
      fewer rows than a 64-256-row tile pays for the whole tile; 64 is the smallest common tile.
    - ``attention_efficiency`` 0.50: FlashAttention-3 reaches up to 75 % of H100 peak in FP16,
      FlashAttention-2 35 % (Shah et al., "FlashAttention-3", 2024, abstract); assumed midway
      since serving engines run either.
    - ``bandwidth_efficiency`` 0.85 and ``bandwidth_half_bytes`` 1 MiB: assumed. Issue 17
      measured small GEMMs at 0.4-0.9 of peak HBM bandwidth; a copy kernel that moves B bytes at
      0.85 of peak with a fixed ramp of 1 MiB worth of transfer (~0.4 µs on an H100) spans that.
    - ``kernel_floor`` 3 µs: assumed, the "few µs every kernel costs however small" of issue 17's
      H100 measurements (CUDA-graph replay; an eager PyTorch launch costs more).
    - ``collective_latency`` 25 µs: NCCL's own cost model predicts 25.9 µs for a 4 KiB
      all-reduce on H100s (github.com/NVIDIA/nccl issue 1453, NCCL_DEBUG tuning output); issue 17
      measured ~35 µs at TP 4-8.
    - ``link_efficiency`` 0.80: NVLink 4 moves 450 GB/s per direction at line rate; "with the
      protocol overhead (~20 %) NCCL can get an effective NVLink bandwidth of 370 GB/s" (an NCCL
      developer, github.com/NVIDIA/nccl-tests issue 212). Issue 17 measured 66-86 %.
    """

    gemm_efficiency: float = 0.70
    gemm_half_rows: float = 64.0
    attention_efficiency: float = 0.50
    bandwidth_efficiency: float = 0.85
    bandwidth_half_bytes: float = 1.0 * MiB
    kernel_floor: float = 3e-6
    collective_latency: float = 25e-6
    link_efficiency: float = 0.80

    FRACTIONS = ("gemm_efficiency", "attention_efficiency", "bandwidth_efficiency", "link_efficiency")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise EstimatorError(f"operator_roofline: efficiency.{f.name} must be a number, got {value!r}")
            if f.name in self.FRACTIONS and not 0 < value <= 1:
                raise EstimatorError(f"operator_roofline: efficiency.{f.name} must be in (0, 1], got {value}")
            if value < 0:
                raise EstimatorError(f"operator_roofline: efficiency.{f.name} must be >= 0, got {value}")

    @classmethod
    def from_mapping(cls, raw: dict, where: str) -> "OperatorEfficiency":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise EstimatorError(f"{where}: unknown efficiency key(s) {unknown}; valid: {sorted(known)}")
        return cls(**raw)

    def seconds(self, kinds: np.ndarray, flops_s: np.ndarray, bytes_s: np.ndarray,
                rows: np.ndarray, half_bytes_s: float, with_floor: bool = True) -> np.ndarray:
        """Seconds of one launch of each kernel, vectorised. ``flops_s`` / ``bytes_s`` are the
        kernels' FLOPs / peak and bytes / bandwidth (for a collective: its wire seconds),
        ``half_bytes_s`` is ``bandwidth_half_bytes`` / bandwidth."""
        rows = np.maximum(rows, 1e-12)
        shape = 1.0 + self.gemm_half_rows / rows
        e_flops = np.where(kinds == KINDS.index(ATTENTION), self.attention_efficiency, self.gemm_efficiency)
        compute = flops_s * shape / e_flops
        memory = (bytes_s + half_bytes_s) / self.bandwidth_efficiency
        floor = self.kernel_floor if with_floor else 0.0
        kernel = np.maximum(compute, memory) + floor
        collective = self.collective_latency + bytes_s / self.link_efficiency
        return np.where(kinds == KINDS.index(COLLECTIVE), collective, kernel)


@dataclass(frozen=True)
class OperatorTime:
    """One operator's share of a step: launches, FLOPs and bytes over them, seconds, and
    which roof bound it (compute, memory, floor or link)."""

    name: str
    kind: str
    count: int
    flops: float
    bytes: float
    seconds: float
    bound: str


@dataclass
class OperatorRooflinePerfModel(PerfModel):
    """Per-operator roofline step times of ``model`` on ``hardware`` under TP x PP (x EP).

    ``model`` / ``hardware`` / ``dtype`` / ``kv_dtype`` / ``tp`` / ``pp`` mean what they mean
    for ``RooflinePerfModel``; ``ep`` spreads MoE experts whole over EP ranks (all-to-alls
    instead of TP-split experts). ``efficiency`` holds the fitted constants; ``step_overhead``
    (seconds per step: scheduler, sampling on the host), ``request_path`` and ``per_prefill_seq``
    are the roofline's, so the fit that sets them carries over.
    """

    model: ModelSpec | str
    hardware: HardwareSpec | str
    tp: int = 1
    pp: int = 1
    ep: int = 1
    dtype: str | None = None
    kv_dtype: str | None = None
    efficiency: OperatorEfficiency = field(default_factory=OperatorEfficiency)
    step_overhead: float = 0.0
    request_path: float = 0.0
    per_prefill_seq: float = 0.0

    name = "operator_roofline"

    def __post_init__(self) -> None:
        self.model = load_model(self.model)
        self.hardware = load_hardware(self.hardware)
        if isinstance(self.efficiency, dict):
            self.efficiency = OperatorEfficiency.from_mapping(self.efficiency, "operator_roofline")
        check_overheads(self, "operator_roofline")
        validate_layout(self.model, ParallelConfig(tp=self.tp, pp=self.pp, ep=self.ep))
        weight, kv = resolve_dtypes(self.model, self.dtype, self.kv_dtype)
        self.dtype, self.kv_dtype = weight.name, kv.name
        self._peak = self.hardware.peak_flops(weight.compute)
        self._bandwidth = self.hardware.bandwidth_bytes_s
        self.inventory = OperatorInventory(self.model, self.hardware, self.tp, self.pp, self.ep, weight, kv)

    @classmethod
    def from_spec(cls, spec: dict, *, where: str = "operator_roofline perf model") -> "OperatorRooflinePerfModel":
        """Build from a plain mapping (a perf-model file, or ``describe()`` without ``kind``);
        unknown keys are errors, ``efficiency`` is a mapping of ``OperatorEfficiency`` fields."""
        check_spec_keys(cls, spec, where)
        spec = dict(spec)
        raw = spec.pop("efficiency", {}) or {}
        if not isinstance(raw, dict):
            valid = sorted(f.name for f in fields(OperatorEfficiency))
            raise EstimatorError(f"{where}: efficiency must be a mapping of {valid}")
        return cls(**spec, efficiency=OperatorEfficiency.from_mapping(raw, where))

    @property
    def request_path_s(self) -> float:
        return self.request_path

    def with_efficiency(self, **changes) -> "OperatorRooflinePerfModel":
        """A copy with some efficiency constants changed (what a fit tries)."""
        return replace(self, efficiency=replace(self.efficiency, **changes))

    # --- kernels as arrays -----------------------------------------------------------------------

    def kernel_arrays(self, kernels: list[Kernel]) -> dict[str, np.ndarray]:
        """The kernels' kind codes, counts, FLOP-seconds at peak, byte-seconds at peak
        bandwidth (collectives: wire seconds) and rows, as parallel arrays."""
        return {
            "kind": np.array([KINDS.index(k.kind) for k in kernels], dtype=int),
            "count": np.array([k.count for k in kernels], dtype=float),
            "flops_s": np.array([k.flops / self._peak for k in kernels], dtype=float),
            "bytes_s": np.array([k.wire_s if k.kind == COLLECTIVE else k.bytes / self._bandwidth
                                 for k in kernels], dtype=float),
            "rows": np.array([k.rows for k in kernels], dtype=float),
        }

    @property
    def half_bytes_s(self) -> float:
        return self.efficiency.bandwidth_half_bytes / self._bandwidth

    def seconds_each(self, arrays: dict[str, np.ndarray], with_floor: bool = True) -> np.ndarray:
        """Seconds of all launches of each kernel in ``arrays`` (``kernel_arrays``' layout)."""
        one = self.efficiency.seconds(arrays["kind"], arrays["flops_s"], arrays["bytes_s"],
                                      arrays["rows"], self.half_bytes_s, with_floor)
        return arrays["count"] * one

    def _kernel_seconds(self, k: Kernel) -> np.ndarray:
        """Seconds of all launches of one kernel whose fields may be arrays (vectorised decode)."""
        wire = k.wire_s if k.kind == COLLECTIVE else np.asarray(k.bytes) / self._bandwidth
        one = self.efficiency.seconds(np.asarray(KINDS.index(k.kind)), np.asarray(k.flops) / self._peak,
                                      wire, np.asarray(k.rows, dtype=float), self.half_bytes_s)
        return k.count * one

    # --- PerfModel -------------------------------------------------------------------------------

    def operator_times(self, batch: StepBatch) -> list[OperatorTime]:
        """Where the step's time goes, one row per operator name (layers and launches summed)."""
        kernels = self.inventory.kernels(batch)
        if not kernels:
            return []
        arrays = self.kernel_arrays(kernels)
        seconds = self.seconds_each(arrays)
        eff = self.efficiency
        shape = 1.0 + eff.gemm_half_rows / np.maximum(arrays["rows"], 1e-12)
        e = np.where(arrays["kind"] == KINDS.index(ATTENTION), eff.attention_efficiency, eff.gemm_efficiency)
        compute = arrays["flops_s"] * shape / e
        memory = (arrays["bytes_s"] + self.half_bytes_s) / eff.bandwidth_efficiency
        rows: dict[str, list] = {}
        for i, k in enumerate(kernels):
            if k.kind == COLLECTIVE:
                bound = "link"
            else:
                bound = max((compute[i], "compute"), (memory[i], "memory"), (eff.kernel_floor, "floor"))[1]
            row = rows.setdefault(k.name, [k.kind, 0, 0.0, 0.0, 0.0, {}])
            row[1] += k.count
            row[2] += float(k.flops) * k.count
            row[3] += float(k.bytes) * k.count
            row[4] += float(seconds[i])
            row[5][bound] = row[5].get(bound, 0.0) + float(seconds[i])
        return [OperatorTime(name, kind, count, flops, nbytes, secs, max(bounds, key=bounds.get))
                for name, (kind, count, flops, nbytes, secs, bounds) in rows.items()]

    def _fixed(self, batch: StepBatch) -> float:
        return self.step_overhead + self.per_prefill_seq * batch.num_prefill_seqs

    def step_time(self, batch: StepBatch) -> float:
        if batch.empty:
            return 0.0
        arrays = self.kernel_arrays(self.inventory.kernels(batch))
        return float(self.seconds_each(arrays).sum()) + self._fixed(batch)

    def decode_step_times(self, batch_size: int, context_sums: np.ndarray) -> np.ndarray:
        """Vectorised decode-only steps: only the attention kernels depend on the context."""
        ctx = np.asarray(context_sums, dtype=float)
        if batch_size <= 0:
            return np.zeros_like(ctx)
        total = np.zeros_like(ctx)
        for k in self.inventory.kernels(StepBatch.decode(batch_size, 0), decode_context=ctx):
            total = total + self._kernel_seconds(k)
        return total + self.step_overhead

    def describe(self) -> dict:
        return {
            "kind": self.name,
            "model": self.model.reference,
            "hardware": self.hardware.key,
            "tp": self.tp,
            "pp": self.pp,
            "ep": self.ep,
            "dtype": self.dtype,
            "kv_dtype": self.kv_dtype,
            "efficiency": asdict(self.efficiency),
            "step_overhead": self.step_overhead,
            "request_path": self.request_path,
            "per_prefill_seq": self.per_prefill_seq,
        }

