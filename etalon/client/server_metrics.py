"""Scrapes the server's Prometheus ``/metrics`` during a run, beside the client's records.

A thread fetches the page every ``interval_s`` and keeps every gauge and counter sample
(histograms by their ``_sum`` and ``_count``; buckets would multiply the rows for little), with
the wall time of the scrape. The text is parsed by ``prometheus_client``. A server without
``/metrics`` costs one line in the summary, never the run.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

SKIP_SUFFIXES = ("_bucket", "_created")


@dataclass
class Scrape:
    """What the scraper kept: ``rows`` of (wall time, series name, labels as JSON, value)."""

    url: str
    interval_s: float
    rows: list[tuple[float, str, str, float]] = field(default_factory=list)
    scrapes: int = 0
    failures: int = 0
    error: str | None = None  # why scraping stopped (first failure), if it did


def parse(text: str, wall: float) -> list[tuple[float, str, str, float]]:
    """Samples of a Prometheus text page as rows (histogram buckets and ``_created`` left out)."""
    from prometheus_client.parser import text_string_to_metric_families

    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(SKIP_SUFFIXES):
                continue
            rows.append((wall, sample.name, json.dumps(sample.labels, sort_keys=True),
                         float(sample.value)))
    return rows


def metrics_url(base_url: str) -> str:
    """``/metrics`` beside the OpenAI routes: ``http://h:p/v1`` -> ``http://h:p/metrics``."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/metrics"


class ServerMetricsScraper:
    """``start()`` … ``stop()`` around a run; ``result`` holds the rows."""

    def __init__(self, url: str, interval_s: float, timeout_s: float = 5.0,
                 max_failures: int = 3) -> None:
        self.result = Scrape(url, interval_s)
        self.timeout_s, self.max_failures = timeout_s, max_failures
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="etalon-server-metrics",
                                        daemon=True)

    def start(self) -> ServerMetricsScraper:
        self._thread.start()
        return self

    def stop(self) -> Scrape:
        self._stop.set()
        self._thread.join(self.timeout_s + 1.0)
        return self.result

    def _loop(self) -> None:
        res = self.result
        next_at = time.monotonic()
        while not self._stop.is_set():
            wall = time.time()
            try:
                with urllib.request.urlopen(res.url, timeout=self.timeout_s) as resp:
                    text = resp.read().decode("utf-8", errors="replace")
                res.rows += parse(text, wall)
                res.scrapes += 1
            except (urllib.error.URLError, OSError, ValueError) as exc:
                res.failures += 1
                if res.error is None:
                    res.error = f"{res.url}: {exc}"[:200]
                # a server without /metrics (404) or a page that is not Prometheus text will not
                # change: give up at once; a timeout may pass, so allow a few
                if isinstance(exc, urllib.error.HTTPError) or isinstance(exc, ValueError) \
                        or res.failures >= self.max_failures:
                    return
            next_at += res.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))
