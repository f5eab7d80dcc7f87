"""Multi-turn sessions: conversations whose every turn resends the whole conversation so far.

Sessions arrive by the workload's interval generator (open loop across sessions); inside a
session the next turn is sent ``think_time_s`` after the previous answer ended (closed loop within
it), so a turn's send time is known only when the run (live or simulated) gets there.

Two sources plan the turns (a ``TurnPlan``), and one path turns a plan into requests:

* ``--session-turns N`` (``fixed_turns``): the length generator draws each turn's *new* message
  and its output; turn ``j``'s prompt is the conversation so far,
  ``context_j = sum_{k<j} (new_k + out_k)`` tokens, plus its new message, so
  ``prompt_tokens = context_j + new_j``. Request ``i`` of the schedule is turn ``i mod N`` of
  session ``i // N``; a run of ``n`` requests holds ``ceil(n / N)`` sessions (the last one
  shorter when ``N`` does not divide ``n``).
* a dataset's whole conversations (``LengthGenerator.session_plan``): each session is one
  recorded conversation, as many turns as it has; a turn's prompt tokens are the count of the
  conversation's text so far (``after_turn``) with the recorded replies.

Live, the load generator builds turn ``j``'s text as ``after_turn`` of turn ``j - 1``'s prompt and
the server's actual answer, followed by the new message.

For a prefix cache (``--enable-prefix-caching``) a turn's prompt is the session's prefix
(``prefix_group`` = the session): the next turn resends it and the answer, so it hits the
previous turn's prompt blocks and the blocks its answer filled (the simulator's engine hashes a
turn's answer as the session's tokens; the embedded server hashes prompt token ids only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .request import Request

TURN_END = "\n\n"  # what closes a turn's answer before the next message


@dataclass(frozen=True)
class Sessions:
    """How a multi-turn workload chains its turns: ``turns`` per session (None: each session has
    its own count, a dataset conversation's) and the think time between an answer and the next
    turn (seconds)."""

    turns: int | None
    think_time_s: float = 0.0


def after_turn(prompt: str, answer: str) -> str:
    """The conversation's text after a turn: the turn's prompt, its answer and ``TURN_END``; the
    next turn's prompt is this followed by its new message."""
    return prompt + answer + TURN_END


@dataclass(frozen=True)
class TurnPlan:
    """Every turn of a run's sessions, in schedule order: entry ``i`` is turn ``turn[i]`` (from 0)
    of session ``session[i]`` (sessions numbered from 0 in order, a session's turns contiguous).
    ``context_tokens`` counts the conversation before the turn's new message and
    ``prompt_tokens`` the whole prompt (it includes the context); ``texts`` holds each turn's
    new message when it is real text (a dataset's), else None."""

    session: np.ndarray
    turn: np.ndarray
    context_tokens: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    texts: list[str | None]

    def __len__(self) -> int:
        return len(self.session)

    @property
    def num_sessions(self) -> int:
        return int(self.session[-1]) + 1 if len(self.session) else 0

    def head(self, sessions: int) -> TurnPlan:
        """The plan's first ``sessions`` sessions (an arrival trace that ran out)."""
        k = int(np.searchsorted(self.session, sessions))
        return TurnPlan(self.session[:k], self.turn[:k], self.context_tokens[:k],
                        self.prompt_tokens[:k], self.output_tokens[:k], self.texts[:k])


def fixed_turns(new_tokens: np.ndarray, output_tokens: np.ndarray, turns: int,
                texts: list[str | None] | None = None) -> TurnPlan:
    """Sessions of ``turns`` turns each (the last one shorter): request ``i`` is turn
    ``i mod turns`` of session ``i // turns``, its context the earlier turns' new messages and
    outputs."""
    new = np.asarray(new_tokens, dtype=np.int64)
    out = np.asarray(output_tokens, dtype=np.int64)
    session, turn = np.divmod(np.arange(len(new)), turns)
    before = np.cumsum(new + out) - (new + out)  # every earlier request's tokens
    context = before - before[session * turns] if len(new) else before
    return TurnPlan(session, turn, context, context + new, out,
                    list(texts) if texts else [None] * len(new))


def session_requests(session_times: np.ndarray, plan: TurnPlan) -> list[Request]:
    """Every turn of every session, in schedule order. A later turn's ``arrival_time`` is its
    session's arrival: the run sends it after the previous turn's answer instead."""
    out: list[Request] = []
    for i in range(len(plan)):
        session, prompt = int(plan.session[i]), int(plan.prompt_tokens[i])
        # the whole prompt is the session's own prefix: the next turn repeats it token for token,
        # so a prefix cache identifies it by (session, position)
        out.append(Request(i, float(session_times[session]), prompt, int(plan.output_tokens[i]),
                           prefix_group=session, prefix_tokens=prompt, prompt_text=plan.texts[i],
                           session_id=session, turn=int(plan.turn[i]),
                           context_tokens=int(plan.context_tokens[i])))
    return out
