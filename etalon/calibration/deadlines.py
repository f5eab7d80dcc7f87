"""TTFT deadlines that scale with the prompt: what a fitted prefill curve says plus a slack.

A fixed TTFT SLO is unfair to long prompts and lax for short ones; a deadline of
``predicted_prefill_time(prompt) + slack`` asks each request to start streaming within ``slack``
seconds of what the deployment needs for that prompt alone, so missed deadlines measure queueing
and interference, not prompt length. ``run_benchmark --prefill-profile FILE --ttft-slack S``
uses this with each request's *requested* prompt length, so the deadline is fixed before the
request is sent.
"""

from __future__ import annotations

import math
import os

import numpy as np

from etalon.cli_errors import UserError
from etalon.profiles import Profile, load_profile


def ttft_deadline_for(profile: Profile | str | os.PathLike, prompt_tokens, slack: float,
                      *, strict: bool = True) -> float | np.ndarray:
    """Seconds: the profile's predicted prefill time of ``prompt_tokens`` (int or array) plus
    ``slack``.

    Raises ``ValueError`` for a negative or non-finite slack or a profile without a prefill
    section, and ``OutOfRangeError`` for a prompt beyond what the profile claims (with
    ``strict=False`` the physical model is used there instead).
    """
    if not (np.isfinite(slack) and slack >= 0):
        raise UserError(f"TTFT slack must be a finite number >= 0 seconds, got {slack}")
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    tokens = np.asarray(prompt_tokens, dtype=float)
    if np.any(tokens < 1):
        raise UserError("prompt_tokens must be >= 1")
    deadline = profile.section("prefill").predict({"prompt_tokens": tokens}, strict=strict) + slack
    return float(deadline) if deadline.ndim == 0 else deadline


def max_prompt_tokens(profile: Profile) -> int:
    """The longest prompt (tokens) ``ttft_deadline_for`` answers with ``strict=True``: the
    prefill section's claimed extrapolation limit, or its profiled maximum when none is claimed.
    """
    return math.floor(profile.section("prefill").limit("prompt_tokens"))
