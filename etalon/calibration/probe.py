"""The one shape of a probe: the short measurements taken against a fitted section.

A fit of isolated requests cannot say everything a model needs (what prompts sharing a step
cost, what a prompt joining decoders adds, the first step after a pause, how fast the engine is
*now*), so probes measure it afterwards. Each probe (``join``, ``batching``, ``wake_up``,
``anchor``) holds its validated settings, plans its requests from the section's fit (so a
probe's timing follows the engine's speed), and judges the records into a typed result
(``etalon.profiles.results``) or None when nothing usable came back. ``judge`` reads only the
records, the section and its own settings, so it is tested without a server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from etalon.calibration.measure import Target, send
from etalon.profiles import ProbeResult, Section
from etalon.records import RequestRecord
from etalon.workload.request import Request


@dataclass(frozen=True)
class Round:
    """Requests sent together (arrival times from the round's start), at most ``concurrency``
    in flight; a probe's rounds run one after another."""

    requests: tuple[Request, ...]
    concurrency: int


class Probe(ABC):
    """A probe of one fitted section; subclasses are frozen dataclasses with a ``settings``
    field whose ``validate()`` checks it (raising a one-line ``ValueError`` naming the flag)."""

    #: the section entry its result fills (``BatchingResult.entry``, ...)
    entry: ClassVar[str]
    settings: object

    def validate(self) -> "Probe":
        self.settings.validate()
        return self

    @abstractmethod
    def plan(self, section: Section) -> list[Round]:
        """What to send; request ids are unique across the rounds."""

    @abstractmethod
    def judge(self, records: list[RequestRecord], section: Section) -> ProbeResult | None:
        """The result the records show (failed records included; each probe leaves out what it
        cannot use), or None when nothing was usable."""

    @abstractmethod
    def announce(self) -> str:
        """One line for stderr before the probe runs."""

    @abstractmethod
    def inconclusive(self) -> str:
        """One line for stderr when ``judge`` found nothing: why, and what the profile does."""

    def measure(self, target: Target, section: Section) -> list[RequestRecord]:
        """Sends the plan's rounds to ``target``; every record, ordered by request id."""
        records: list[RequestRecord] = []
        for round_ in self.validate().plan(section):
            records += send(target, list(round_.requests), concurrency=round_.concurrency)
        return sorted(records, key=lambda r: r.request_id)

    def run(self, target: Target, section: Section) -> ProbeResult | None:
        return self.judge(self.measure(target, section), section)
