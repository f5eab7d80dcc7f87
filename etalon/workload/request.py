"""One request of a workload: when it is scheduled and how long it is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    """A request of the open-loop schedule.

    ``arrival_time`` is the *scheduled* send time in seconds from the run start; the first
    request of a schedule is at ``0.0``. The client sends at that time whether or not earlier
    requests finished, and records the real send time separately.

    ``prefix_group`` names the shared prefix (system prompt) whose ``prefix_tokens`` tokens open
    the prompt (``prompt_tokens`` counts them); requests of one group share those tokens
    exactly, so a prefix cache can reuse their KV. ``None``: the prompt is the request's own.
    """

    request_id: int
    arrival_time: float
    prompt_tokens: int
    output_tokens: int
    prefix_group: int | None = None
    prefix_tokens: int = 0
    # a real prompt (from a dataset file) sent as it is; None: built from the corpus to length
    prompt_text: str | None = None
    # multi-turn sessions (workload/sessions.py): the session, the turn (from 0) and the tokens
    # of the conversation before this turn's new message (its prompt_tokens include them)
    session_id: int | None = None
    turn: int = 0
    context_tokens: int = 0
