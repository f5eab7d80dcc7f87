"""Replays a recorded run (its ``requests.jsonl``, ``requests.parquet`` or run directory): its
requests, with their real scheduled arrivals and lengths.

Token counts prefer what the server reported (so a simulation of a live run sees the prompt the
server saw), falling back to what was requested. Shared prefixes and sessions come along: a
request keeps its prefix group and shared tokens, and a session's turn is its session's group
over its whole prompt, so a simulated prefix cache finds what the live server's could.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from etalon.cli_errors import UserError
from etalon.record_table import read_records
from etalon.workload.request import Request


def requests_from_records(path: str | Path) -> list[Request]:
    out = []
    for rec in read_records(path):
        prompt = rec.num_prompt_tokens or rec.requested_prompt_tokens
        output = (rec.num_output_tokens if rec.ok and rec.num_output_tokens
                  else rec.requested_output_tokens)
        if prompt < 1 or output < 1:
            raise UserError(f"{path}: request {rec.request_id} has no usable token counts")
        group, shared = rec.prefix_group, min(int(rec.prefix_tokens or 0), int(prompt))
        if rec.session_id is not None:
            # a turn's prompt is the conversation so far as the server counted it; the next
            # turn resends it and this answer (as workload/sessions.py plans it)
            group, shared = rec.session_id, int(prompt)
        out.append(Request(rec.request_id, rec.scheduled_at, int(prompt), int(output),
                           prefix_group=group, prefix_tokens=shared if group is not None else 0,
                           session_id=rec.session_id, turn=rec.turn or 0))
    if not out:
        raise UserError(f"{path}: no records to replay")
    first = min(r.arrival_time for r in out)
    return sorted((replace(r, arrival_time=r.arrival_time - first) for r in out),
                  key=lambda r: (r.arrival_time, r.request_id))
