"""The validation job file: what to profile, how to anchor, which loads to run, what to hold.

A job (YAML or JSON, e.g. ``validation/vllm_cpu_smollm2.yaml``) states every number of the
loop, so the command, the real-engine test and the committed table run the same experiment.
It is strict: an unknown key, a missing key or a bad value is one :class:`UserError` naming the
file and the field (``validation/x.yaml: prefill.lengths[0]: must be >= 1, got 0``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from etalon.calibration.schema import Fields
from etalon.cli_errors import UserError
from etalon.config_files import load_mapping
from etalon.launchers.vllm_cpu.settings import VllmSchedulerSettings
from etalon.workload.config import WorkloadConfig

#: workload keys the loop sets itself: Poisson arrivals at each load's rate, the job's request
#: count and seed (and static arrivals for the capacity)
LOOP_WORKLOAD_KEYS = frozenset({"request_interval_generator_provider", "poisson_request_interval_generator_qps",
                                "max_num_completed_requests", "seed"})


@dataclass(frozen=True)
class PrefillPlan:
    """``etalon.prefill_profiler``: prompt lengths × repetitions, then its three probes."""

    lengths: tuple[int, ...]
    repetitions: int
    batching_probe_length: int
    batching_probe_prompts: int
    join_probe_length: int


@dataclass(frozen=True)
class DecodePlan:
    """``etalon.decode_profiler``: batch sizes × prompt lengths, each decoding ``output_tokens``."""

    batch_sizes: tuple[int, ...]
    prompt_lengths: tuple[int, ...]
    output_tokens: int
    repetitions: int


@dataclass(frozen=True)
class AnchorProbe:
    """``etalon.anchor_profile`` before and after each live run: isolated requests, first dropped."""

    prompt_tokens: int
    output_tokens: int
    num_requests: int


@dataclass(frozen=True)
class RooflineRef:
    """The roofline reported beside the profile (its MFU/MBU fitted to the anchored profile)."""

    model: str
    hardware: str
    dtype: str


@dataclass(frozen=True)
class ValidationJob:
    """One validation experiment against vLLM on CPU; ``path`` is where it was read from."""

    hardware: str  # the hardware label the profiles record
    prefill: PrefillPlan
    decode: DecodePlan
    anchor: AnchorProbe
    workload: dict[str, Any]  # WorkloadConfig fields of the live runs' requests (lengths)
    num_requests: int  # per live run
    loads: tuple[float, ...]  # fractions of the capacity
    capacity_streams: int  # capacity = throughput with this many requests always in flight
    tolerance: float  # the bound on TTFT and TBT p50/p90 the test holds
    seed: int
    roofline: RooflineRef
    server: VllmSchedulerSettings = field(default_factory=VllmSchedulerSettings)
    path: str = ""

    def workload_config(self, **loop: Any) -> WorkloadConfig:
        """The live runs' workload with what the loop sets (``loop``: arrivals, count)."""
        return WorkloadConfig(**self.workload, seed=self.seed, **loop)

    def with_overrides(self, *, num_requests: int | None = None,
                       loads: list[float] | None = None) -> "ValidationJob":
        """This job with the command line's ``--num-requests`` / ``--loads`` (checked there)."""
        changes: dict[str, Any] = {}
        if num_requests is not None:
            changes["num_requests"] = num_requests
        if loads:
            changes["loads"] = tuple(loads)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_job(path: str | Path) -> ValidationJob:
    """Reads and checks a job file; every mistake is one ``UserError`` naming file and field."""
    try:
        return _parse(load_mapping(path, "validation job"), str(path))
    except ValueError as exc:
        raise UserError(str(exc)) from None


# ---- parsing ---------------------------------------------------------------------------------
def _names(cls) -> set[str]:
    return {f.name for f in fields(cls)} - {"path"}


def _ints(f: Fields, key: str, minimum: int) -> tuple[int, ...]:
    value = f.raw(key)
    if not isinstance(value, list) or not value:
        raise ValueError(f"{f.at(key)}: expected a non-empty list of integers")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{f.at(key)}[{i}]: expected an integer, got {v!r}")
        if v < minimum:
            raise ValueError(f"{f.at(key)}[{i}]: must be >= {minimum}, got {v}")
    return tuple(value)


