"""Sends profiling requests through etalon's own load generator and hands back their records.

Profilers reuse the benchmark's client stack (``LoadGenerator`` + the registered OpenAI
clients), so a profile and a benchmark time tokens the same way. The generator runs in this
process (no Ray): a profiler controls concurrency exactly — one request in flight for prefill,
all of a level at once for decode — and a single clock orders every record of a call.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from etalon.cli_errors import UserError
from etalon.client.base import ClientConfig
from etalon.client.dispatcher import LoadGenerator
from etalon.records import RequestRecord
from etalon.workload.request import Request

LEAD_S = 0.05  # head start between prepare() and the first send


@dataclass
class Target:
    """A server to profile and how to reach it.

    ``deadline`` is a ``time.monotonic()`` value by which all profiling must end (``--timeout``);
    requests still in flight then are cancelled.
    """

    client_name: str
    config: ClientConfig
    tokenizer: str | None = None
    seed: int = 0
    deadline: float | None = None


def send(target: Target, requests: list[Request], *, concurrency: int) -> list[RequestRecord]:
    """Sends ``requests`` at their ``arrival_time`` with at most ``concurrency`` in flight;
    returns every record (failed ones included), ordered by request id."""
    stop_after = None
    if target.deadline is not None:
        stop_after = target.deadline - time.monotonic()
        if stop_after <= 0:
            raise UserError("profiling ran past --timeout before it finished; raise --timeout "
                            "or profile fewer points")
    gen = LoadGenerator(target.client_name, target.config, client_id=0,
                        max_concurrency=concurrency, tokenizer=target.tokenizer, seed=target.seed)
    gen.prepare(requests)
    gen.start(time.time() + LEAD_S, stop_after)
    out: list[dict] = []
    try:
        while not gen.progress()["done"]:
            time.sleep(0.01)
            out.extend(gen.drain())
    except KeyboardInterrupt:
        gen.stop()
        gen.join(10.0)
        raise
    gen.join(10.0)
    out.extend(gen.drain())
    return sorted((RequestRecord.from_dict(d) for d in out), key=lambda r: r.request_id)


def successful(records: list[RequestRecord], what: str, prog: str) -> list[RequestRecord]:
    """The records that completed with a first token; all failing is a ``UserError`` quoting
    the first failure, some failing a warning on stderr."""
    ok = [r for r in records if r.ok and len(r.chunk_times) > 0]
    failed = [r for r in records if not (r.ok and len(r.chunk_times) > 0)]
    if not ok:
        detail = f": {why_failed(failed[0])}" if failed else ""
        raise UserError(f"all {len(records)} {what} requests failed{detail}")
    if failed:
        print(f"{prog}: {len(failed)} of {len(records)} {what} requests failed and are left "
              f"out (first: {why_failed(failed[0])})", file=sys.stderr)
    return ok


def why_failed(record: RequestRecord) -> str:
    """One phrase on why a record is not a completed request."""
    if record.error_type is not None:
        return f"{record.error_type}: {record.error_message}"
    if record.empty:
        return (f"empty: the server answered with no token (finish_reason "
                f"{record.finish_reason})")
    return "unfinished: no completion"


def prompt_count_note(records: list[RequestRecord], chat: bool) -> str | None:
    """What a profiler tells the user when its prompt lengths are not the server's own counts
    (None when every record's came from the server's usage).

    It names where the lengths did come from, so it never asks for a ``--tokenizer`` that was
    given: the tokenizer (with the chat template for chat, or without one when the tokenizer
    has none, so the template's tokens are missing), or the requested lengths, which without
    a tokenizer were built to the ~4 characters per token estimate.
    """
    sources = {r.prompt_tokens_source for r in records}
    if sources <= {"usage"}:
        return None
    head = "the server sent no usage counts; prompt lengths come from"
    if "requested" in sources:
        return (f"{head} the requested lengths, estimated at ~4 characters per token "
                f"(pass --tokenizer for exact counts)")
    if chat and "tokenizer" in sources:
        return (f"{head} --tokenizer, which has no chat template: the tokens the server's "
                f"template adds are not counted")
    return f"{head} --tokenizer" + (" and its chat template" if chat else "")

