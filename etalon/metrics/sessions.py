"""Multi-turn sessions in the summary: how the first turn and the later ones fared.

A later turn carries the whole conversation so far, so its TTFT measures how well the server
reuses (prefix caching) or recomputes that context: the first-turn vs later-turn split is the
number a prefix cache moves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from etalon.metrics.distribution import Distribution
from etalon.records import RequestRecord


def session_summary(records: Sequence[RequestRecord]) -> dict | None:
    """Sessions, their turns and per-turn latency; None when the run had no sessions."""
    turns = [r for r in records if r.session_id is not None]
    if not turns:
        return None
    by_session: dict[int, list[RequestRecord]] = {}
    for r in turns:
        by_session.setdefault(r.session_id, []).append(r)

    def group(rs: list[RequestRecord]) -> dict:
        ok = [r for r in rs if r.ok]
        return {"requests": len(rs), "completed": len(ok),
                "mean_prompt_tokens": float(np.mean([r.requested_prompt_tokens for r in rs]))
                if rs else None,
                "ttft": Distribution.of([r.ttft for r in ok]).to_dict(),
                "e2e_latency": Distribution.of([r.e2e_latency for r in ok]).to_dict()}

    return {"sessions": len(by_session),
            "completed_sessions": sum(all(r.ok for r in rs) for rs in by_session.values()),
            "max_turns_sent": max(len(rs) for rs in by_session.values()),
            "first_turn": group([r for r in turns if r.turn == 0]),
            "later_turns": group([r for r in turns if r.turn and r.turn > 0])}
