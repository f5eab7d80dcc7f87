"""Replays a recorded run (its ``requests.jsonl``, ``requests.parquet`` or run directory): its
requests, with their real scheduled arrivals and lengths.

Token counts prefer what the server reported (so a simulation of a live run sees the prompt the
server saw), falling back to what was requested.
"""

from __future__ import annotations

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
        out.append(Request(rec.request_id, rec.scheduled_at, int(prompt), int(output)))
    if not out:
        raise UserError(f"{path}: no records to replay")
    first = min(r.arrival_time for r in out)
    return sorted((Request(r.request_id, r.arrival_time - first, r.prompt_tokens, r.output_tokens)
                   for r in out), key=lambda r: (r.arrival_time, r.request_id))
