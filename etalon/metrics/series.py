"""Per-request metric values tagged with their request ids and unit: what CSVs and plots read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from etalon.metrics.distribution import Distribution


MAX_COUNTED = 1 << 20  # integer samples up to this are summarised from their counts


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
    """

    def __init__(self, spec: MetricSpec,
                 request_ids: np.ndarray | Callable[[], np.ndarray] | None = None,
                 values: np.ndarray | None = None) -> None:
        self.spec = spec
        # a per-token metric passes a function: its ids (one int64 per token, 350 MB for the
        # 44 M tokens of a 100k-request run) are made only if someone reads them
        self._request_ids = (np.empty(0, dtype=np.int64) if request_ids is None else request_ids)
        # integer samples (tokens per chunk) stay integers: no float copy of 44 M counts
        values = np.empty(0) if values is None else np.asarray(values)
        self.values = values if values.dtype.kind in "iu" else values.astype(float, copy=False)
        self._sorted: np.ndarray | None = None

    @property
    def request_ids(self) -> np.ndarray:
        if callable(self._request_ids):
            self._request_ids = self._request_ids()
        self._request_ids = np.asarray(self._request_ids, dtype=np.int64)
        return self._request_ids

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sorted_values(self) -> np.ndarray:
        """The finite values in ascending order, sorted once and kept: the PNG CDF and the
        report's CDF both read this copy (only the few series drawn as CDFs make one)."""
        if self._sorted is None:
            v = self.values
            self._sorted = np.sort(v if np.isfinite(v).all() else v[np.isfinite(v)])
        return self._sorted

    def distribution(self) -> Distribution:
        """The samples' :class:`Distribution`: integer samples (tokens per chunk) from their
        counts, others from the sorted copy, made here once for the plots' and the report's
        CDFs too (a sort and reading off by position: 0.9 s for 44 M TBT samples, where
        partitioning for the percentiles and sorting again for the CDFs took 2.5 s)."""
        v = self.values
        if (self._sorted is None and v.dtype.kind in "iu" and v.size and 0 <= v.min()
                and v.max() <= MAX_COUNTED):
            return Distribution.of_integers(v)
        return Distribution.of_sorted(self.sorted_values)

    def __len__(self) -> int:
        return len(self.values)