def _section(f: Fields, key: str, cls) -> Fields:
    sub = f.obj(key)
    sub.only(_names(cls))
    return sub


def _prefill(f: Fields) -> PrefillPlan:
    s = _section(f, "prefill", PrefillPlan)
    return PrefillPlan(lengths=_ints(s, "lengths", 1), repetitions=s.int("repetitions", minimum=1),
                       batching_probe_length=s.int("batching_probe_length", minimum=1),
                       batching_probe_prompts=s.int("batching_probe_prompts", minimum=2),
                       join_probe_length=s.int("join_probe_length", minimum=1))


def _decode(f: Fields) -> DecodePlan:
    s = _section(f, "decode", DecodePlan)
    return DecodePlan(batch_sizes=_ints(s, "batch_sizes", 1), prompt_lengths=_ints(s, "prompt_lengths", 1),
                      output_tokens=s.int("output_tokens", minimum=2), repetitions=s.int("repetitions", minimum=1))


def _anchor(f: Fields) -> AnchorProbe:
    s = _section(f, "anchor", AnchorProbe)
    return AnchorProbe(prompt_tokens=s.int("prompt_tokens", minimum=1),
                       output_tokens=s.int("output_tokens", minimum=2),
                       num_requests=s.int("num_requests", minimum=2))


def _roofline(f: Fields) -> RooflineRef:
    s = _section(f, "roofline", RooflineRef)
    return RooflineRef(model=s.str("model"), hardware=s.str("hardware"), dtype=s.str("dtype"))


def _server(f: Fields) -> VllmSchedulerSettings:
    if not f.has("server"):
        return VllmSchedulerSettings()
    s = _section(f, "server", VllmSchedulerSettings)
    readers = {"int": s.int, "bool": s.bool, "str": s.str, "float": s.num}
    kinds = {x.name: str(x.type) for x in fields(VllmSchedulerSettings)}
    values = {key: readers[kinds[key]](key) for key in s.data}  # each value of its field's type
    try:
        return VllmSchedulerSettings(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{s.where}: {exc}") from None


def _workload(f: Fields, seed: int, num_requests: int) -> dict[str, Any]:
    s = f.obj("workload")
    set_by_loop = sorted(set(s.data) & LOOP_WORKLOAD_KEYS)
    if set_by_loop:
        raise ValueError(f"{s.where}: {set_by_loop} are set by the loop (arrivals per load, "
                         "num_requests, seed at the top level)")
    s.only({x.name for x in fields(WorkloadConfig)} - LOOP_WORKLOAD_KEYS)
    try:
        WorkloadConfig(**s.data, seed=seed, max_num_completed_requests=num_requests).validate()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{s.where}: {exc}") from None
    return dict(s.data)


def _loads(f: Fields) -> tuple[float, ...]:
    loads = f.numbers("loads")
    if not loads:
        raise ValueError(f"{f.at('loads')}: expected a non-empty list of numbers")
    for i, x in enumerate(loads):
        if not 0 < x < 1:
            raise ValueError(f"{f.at('loads')}[{i}]: a fraction of the capacity must be in (0, 1), got {x}")
    return tuple(loads)


def _parse(data: dict, where: str) -> ValidationJob:
    f = Fields(data, where, root=True)
    f.only(_names(ValidationJob))
    tolerance = f.num("tolerance")
    if not 0 < tolerance < 1:
        raise ValueError(f"{f.at('tolerance')}: must be in (0, 1), got {tolerance}")
    seed, num_requests = f.int("seed", minimum=0), f.int("num_requests", minimum=2)
    return ValidationJob(
        hardware=f.str("hardware"), prefill=_prefill(f), decode=_decode(f), anchor=_anchor(f),
        workload=_workload(f, seed, num_requests), num_requests=num_requests, loads=_loads(f),
        capacity_streams=f.int("capacity_streams", minimum=1), tolerance=tolerance, seed=seed,
        roofline=_roofline(f), server=_server(f), path=where,
    )
