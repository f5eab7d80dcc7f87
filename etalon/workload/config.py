"""Workload options shared, flag for flag, by run_benchmark, the simulator and capacity search.

Each dataclass field is one command-line flag: ``--`` plus the field name with ``-`` for ``_``.
The field's metadata holds its help text, so the flags, their defaults and ``from_args`` cannot
drift apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

from .checks import require_int_at_least
from .intervals import INTERVAL_GENERATORS, make_interval_generator
from .lengths import LENGTH_GENERATORS, MAX_TOKENS_FLAG, make_length_generator


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _option(default: Any, help: str, type: Callable[[str], Any] | None = None, **extra: Any) -> Any:
    """A dataclass field that is also a flag; ``type`` defaults to the default value's type."""
    meta = {"help": help, "type": type or _type_of(default), **extra}
    return field(default=default, metadata=meta)


def _type_of(default: Any) -> Callable[[str], Any]:
    if isinstance(default, bool):
        return _parse_bool
    return type(default)


@dataclass
class WorkloadConfig:
    """Every workload option with its default; see docs/workload.md for the formulas."""

    request_interval_generator_provider: str = _option(
        "poisson", "How request arrivals are spaced.", choices="intervals"
    )
    poisson_request_interval_generator_qps: float = _option(
        1.0, "Mean request rate (requests/s) of the Poisson arrivals."
    )
    gamma_request_interval_generator_qps: float = _option(
        1.0, "Mean request rate (requests/s) of the gamma arrivals."
    )
    gamma_request_interval_generator_cv: float = _option(
        0.5, "Coefficient of variation of the gamma inter-arrival gaps (1 = Poisson)."
    )
    trace_request_interval_generator_trace_file: str | None = _option(
        None, "CSV with an arrival_time or arrived_at column (seconds).", type=str
    )
    trace_request_interval_generator_time_scale_factor: float = _option(
        1.0, "Multiplies the trace's gaps: 2.0 runs it at half the rate, 0.5 at double."
    )
    request_length_generator_provider: str = _option(
        "fixed", "How request prompt/output lengths are drawn.", choices="lengths"
    )
    uniform_request_length_generator_min_tokens: int = _option(
        1024, "Smallest total (prompt + output) tokens of a request."
    )
    uniform_request_length_generator_max_tokens: int = _option(
        4096, "Largest total (prompt + output) tokens of a request."
    )
    uniform_request_length_generator_prefill_to_decode_ratio: float = _option(
        20.0, "Prompt tokens per output token when splitting the total."
    )
    zipf_request_length_generator_theta: float = _option(
        0.6, "Zipf exponent: P(rank k) is proportional to 1/k^theta (0 = uniform)."
    )
    zipf_request_length_generator_scramble: bool = _option(
        False, "Map Zipf ranks to totals through a seeded permutation instead of in order."
    )
    zipf_request_length_generator_min_tokens: int = _option(
        1024, "Smallest total (prompt + output) tokens; rank 1 unless scrambled."
    )
    zipf_request_length_generator_max_tokens: int = _option(
        4096, "Largest total (prompt + output) tokens of a request."
    )
    zipf_request_length_generator_prefill_to_decode_ratio: float = _option(
        20.0, "Prompt tokens per output token when splitting the total."
    )
    fixed_request_generator_prefill_tokens: int = _option(256, "Prompt tokens of every request.")
    fixed_request_generator_decode_tokens: int = _option(64, "Output tokens of every request.")
    trace_request_length_generator_trace_file: str | None = _option(
        None, "CSV with num_prefill_tokens and num_decode_tokens columns.", type=str
    )
    trace_request_length_generator_prefill_scale_factor: float = _option(
        1.0, "Multiplies the trace's prompt token counts."
    )
    trace_request_length_generator_decode_scale_factor: float = _option(
        1.0, "Multiplies the trace's output token counts."
    )
    request_generator_max_tokens: int = _option(
        8192, "Cap on prompt + output tokens; longer requests are scaled down proportionally."
    )
    seed: int = _option(42, "Seed of the workload's random streams (same seed, same requests).")
    max_num_completed_requests: int = _option(
        100, "Number of requests to generate (fewer if a trace runs out)."
    )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> WorkloadConfig:
        """Reads the flags ``add_workload_args`` added (absent ones keep defaults); validates."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**values).validate()

    def validate(self) -> WorkloadConfig:
        """Cross-field and per-provider checks; raises ValueError naming the flag. Returns self.

        Builds the selected generators once (with a throwaway stream), so their parameter
        checks and the trace file checks run here, before a benchmark starts.
        """
        INTERVAL_GENERATORS.get(self.request_interval_generator_provider)
        LENGTH_GENERATORS.get(self.request_length_generator_provider)
        require_int_at_least(self.seed, 0, "--seed")
        require_int_at_least(self.max_num_completed_requests, 1, "--max-num-completed-requests")
        require_int_at_least(self.request_generator_max_tokens, 2, MAX_TOKENS_FLAG)
        make_interval_generator(self, np.random.default_rng(0))
        make_length_generator(self, np.random.default_rng(0))
        return self


_METAVARS: dict[Any, str] = {int: "N", float: "X", str: "PATH"}


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_workload_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds every workload flag (an argument group) to ``parser``; returns the parser."""
    group = parser.add_argument_group("workload")
    registries = {"intervals": INTERVAL_GENERATORS, "lengths": LENGTH_GENERATORS}
    for f in fields(WorkloadConfig):
        default = f.default if f.default is not MISSING else None
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": default,
            "type": f.metadata["type"],
            "help": f.metadata["help"].replace("%", "%%") + " (default: %(default)s)",
        }
        if "choices" in f.metadata:
            kwargs["choices"] = registries[f.metadata["choices"]].names()
        if isinstance(default, bool):
            kwargs.update(nargs="?", const=True, metavar="{true,false}")
        elif "choices" not in kwargs:
            kwargs["metavar"] = _METAVARS.get(f.metadata["type"], "VALUE")
        group.add_argument(flag_name(f.name), **kwargs)
    return parser
