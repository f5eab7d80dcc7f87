"""The client API: what a backend must do to be benchmarked, and the registry that names backends.

A backend sends one request and fills in its ``RequestRecord`` (sent time, content chunks with
their arrival times and token counts, completion time, counts and their source, the finish
reason and where it came from, errors). The dispatcher, the Ray actors and the metrics know
nothing else about it. To add a backend,
subclass ``LLMClient`` and register it: ``etalon.registry.register("client", "name", cls)``
(from a plug-in module, see ``etalon.registry``); ``--llm-api name`` then selects it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

from etalon.records import RequestRecord
from etalon.workload.request import Request


@dataclass
class ClientConfig:
    """Everything a client needs to reach a server. ``api_key`` is never written anywhere.

    ``require_exact_output_lengths`` makes a request that delivered fewer output tokens than
    requested (beyond :data:`etalon.metrics.lengths.TOLERANCE`) a failed record
    (``error_type`` ``short_output``) instead of a success.
    """

    base_url: str
    model: str
    api_key: str | None = None
    request_timeout: float = 600.0
    idle_timeout: float = 120.0
    additional_sampling_params: dict = field(default_factory=dict)
    ignore_eos: bool = True
    tokenizer: str | None = None
    require_exact_output_lengths: bool = False

    def redacted(self) -> dict:
        from dataclasses import asdict

        out = asdict(self)
        out["api_key"] = "<set>" if self.api_key else None
        return out


class Clock:
    """Run-relative monotonic time: ``now()`` is seconds since the run's start.

    ``start_wall`` is the run start on the wall clock, shared by every actor; each actor anchors
    its own monotonic clock to it once, so durations never see wall-clock jumps.
    """

    def __init__(self, start_wall: float):
        self.start_wall = start_wall
        self.anchor_wall = time.time()
        self.anchor_mono = time.monotonic()
        self.start_mono = self.anchor_mono + (start_wall - self.anchor_wall)

    def now(self) -> float:
        return time.monotonic() - self.start_mono

    def to_monotonic(self, t: float) -> float:
        return self.start_mono + t


class LLMClient(ABC):
    """One backend. ``open``/``close`` bracket a run; ``send`` is called concurrently."""

    def __init__(self, config: ClientConfig):
        self.config = config

    async def open(self, max_concurrency: int) -> None:
        """Creates connections/sessions sized for ``max_concurrency`` requests in flight."""

    async def close(self) -> None:
        """Releases what ``open`` created."""

    def count_prompt(self, prompt: str) -> dict[str, int]:
        """Token counts of ``prompt`` this client can make before sending, keyed by source
        (``tokenizer``: the text; ``chat_template``: the text as the chat template wraps it).

        Called for every prompt before ``open`` and the run, so counting costs nothing on the
        hot path; ``send`` finds the counts in ``record.prompt_token_counts``.
        """
        return {}

    @abstractmethod
    async def send(self, request: Request, prompt: str, record: RequestRecord,
                   clock: Clock) -> str | None:
        """Sends ``request`` now and fills ``record``; never raises for a failed request —
        the failure goes into ``record.error_type`` / ``record.error_message``. Returns the
        answer's text when the request completed (a multi-turn session resends it in the next
        turn's prompt), else None; a backend that keeps no text returns None always."""


def make_client(name: str, config: ClientConfig) -> LLMClient:
    """The ``client`` registry's factory for ``name``, applied to ``config``."""
    from etalon.registry import registry

    return registry("client").get(name)(config)
