"""Workload options shared, flag for flag, by run_benchmark, the simulator and capacity search.

The workload's own settings are fields here; each interval, length and prefix generator declares its
parameters in its own config class (``params``), which ``per_entry`` lays out as flat flags such
as ``--poisson-request-interval-generator-qps``. A generator added to the registry (a plug-in
included) brings its flags with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from etalon.options import from_mapping, option, per_entry

from .checks import require_int_at_least
from .intervals import make_interval_generator
from .lengths import MAX_TOKENS_FLAG, make_length_generator
from .prefixes import make_prefix_generator


@dataclass
class WorkloadConfig:
    """Every workload option with its default; see docs/workload.md for the formulas."""

    request_interval_generator_provider: str = option(
        "poisson", "How request arrivals are spaced.", choices="interval_generator")
    request_length_generator_provider: str = option(
        "fixed", "How request prompt/output lengths are drawn.", choices="length_generator")
    request_prefix_generator_provider: str = option(
        "none", "Which shared prefix (system prompt) opens each prompt; the length generator "
                "then draws the rest.", choices="prefix_generator")
    request_generator_max_tokens: int = option(
        8192, "Cap on prompt + output tokens; longer requests are scaled down proportionally.")
    seed: int = option(42, "Seed of the workload's random streams (same seed, same requests).")
    max_num_completed_requests: int = option(
        100, "Requests in the schedule: each is sent, and failed ones count too (the name is "
             "the one users know); fewer if a trace runs out.")
    interval_params: dict[str, Any] = per_entry("interval_generator")
    length_params: dict[str, Any] = per_entry("length_generator")
    prefix_params: dict[str, Any] = per_entry("prefix_generator")

    @classmethod
    def of(cls, **settings: Any) -> WorkloadConfig:
        """A config from flat setting names (``poisson_request_interval_generator_qps=4``)."""
        return from_mapping(cls, settings, "workload")

    @property
    def interval(self) -> Any:
        """The selected interval generator's parameters (None if it has none)."""
        return self.interval_params.get(self.request_interval_generator_provider)

    @property
    def lengths(self) -> Any:
        """The selected length generator's parameters (None if it has none)."""
        return self.length_params.get(self.request_length_generator_provider)

    @property
    def prefixes(self) -> Any:
        """The selected prefix generator's parameters (None if it has none)."""
        return self.prefix_params.get(self.request_prefix_generator_provider)

    def validate(self) -> WorkloadConfig:
        """Cross-field and per-provider checks; raises UserError naming the flag. Returns self.

        Builds the selected generators once (with a throwaway stream), so their parameter
        checks and the trace file checks run here, before a benchmark starts.
        """
        require_int_at_least(self.seed, 0, "--seed")
        require_int_at_least(self.max_num_completed_requests, 1, "--max-num-completed-requests")
        require_int_at_least(self.request_generator_max_tokens, 2, MAX_TOKENS_FLAG)
        make_interval_generator(self, np.random.default_rng(0))
        make_length_generator(self, np.random.default_rng(0))
        make_prefix_generator(self, np.random.default_rng(0))
        return self

    def nominal_qps(self) -> float | None:
        """The mean request rate the interval generator aims at, when it has one."""
        qps = getattr(self.interval, "qps", None)
        return float(qps) if qps is not None else None
