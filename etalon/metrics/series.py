"""Per-request metric values tagged with their request ids and unit: what CSVs and plots read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etalon.metrics.distribution import Distribution


@dataclass(frozen=True)
class MetricSpec:
    """A declared metric: its key, its internal unit, one line on what it measures and one on
    which requests (or tokens) it includes, reported with it so no reader has to guess."""

    name: str
    unit: str
    description: str
    includes: str = ""


class Series:
    """Samples of one metric; ``request_ids[i]`` is the request that produced ``values[i]``.

    A per-request metric has one sample per request; a per-token metric (TBT) repeats the id.
    Samples are kept as numpy blocks so that millions of per-token samples stay cheap.
    """

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self._blocks: list[tuple[np.ndarray, np.ndarray]] = []
        self._ids: list[int] = []
        self._vals: list[float] = []

    @classmethod
    def of(cls, spec: MetricSpec, request_ids: np.ndarray, values: np.ndarray) -> "Series":
        """A series of samples computed all at once."""
        series = cls(spec)
        series._blocks.append((np.asarray(request_ids, dtype=np.int64),
                               np.asarray(values, dtype=float)))
        return series

    @property
    def name(self) -> str:
        return self.spec.name

    def add(self, request_id: int, value: float) -> None:
        """Appends one sample."""
        self._ids.append(request_id)
        self._vals.append(float(value))

    def extend(self, request_id: int, values: np.ndarray) -> None:
        """Appends many samples of one request."""
        self._flush()
        values = np.asarray(values, dtype=float)
        self._blocks.append((np.full(len(values), request_id, dtype=np.int64), values))

    def _flush(self) -> None:
        if self._ids:
            self._blocks.append((np.asarray(self._ids, dtype=np.int64),
                                 np.asarray(self._vals, dtype=float)))
            self._ids, self._vals = [], []

    @property
    def request_ids(self) -> np.ndarray:
        self._flush()
        return (np.concatenate([b[0] for b in self._blocks]) if self._blocks
                else np.empty(0, dtype=np.int64))

    @property
    def values(self) -> np.ndarray:
        self._flush()
        return np.concatenate([b[1] for b in self._blocks]) if self._blocks else np.empty(0)

    def distribution(self) -> Distribution:
        return Distribution.of(self.values)

    def __len__(self) -> int:
        return len(self._ids) + sum(len(b[1]) for b in self._blocks)
