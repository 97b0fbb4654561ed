"""Endpoint metrics over time, sampled from each endpoint's GET /metrics while the console runs.

An endpoint's /metrics holds counters since it started (Prometheus text, serving/metrics.py);
a chart over time needs them sampled. The sampler reads every InService endpoint every
`interval` seconds and keeps the last MAX_SAMPLES samples per endpoint in memory (a few
hours at the default interval): they describe the endpoint's processes, which live only
as long as they run, and are rebuilt by sampling again. The endpoints are read through
`connection()`, called on the sampler's thread: the console's per-thread connection, which
the console closes only after `stop` has waited for that thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sconeflow.config import Settings

log = logging.getLogger(__name__)
MAX_SAMPLES = 2048
_FETCH_TIMEOUT = 2.0  # seconds one endpoint's /metrics may take


@dataclass(frozen=True)
class Sample:
    """Cumulative counters of one endpoint at one moment (epoch seconds)."""

    at: float
    invocations: float
    errors_4xx: float
    errors_5xx: float
    latency_sum_us: float  # ModelLatency + OverheadLatency sums
    latency_count: float
    batches: float
    batch_images: float


def parse_metrics(text: str, at: float) -> Sample:
    """A Sample from an endpoint's Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[s.name] = values.get(s.name, 0.0) + float(s.value)
    return Sample(
        at=at,
        invocations=values.get("Invocations_total", 0.0),
        errors_4xx=values.get("Invocation4XXErrors_total", 0.0),
        errors_5xx=values.get("Invocation5XXErrors_total", 0.0),
        latency_sum_us=values.get("ModelLatency_sum", 0.0) + values.get("OverheadLatency_sum", 0.0),
        latency_count=values.get("ModelLatency_count", 0.0),
        batches=values.get("InferenceBatches_total", 0.0),
        batch_images=values.get("InferenceBatchImages_total", 0.0),
    )


class MetricsSampler:
    """A daemon thread sampling every InService endpoint's /metrics."""

    def __init__(self, settings: Settings, connection: Callable[[], sqlite3.Connection],
                 interval: float = 5.0) -> None:  # fmt: skip
        self.settings, self.connection, self.interval = settings, connection, interval
        self.samples: dict[str, deque[Sample]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="metrics", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End sampling and wait for the thread (at most one /metrics fetch), so that no
        read is under way through its connection when the console closes the connections."""
        self._stop.set()
        if self._thread is not None:
            wait = _FETCH_TIMEOUT + 3.0
            self._thread.join(wait)
            if self._thread.is_alive():
                log.warning("the metrics sampler did not stop within %.0f s", wait)

    def series(self, endpoint: str) -> list[Sample]:
        with self._lock:
            return list(self.samples.get(endpoint, ()))

    def sample_once(self) -> None:
        from sconeflow.serving.endpoints import list_endpoints

        for ep in list_endpoints(self.settings, conn=self.connection()):
            if self._stop.is_set():  # stopping: the console waits on this thread
                return
            if ep.status != "InService":
                continue
            try:
                with urllib.request.urlopen(f"{ep.url}/metrics", timeout=_FETCH_TIMEOUT) as resp:
                    sample = parse_metrics(resp.read().decode(), time.time())
            except (OSError, ValueError) as err:  # a busy or dying endpoint: try next time
                log.debug("metrics of %s: %s", ep.name, err)
                continue
            with self._lock:
                self.samples.setdefault(ep.name, deque(maxlen=MAX_SAMPLES)).append(sample)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # never let a bad row end sampling for good
                log.exception("sampling endpoint metrics failed")
            self._stop.wait(self.interval)
