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
    ok = [r for r in records if r.ok and r.chunk_times]
    failed = [r for r in records if not (r.ok and r.chunk_times)]
    if not ok:
        first = failed[0] if failed else None
        detail = f": {first.error_type}: {first.error_message}" if first else ""
        raise UserError(f"all {len(records)} {what} requests failed{detail}")
    if failed:
        first = failed[0]
        print(f"{prog}: {len(failed)} of {len(records)} {what} requests failed and are left "
              f"out (first: {first.error_type}: {first.error_message})", file=sys.stderr)
    return ok
