"""Invocation metrics (CloudWatch's names) shared by every worker, shown in Prometheus text.

Each worker process owns one row of an anonymous shared-memory block that the server
creates before forking, and is its only writer (the event-loop thread), so the hot path is
a few float adds with no lock, file or syscall. The master owns one more row (worker
restarts). A replacement worker takes over its predecessor's row, so counts survive
restarts. GET /metrics on any worker sums all rows, so the numbers are for the whole
endpoint, not for the worker that happened to answer.
prometheus_client renders the text format; its own multiprocess mode was not used because
it needs an environment variable set before import and writes mmap files per process.

Metrics: Invocations, Invocation4XXErrors, Invocation5XXErrors, InvocationModelErrors
(counters, `_total` in the text format) and ModelLatency, OverheadLatency (histograms in
microseconds, as CloudWatch reports them). WorkerInvocations (ours, labelled by worker)
shows how the kernel spreads the load over the worker processes. InferenceBatches and
InferenceBatchImages (ours) count model calls and the images they carried: their ratio is
the mean micro-batch size. RequestReadTimeouts (ours) counts requests whose headers or body
came too slowly (closed with 408); WorkerRestarts (ours) counts workers the master
replaced after they died. The capture counters are read from the workers' capture rings
(spool.py): CaptureWrittenRecords, CaptureDroppedRecords (no room in the byte budget),
CaptureFailedRecords (the store refused them), and the gauge CaptureBufferedBytes.
ModelLatency is the
time from the request body being read to the probabilities being ready (decode, queue
wait, batch inference); OverheadLatency is the rest of the time the server spent on the
request (HTTP, headers, encoding the answer, queuing capture).
"""

from __future__ import annotations

import bisect
import mmap
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from sconeflow.serving.spool import DROPPED, FAILED, WRITTEN, Ring

# Upper bounds in microseconds; +Inf is implied.
BUCKETS_US = (
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    1_000_000,
    10_000_000,
)
COUNTERS = (
    "Invocations",
    "Invocation4XXErrors",
    "Invocation5XXErrors",
    "InvocationModelErrors",
    "InferenceBatches",
    "InferenceBatchImages",
    "RequestReadTimeouts",
    "WorkerRestarts",
)
_BATCHES = COUNTERS.index("InferenceBatches")
_TIMEOUTS = COUNTERS.index("RequestReadTimeouts")
_RESTARTS = COUNTERS.index("WorkerRestarts")
_ORIGIN = {"InferenceBatches": "sconeflow", "InferenceBatchImages": "sconeflow",
           "RequestReadTimeouts": "sconeflow", "WorkerRestarts": "sconeflow"}  # fmt: skip
_CAPTURE = (("CaptureWrittenRecords", WRITTEN), ("CaptureDroppedRecords", DROPPED),
            ("CaptureFailedRecords", FAILED))  # fmt: skip
HISTOGRAMS = ("ModelLatency", "OverheadLatency")
_NB = len(BUCKETS_US) + 1  # + the +Inf bucket
# Row layout: counters, then per histogram: sum, count, buckets (not cumulative).
_HIST_BASE = len(COUNTERS)
_HIST_SLOTS = 2 + _NB
ROW = len(COUNTERS) + len(HISTOGRAMS) * _HIST_SLOTS
_DOUBLE = 8


class SharedMetrics:
    """A ((workers + 1) x ROW) table of float64 in anonymous shared memory; the last row is
    the master's. `rings` are the workers' capture rings, when capture is on."""

    def __init__(
        self,
        workers: int,
        endpoint: str,
        variant: str = "AllTraffic",
        rings: list[Ring] | None = None,
    ) -> None:
        self.workers = workers
        self.labels = {"EndpointName": endpoint, "VariantName": variant}
        self.rings = rings or []
        rows = workers + 1
        self._mem = mmap.mmap(-1, rows * ROW * _DOUBLE)  # MAP_SHARED: survives fork
        self._cells = memoryview(self._mem).cast("d")
        self._rows = rows
        self.row = 0  # which row this process writes; set in each worker after fork

    def count(self, status: int, model_error: bool = False) -> None:
        """One finished invocation with its HTTP status."""
        cells, base = self._cells, self.row * ROW
        cells[base] += 1
        if 400 <= status < 500:
            cells[base + 1] += 1
        elif status >= 500:
            cells[base + 2] += 1
        if model_error:
            cells[base + 3] += 1

    def batch(self, images: int) -> None:
        """One model call that carried `images` images."""
        cells, at = self._cells, self.row * ROW + _BATCHES
        cells[at] += 1
        cells[at + 1] += images

    def read_timeout(self) -> None:
        """One request closed because its headers or body came too slowly."""
        self._cells[self.row * ROW + _TIMEOUTS] += 1

    def restart(self) -> None:
        """One worker replaced (the master's row: only the master calls this)."""
        self._cells[self.workers * ROW + _RESTARTS] += 1

    def observe(self, histogram: int, micros: float) -> None:
        """Add one observation (microseconds) to histogram 0 (Model) or 1 (Overhead)."""
        cells = self._cells
        at = self.row * ROW + _HIST_BASE + histogram * _HIST_SLOTS
        cells[at] += micros
        cells[at + 1] += 1
        cells[at + 2 + bisect.bisect_left(BUCKETS_US, micros)] += 1

    def per_worker(self, index: int) -> list[float]:
        """One cell (e.g. 0 = Invocations) of every worker's row."""
        return [self._cells[w * ROW + index] for w in range(self.workers)]

    def totals(self) -> list[float]:
        """Sums over all rows (the workers' and the master's)."""
        cells = self._cells
        return [sum(cells[w * ROW + i] for w in range(self._rows)) for i in range(ROW)]

    def render(self) -> bytes:
        """The Prometheus text exposition of the summed rows."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry)


class _Collector:
    def __init__(self, metrics: SharedMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        totals = self.metrics.totals()
        names, values = list(self.metrics.labels), list(self.metrics.labels.values())
        for i, name in enumerate(COUNTERS):
            origin = _ORIGIN.get(name, "SageMaker")
            family = CounterMetricFamily(name, f"{origin} {name}", labels=names)
            family.add_metric(values, totals[i])
            yield family
        rings = self.metrics.rings
        for name, slot in _CAPTURE:
            family = CounterMetricFamily(name, f"sconeflow {name}", labels=names)
            family.add_metric(values, sum(int(r.slots[slot]) for r in rings))
            yield family
        buffered = GaugeMetricFamily(
            "CaptureBufferedBytes", "captured bytes not yet written", labels=names
        )
        buffered.add_metric(values, sum(r.used for r in rings))
        yield buffered
        workers = CounterMetricFamily(
            "WorkerInvocations", "invocations per worker process", labels=[*names, "worker"]
        )
        for w, n in enumerate(self.metrics.per_worker(0)):
            workers.add_metric([*values, str(w)], n)
        yield workers
        for h, name in enumerate(HISTOGRAMS):
            at = _HIST_BASE + h * _HIST_SLOTS
            total, running, buckets = totals[at], 0.0, []
            for bound, n in zip((*BUCKETS_US, "+Inf"), totals[at + 2 : at + 2 + _NB], strict=True):
                running += n
                buckets.append((str(bound), running))
            histogram = HistogramMetricFamily(
                name, f"SageMaker {name} (microseconds)", labels=names
            )
            histogram.add_metric(values, buckets, total)
            yield histogram
