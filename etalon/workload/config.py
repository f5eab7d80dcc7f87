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

from etalon.cli_errors import UserError
from etalon.options import from_mapping, option, per_entry

from .checks import require_int_at_least, require_non_negative
from .intervals import ClosedLoop, ClosedLoopUsers, make_interval_generator
from .lengths import MAX_TOKENS_FLAG, make_length_generator
from .prefixes import make_prefix_generator
from .sessions import Sessions


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
    session_turns: int = option(
        1, "Turns per conversation: 1 sends independent requests; N > 1 makes multi-turn "
           "sessions that arrive by the interval generator, each turn's prompt the whole "
           "conversation so far (previous prompts and answers) plus a new message.")
    session_think_time_s: float = option(
        0.0, "Seconds between a turn's answer and its session's next turn (--session-turns, or "
             "a dataset's whole conversations).")
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
        require_int_at_least(self.session_turns, 1, "--session-turns")
        require_non_negative(self.session_think_time_s, "--session-think-time-s")
        if self.own_sessions and self.session_turns > 1:
            raise UserError("--session-turns and --dataset-request-length-generator-conversations "
                            "whole do not combine: each conversation of the file is a session "
                            "of its own turns; drop --session-turns")
        if self.own_sessions and self.request_interval_generator_provider == "closed_loop":
            raise UserError("--dataset-request-length-generator-conversations whole needs an "
                            "arrival process for the sessions, not closed_loop (a session is "
                            "already a closed loop within itself)")
        if self.session_turns > 1 and self.request_interval_generator_provider == "closed_loop":
            raise UserError("--session-turns > 1 needs an arrival process for the sessions, not "
                            "closed_loop (a session is already a closed loop within itself)")
        if self.session_turns > 1 and self.request_prefix_generator_provider != "none":
            raise UserError("--session-turns > 1 and --request-prefix-generator-provider "
                            f"{self.request_prefix_generator_provider} do not combine yet: a "
                            "session's own conversation is its shared prefix")
        if self.request_length_generator_provider == "dataset" \
                and self.request_prefix_generator_provider != "none":
            raise UserError("--request-length-generator-provider dataset sends the dataset's "
                            "prompts as they are: no --request-prefix-generator-provider with it")
        make_interval_generator(self, np.random.default_rng(0))
        make_length_generator(self, np.random.default_rng(0))
        make_prefix_generator(self, np.random.default_rng(0))
        return self

    @property
    def own_sessions(self) -> bool:
        """The length generator makes the sessions itself (a dataset's whole conversations, each
        its own number of turns) instead of ``--session-turns``."""
        return bool(getattr(self.lengths, "own_sessions", False))

    def sessions(self) -> Sessions | None:
        """How a multi-turn workload chains its turns; None for independent requests."""
        if self.own_sessions:
            return Sessions(None, self.session_think_time_s)
        if self.session_turns <= 1:
            return None
        return Sessions(self.session_turns, self.session_think_time_s)

    def closed_loop(self) -> ClosedLoop | None:
        """The users' settings of a closed-loop workload; None for an open-loop one."""
        if self.request_interval_generator_provider != "closed_loop":
            return None
        generator = make_interval_generator(self, np.random.default_rng(0))
        return generator.loop if isinstance(generator, ClosedLoopUsers) else None

    def nominal_qps(self) -> float | None:
        """The mean request rate the interval generator aims at, when it has one."""
        qps = getattr(self.interval, "qps", None)
        return float(qps) if qps is not None else None
