"""Multi-turn sessions in the summary: how the first turn and the later ones fared.

A later turn carries the whole conversation so far, so its TTFT measures how well the server
reuses (prefix caching) or recomputes that context: the first-turn vs later-turn split is the
number a prefix cache moves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from etalon.metrics.columns import RunColumns
from etalon.metrics.distribution import Distribution
from etalon.records import RequestRecord


def session_summary(records: "Sequence[RequestRecord] | RunColumns") -> dict | None:
    """Sessions, their turns and per-turn latency; None when the run had no sessions."""
    c = RunColumns.of(records)
    session = c.table.numbers("session_id")
    turns = ~np.isnan(session)
    if not turns.any():
        return None
    turn = c.table.numbers("turn")
    ok = c.ok
    _, which, sent = np.unique(session[turns], return_inverse=True, return_counts=True)
    failed_turns = np.bincount(which, weights=~ok[turns], minlength=len(sent))
    prompt = c.table.requests["requested_prompt_tokens"].to_numpy(np.int64)
    e2e = c.completed_at - c.sent_at

    def group(rows: np.ndarray) -> dict:
        done = rows & ok
        return {"requests": int(rows.sum()), "completed": int(done.sum()),
                "mean_prompt_tokens": float(np.mean(prompt[rows])) if rows.any() else None,
                "ttft": Distribution.of(c.ttft[done]).to_dict(),
                "e2e_latency": Distribution.of(e2e[done]).to_dict()}

    with np.errstate(invalid="ignore"):  # NaN turns (no session) are neither
        first, later = turns & (turn == 0), turns & (turn > 0)
    return {"sessions": len(sent),
            "completed_sessions": int((failed_turns == 0).sum()),
            "max_turns_sent": int(sent.max()),
            "first_turn": group(first),
            "later_turns": group(later)}
