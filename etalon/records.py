"""The per-request record: one schema for live benchmarks, the embedded server and the simulator.

Every metric, plot, SLO check and report reads these records and nothing else, so a simulated
run and a live run are compared by the same code.

Times are seconds relative to the run's start (``t = 0`` is the first scheduled arrival slot).
Live clients measure them with a monotonic clock and convert through one wall-clock anchor per
actor; the simulator writes its virtual clock directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Iterable, Iterator

import orjson

from etalon.cli_errors import UserError


@dataclass
class RequestRecord:
    """What happened to one request.

    ``chunk_times[i]`` is when the i-th content-bearing chunk arrived and ``chunk_tokens[i]`` how
    many tokens it carried (1 for most servers; more when a server batches tokens per SSE event).
    Role-only and empty chunks are not recorded: they carry no tokens. A live client appends
    to lists; the simulator hands over numpy arrays (a 100k-request ShareGPT run has 44 M
    token times: as Python floats 1.4 GB, as arrays 350 MB), so code reading a record treats
    both as sequences (``len(...)``, never truthiness).

    ``num_prompt_tokens`` / ``num_output_tokens`` are the counts metrics use and ``*_source``
    says where each came from; ``prompt_token_counts`` / ``output_token_counts`` keep every
    count the client could make, keyed by source (e.g. ``{"usage": 158, "chat_template": 158,
    "tokenizer": 128}``), so a run shows how the sources disagree. The sources: ``usage`` (the
    server's own count), ``chat_template`` (the tokenizer's count of the prompt as the chat
    template wraps it), ``tokenizer`` (of the text alone), ``chunks`` (one token per streamed
    chunk), ``requested`` and ``simulated``. ``finish_reason_source`` is ``server``,
    ``inferred`` (the server sent none) or ``simulated``.

    A request that completed without error but streamed no token is *empty*: its own outcome,
    not a success (``ok`` is False) and not an error (see ``outcome``).

    ``ttft_deadline`` is this request's own TTFT deadline in seconds (e.g. predicted prefill
    time of its requested prompt plus a slack, set by ``run_benchmark --prefill-profile``);
    None means the run-wide deadline given to the metrics applies. Records written before the
    field existed load with None.
    """

    request_id: int
    scheduled_at: float
    sent_at: float | None = None
    completed_at: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    requested_prompt_tokens: int = 0
    requested_output_tokens: int = 0
    num_prompt_tokens: int | None = None
    prompt_tokens_source: str | None = None
    num_output_tokens: int | None = None
    output_tokens_source: str | None = None
    finish_reason: str | None = None
    finish_reason_source: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    client_id: int = 0
    replica_id: int | None = None
    ttft_deadline: float | None = None
    session_id: int | None = None  # a multi-turn session's id (None: an independent request)
    turn: int | None = None  # the turn within its session, from 0
    # the shared prefix the prompt opens with (workload/prefixes.py; a session's turn: its
    # session, the whole prompt), so a replay shares what the live run's server could cache
    prefix_group: int | None = None
    prefix_tokens: int = 0
    prompt_token_counts: dict[str, int] = field(default_factory=dict)
    output_token_counts: dict[str, int] = field(default_factory=dict)

    @property
    def streamed_tokens(self) -> bool:
        """Whether any chunk carried a token."""
        return any(k > 0 for k in self.chunk_tokens)

    @property
    def ok(self) -> bool:
        """Completed without error and streamed at least one token: what latency metrics read."""
        return self.error_type is None and self.completed_at is not None and self.streamed_tokens

    @property
    def empty(self) -> bool:
        """Completed without error but streamed no token (e.g. a server that stopped at once)."""
        return (self.error_type is None and self.completed_at is not None
                and not self.streamed_tokens)

    @property
    def outcome(self) -> str:
        """``completed`` (``ok``), ``empty``, ``failed`` (an ``error_type``) or ``unfinished``."""
        if self.error_type is not None:
            return "failed"
        if self.completed_at is None:
            return "unfinished"
        return "completed" if self.streamed_tokens else "empty"

    @property
    def ttft(self) -> float | None:
        """Time to first token, from the moment the request was sent."""
        if len(self.chunk_times) == 0 or self.sent_at is None:
            return None
        return self.chunk_times[0] - self.sent_at

    @property
    def ttft_from_schedule(self) -> float | None:
        """Time to first token from the scheduled arrival: includes any dispatch lag."""
        if len(self.chunk_times) == 0:
            return None
        return self.chunk_times[0] - self.scheduled_at

    @property
    def e2e_latency(self) -> float | None:
        if self.completed_at is None or self.sent_at is None:
            return None
        return self.completed_at - self.sent_at

    @property
    def dispatch_lag(self) -> float | None:
        if self.sent_at is None:
            return None
        return self.sent_at - self.scheduled_at

    def to_json(self) -> str:
        # vars(), not dataclasses.asdict(): asdict deep-copies every chunk timestamp one by one
        # (4.4 M of them in a 10k-request ShareGPT run: 30 s of a 37 s simulation)
        # (and numpy arrays, a simulated record's chunks, as JSON lists)
        return orjson.dumps(vars(self), option=orjson.OPT_SERIALIZE_NUMPY).decode()

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "record") -> "RequestRecord":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"{where}: unknown field(s) {sorted(unknown)}")
        if "request_id" not in data or "scheduled_at" not in data:
            raise UserError(f"{where}: missing 'request_id' or 'scheduled_at'")
        rec = cls(**data)
        if len(rec.chunk_times) != len(rec.chunk_tokens):
            raise UserError(f"{where}: chunk_times and chunk_tokens differ in length")
        for name in ("prompt_token_counts", "output_token_counts"):
            if not isinstance(getattr(rec, name), dict):
                raise UserError(f"{where}: {name} must be an object of counts by source")
        return rec


class RecordWriter:
    """Appends records to ``requests.jsonl`` as they finish, flushing each line.

    Flushing per record is what makes a crash or Ctrl-C lose nothing that finished.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(self.path, "a", encoding="utf-8")
        self.count = 0

    def write(self, record: RequestRecord) -> None:
        self._fh.write(record.to_json() + "\n")
        self._fh.flush()
        self.count += 1

    def write_all(self, records: Iterable[RequestRecord]) -> None:
        for r in records:
            self._fh.write(r.to_json() + "\n")
            self.count += 1
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_records(path: str | os.PathLike) -> Iterator[RequestRecord]:
    """Reads a ``requests.jsonl``; a bad line raises ``ValueError`` naming file and line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise UserError(f"{where}: expected a JSON object")
            try:
                yield RequestRecord.from_dict(data, where=where)
            except TypeError as exc:
                raise UserError(f"{where}: {exc}") from None


def load_records(path: str | os.PathLike) -> list[RequestRecord]:
    return list(iter_records(path))
