"""Multi-turn sessions: conversations whose every turn resends the whole conversation so far.

Sessions arrive by the workload's interval generator (open loop across sessions); inside a
session the next turn is sent ``think_time_s`` after the previous answer ended (closed loop within
it), so a turn's send time is known only when the run (live or simulated) gets there. The
length generator draws each turn's *new* message and its output; turn ``j``'s prompt is the
conversation so far, ``context_j = sum_{k<j} (new_k + out_k)`` tokens, plus its new message, so
``prompt_tokens = context_j + new_j``. Request ``i`` of the schedule is turn ``i mod turns`` of
session ``i // turns``; a run of ``n`` requests holds ``ceil(n / turns)`` sessions (the last one
shorter when ``turns`` does not divide ``n``).

For a prefix cache (``--enable-prefix-caching``) a turn's prompt is the session's prefix
(``prefix_group`` = the session): the next turn resends it, so it hits the previous turn's
prompt blocks. The previous answer's blocks do not hit (the engine hashes prompt blocks only),
which leaves a later turn's TTFT a little high where vLLM, hashing answers too, would reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .request import Request


@dataclass(frozen=True)
class Sessions:
    """How a multi-turn workload chains its turns."""

    turns: int
    think_time_s: float = 0.0


def session_requests(session_times: np.ndarray, new_tokens: np.ndarray, output_tokens: np.ndarray,
                     turns: int, texts: list[str | None] | None = None) -> list[Request]:
    """Every turn of every session, in schedule order. A later turn's ``arrival_time`` is its
    session's arrival: the run sends it after the previous turn's answer instead."""
    out: list[Request] = []
    context = 0
    for i in range(len(new_tokens)):
        session, turn = divmod(i, turns)
        if turn == 0:
            context = 0
        new, produced = int(new_tokens[i]), int(output_tokens[i])
        # the whole prompt is the session's own prefix: the next turn repeats it token for token,
        # so a prefix cache identifies it by (session, position)
        out.append(Request(i, float(session_times[session]), context + new, produced,
                           prefix_group=session, prefix_tokens=context + new,
                           prompt_text=texts[i] if texts else None, session_id=session,
                           turn=turn, context_tokens=context))
        context += new + produced
    return out
