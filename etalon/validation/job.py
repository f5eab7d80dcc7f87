"""The validation job: what to profile, how to anchor, which loads to run, what to hold.

A job file (YAML or JSON, e.g. ``validation/vllm_cpu_smollm2.yaml``) holds the loop's numbers,
so the command, the real-engine test and the committed table run the same experiment. It is
read like every etalon config file (:func:`etalon.options.load_config_file`): an unknown key or
an ill-typed value is one :class:`~etalon.cli_errors.UserError` naming the file and the key
(``validation/x.yaml: prefill: lengths: must be >= 1, got 0``); a key left out keeps the
default below, which is the shipped job's value.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etalon.profiles.schema import Fields
from etalon.cli_errors import UserError
from etalon.launchers.vllm_cpu.settings import SETTING_FIELDS, VllmSchedulerSettings
from etalon.options import embed, load_config_file, option, to_mapping
from etalon.workload.config import WorkloadConfig

#: workload keys the loop sets itself: the arrivals (Poisson at each load's rate, static for
#: the capacity), the request count and the seed (both at the job's top level)
LOOP_WORKLOAD_KEYS = frozenset({"request_interval_generator_provider", "poisson_request_interval_generator_qps",
                                "max_num_completed_requests", "seed"})


def _at_least(where: str, key: str, value: int | float, low: int | float) -> None:
    if value < low:
        raise UserError(f"{where}: {key}: must be >= {low}, got {value}")


def _all_at_least(where: str, key: str, values: tuple[int, ...], low: int) -> None:
    if not values:
        raise UserError(f"{where}: {key}: must not be empty")
    for i, v in enumerate(values):
        _at_least(where, f"{key}[{i}]", v, low)


@dataclass
class PrefillPlan:
    """``etalon.prefill_profiler``: prompt lengths × repetitions, then its probes."""

    lengths: tuple[int, ...] = option(
        (1, 4, 16, 32, 64, 96, 128, 192, 256, 384),
        "prompt lengths; 1 and 4 put the intercept where it is measured (fitted from 16 or 64 "
        "up it came out anywhere from 52 to 108 ms against a measured 85-91 ms)")
    repetitions: int = option(5, "requests per length; the fit's level is the median residual, "
                                 "so 5 outvote a disturbed one")
    batching_probe_length: int = option(256, "prompt length of the batching probe (3 x 256² "
                                             "cross-prompt pairs: ~0.2 s here, far above jitter)")
    batching_probe_prompts: int = option(3, "prompts sharing one step in the batching probe")
    join_probe_length: int = option(128, "prompts of the live runs' middle length joining 4 "
                                         "decoders (at 256 the fit's own error hid the ~8 ms)")
    context_probe_prefixes: tuple[int, ...] = option(
        (), "cached-prefix lengths of the context probe, multiples of the engine's KV block (a "
            "server with prefix caching on; none: no probe)")
    context_probe_suffix: int = option(64, "new tokens after each cached prefix (below the block)")

    def validate(self, where: str) -> PrefillPlan:
        _all_at_least(where, "lengths", self.lengths, 1)
        if self.context_probe_prefixes:  # empty: no probe
            _all_at_least(where, "context_probe_prefixes", self.context_probe_prefixes, 1)
        for key, low in (("repetitions", 1), ("batching_probe_length", 1), ("batching_probe_prompts", 2),
                         ("join_probe_length", 1), ("context_probe_suffix", 1)):
            _at_least(where, key, getattr(self, key), low)
        return self


@dataclass
class DecodePlan:
    """``etalon.decode_profiler``: batch sizes × prompt lengths, each decoding ``output_tokens``."""

    batch_sizes: tuple[int, ...] = option((1, 2, 4, 8), "concurrent sequences (the 60 % runs "
                                                        "reach 9-11: docs/real_engine.md)")
    prompt_lengths: tuple[int, ...] = option((64, 256), "prompt lengths (the context axis)")
    output_tokens: int = option(32, "tokens each request decodes")
    repetitions: int = option(3, "runs per level; the median of 3 outvotes a disturbed one")

    def validate(self, where: str) -> DecodePlan:
        _all_at_least(where, "batch_sizes", self.batch_sizes, 1)
        _all_at_least(where, "prompt_lengths", self.prompt_lengths, 1)
        _at_least(where, "output_tokens", self.output_tokens, 2)
        _at_least(where, "repetitions", self.repetitions, 1)
        return self


@dataclass
class AnchorProbe:
    """``etalon.anchor_profile`` before and after each live run: isolated requests, first dropped."""

    prompt_tokens: int = option(128, "prompt tokens per probe request")
    output_tokens: int = option(25, "output tokens per probe request")
    num_requests: int = option(5, "probe requests (the first is dropped)")

    def validate(self, where: str) -> AnchorProbe:
        for key, low in (("prompt_tokens", 1), ("output_tokens", 2), ("num_requests", 2)):
            _at_least(where, key, getattr(self, key), low)
        return self


@dataclass
class RooflineRef:
    """The roofline reported beside the profile (its MFU/MBU fitted to the anchored profile)."""

    model: str = option("smollm2-135m", "model catalog name")
    hardware: str = option("cpu-2core", "hardware catalog name")
    dtype: str = option("fp32", "weight dtype")


def _default_workload() -> dict[str, Any]:
    # 112..224 tokens in all, 6 prompt tokens per output token: prompts of 96..192, 16..32 out
    return {"request_length_generator_provider": "uniform",
            "uniform_request_length_generator_min_tokens": 112,
            "uniform_request_length_generator_max_tokens": 224,
            "uniform_request_length_generator_prefill_to_decode_ratio": 6}


@dataclass
class ValidationJob:
    """One validation experiment against vLLM on CPU; ``path`` is the file it was read from."""

    hardware: str = option("cpu-2core", "the hardware label the profiles record")
    server: dict[str, Any] = option(default_factory=dict, help="vLLM scheduler settings "
                                    "(VllmSchedulerSettings fields); empty: the launcher's")
    prefill: PrefillPlan = embed(PrefillPlan, section=True)
    decode: DecodePlan = embed(DecodePlan, section=True)
    anchor: AnchorProbe = embed(AnchorProbe, section=True)
    workload: dict[str, Any] = option(default_factory=_default_workload, help="the live runs' "
                                      "request lengths (workload settings but arrivals, count, seed)")
    num_requests: int = option(30, "requests per live run")
    seed: int = option(1, "seed of the live runs' workload")
    loads: tuple[float, ...] = option((0.3, 0.6), "load levels, fractions of the capacity")
    capacity_streams: int = option(4, "capacity = throughput with this many requests always in "
                                      "flight: where vLLM here stops batching almost for free")
    tolerance: float = option(0.15, "the bound on TTFT and TBT p50/p90 the test holds, per load")
    roofline: RooflineRef = embed(RooflineRef, section=True)
    path: str = field(default="", init=False)

    @property
    def settings(self) -> VllmSchedulerSettings:
        """The vLLM the job runs: :class:`VllmSchedulerSettings` with ``server`` laid over it."""
        return _server_settings(self.server, f"{self.path or 'job'}: server")

    def workload_config(self, **loop: Any) -> WorkloadConfig:
        """The live runs' workload plus what the loop sets (``loop``: arrivals, count)."""
        return WorkloadConfig.of(**self.workload, seed=self.seed, **loop)

    def validate(self) -> ValidationJob:
        where = self.path or "job"
        self.prefill.validate(f"{where}: prefill")
        self.decode.validate(f"{where}: decode")
        self.anchor.validate(f"{where}: anchor")
        _at_least(where, "num_requests", self.num_requests, 2)
        _at_least(where, "seed", self.seed, 0)
        _at_least(where, "capacity_streams", self.capacity_streams, 1)
        if not self.loads:
            raise UserError(f"{where}: loads: must not be empty")
        for i, x in enumerate(self.loads):
            if not 0 < x < 1:
                raise UserError(f"{where}: loads[{i}]: a fraction of the capacity must be in (0, 1), got {x}")
        if not 0 < self.tolerance < 1:
            raise UserError(f"{where}: tolerance: must be in (0, 1), got {self.tolerance}")
        set_by_loop = sorted(set(self.workload) & LOOP_WORKLOAD_KEYS)
        if set_by_loop:
            raise UserError(f"{where}: workload: {', '.join(set_by_loop)} set by the loop (arrivals per "
                            "load; num_requests and seed at the top level)")
        try:
            self.workload_config(max_num_completed_requests=self.num_requests).validate()
        except (UserError, ValueError) as exc:
            raise UserError(f"{where}: {exc}" if str(exc).startswith("workload") else
                            f"{where}: workload: {exc}") from None
        self.settings  # noqa: B018 (checks the server section)
        return self

    def with_overrides(self, *, num_requests: int | None = None,
                       loads: list[float] | None = None) -> ValidationJob:
        """This job with the command line's ``--num-requests`` / ``--loads``."""
        changes: dict[str, Any] = {}
        if num_requests is not None:
            changes["num_requests"] = num_requests
        if loads:
            changes["loads"] = tuple(loads)
        job = dataclasses.replace(self, **changes)
        job.path = self.path
        return job.validate()

    def to_dict(self) -> dict[str, Any]:
        """The job as a file would hold it (what ``result.json`` records)."""
        return to_mapping(self)


def _server_settings(server: dict[str, Any], where: str) -> VllmSchedulerSettings:
    """``VllmSchedulerSettings`` from a file's mapping, each value checked against its field's
    type first (built in one go: its cross-field checks see the whole mapping)."""
    try:
        unknown = sorted(set(server) - SETTING_FIELDS)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: "
                            f"{', '.join(sorted(SETTING_FIELDS))}")
        f = Fields(server, where, root=True)
        hints = typing.get_type_hints(VllmSchedulerSettings)
        readers = {int: f.int, bool: f.bool, str: f.str, float: f.num}
        return VllmSchedulerSettings(**{key: readers[hints[key]](key) for key in server})
    except ValueError as exc:
        msg = str(exc)
        raise UserError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def load_job(path: str | Path) -> ValidationJob:
    """Reads and checks a job file; every mistake is one ``UserError`` naming file and key."""
    job = load_config_file(ValidationJob, path, "validation job")
    job.path = str(path)
    return job.validate()
