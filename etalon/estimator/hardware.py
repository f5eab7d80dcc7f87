"""Accelerator specs: the catalog in ``etalon/data/hardware.yaml`` and user YAML files.

Specs are plain frozen dataclasses read with a strict schema (an unknown or missing key is an
error), because a typo such as ``memory_bandwith_gb_s`` would otherwise silently fall back to a
default and skew every estimate built on it.
"""

from __future__ import annotations

import difflib
from dataclasses import MISSING, asdict, dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from etalon.config_files import parse_yaml
from etalon.estimator.errors import EstimatorError

GiB = 1024**3
GB = 1e9
# The share of physical memory the driver keeps for itself (80 GiB H100 -> ~79.1 GiB visible).
DEFAULT_RESERVED_FRACTION = 0.012
KINDS = ("gpu", "tpu", "cpu")


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator. Bandwidths are GB/s per direction, FLOP/s are dense peaks in TFLOP/s."""

    key: str
    name: str
    kind: str
    memory_gib: float
    memory_bandwidth_gb_s: float
    tflops_bf16: float
    interconnect: str
    interconnect_bandwidth_gb_s: float
    interconnect_latency_us: float
    devices_per_node: int
    scaleout: str
    scaleout_bandwidth_gb_s: float
    scaleout_latency_us: float
    host_bandwidth_gb_s: float
    source: str
    tflops_fp8: float | None = None
    usable_memory_gib: float | None = None
    power_w: float | None = None
    price_per_hour_usd: float | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EstimatorError(f"hardware '{self.key}': kind must be one of {', '.join(KINDS)}, got '{self.kind}'")
        for f in ("memory_gib", "memory_bandwidth_gb_s", "tflops_bf16", "interconnect_bandwidth_gb_s",
                  "scaleout_bandwidth_gb_s", "host_bandwidth_gb_s", "devices_per_node"):
            value = getattr(self, f)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise EstimatorError(f"hardware '{self.key}': {f} must be a positive number, got {value!r}")

    @property
    def memory_bytes(self) -> float:
        """Memory the runtime reports as the device total, in bytes."""
        usable = self.usable_memory_gib or self.memory_gib * (1 - DEFAULT_RESERVED_FRACTION)
        return usable * GiB

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.memory_bandwidth_gb_s * GB

    def peak_flops(self, compute: str = "bf16") -> float:
        """Dense FLOP/s for a compute class; fp8 falls back to bf16 on devices without fp8."""
        if compute == "fp8" and self.tflops_fp8:
            return self.tflops_fp8 * 1e12
        return self.tflops_bf16 * 1e12

    def link(self, intra_node: bool = True) -> tuple[float, float]:
        """(bytes/s per direction, seconds per hop) of the link between two devices."""
        if intra_node:
            return self.interconnect_bandwidth_gb_s * GB, self.interconnect_latency_us * 1e-6
        return self.scaleout_bandwidth_gb_s * GB, self.scaleout_latency_us * 1e-6

    def summary(self) -> dict:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        out["usable_memory_gib"] = round(self.memory_bytes / GiB, 2)
        return out


_FIELDS = {f.name for f in fields(HardwareSpec)} - {"key"}
_REQUIRED = {f.name for f in fields(HardwareSpec) if f.default is MISSING} - {"key"}


def spec_from_dict(key: str, raw: Any, where: str = "hardware.yaml") -> HardwareSpec:
    """Build a HardwareSpec from one YAML mapping, rejecting unknown and missing keys."""
    if not isinstance(raw, dict):
        raise EstimatorError(f"{where}: entry '{key}' must be a mapping")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        close = {u: difflib.get_close_matches(u, _FIELDS, n=1) for u in unknown}
        hints = ", ".join(f"'{u}'" + (f" (did you mean '{c[0]}'?)" if c else "") for u, c in close.items())
        raise EstimatorError(f"{where}: entry '{key}' has unknown key(s) {hints}")
    missing = sorted(_REQUIRED - set(raw))
    if missing:
        raise EstimatorError(f"{where}: entry '{key}' is missing {', '.join(missing)}")
    values = dict(raw)
    values["aliases"] = tuple(str(a) for a in values.get("aliases") or ())
    return HardwareSpec(key=key, **values)


def _read_yaml(path: Path) -> dict:
    try:
        data = parse_yaml(path.read_bytes())
    except yaml.YAMLError as exc:
        raise EstimatorError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise EstimatorError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict) or not data:
        raise EstimatorError(f"{path}: expected a mapping of hardware name -> spec")
    return data


@lru_cache(maxsize=1)
def hardware_catalog() -> dict[str, HardwareSpec]:
    """The shipped catalog, by key (packaged read-only data, parsed once)."""
    path = Path(str(resources.files("etalon") / "data" / "hardware.yaml"))
    return {key: spec_from_dict(key, raw) for key, raw in _read_yaml(path).items()}


def hardware_names() -> list[str]:
    return list(hardware_catalog())


def _normalise(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def load_hardware(ref: str | Path | HardwareSpec) -> HardwareSpec:
    """Resolve a catalog key or alias (case and punctuation ignored: ``H100``, ``rtx4090``) or a
    path to a YAML file holding one or more entries in the catalog's schema (the first is used)."""
    if isinstance(ref, HardwareSpec):
        return ref
    text = str(ref).strip()
    path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise EstimatorError(f"hardware file not found: {text}")
        key, raw = next(iter(_read_yaml(path).items()))
        return spec_from_dict(str(key), raw, str(path))
    wanted = _normalise(text)
    for key, spec in hardware_catalog().items():
        if wanted == _normalise(key) or wanted in {_normalise(a) for a in spec.aliases}:
            return spec
    close = difflib.get_close_matches(text.lower(), hardware_names(), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise EstimatorError(f"unknown hardware '{text}'; {hint}valid: {', '.join(hardware_names())} or a YAML file")
