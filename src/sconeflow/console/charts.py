"""The console's charts, drawn by matplotlib on the server as PNG (no JavaScript charting).

    endpoint_chart     invocations/s, errors/s, mean latency and mean batch size over time,
                       from the endpoint's sampled /metrics (endpoint_metrics.Sample)
    training_chart     per-epoch train and validation accuracy from a job's log
    parse_epochs       those `Epoch[N] Train-accuracy=...` lines (the built-in algorithm's)
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise

from matplotlib.figure import Figure

from sconeflow.console.endpoint_metrics import Sample

_EPOCH = re.compile(r"Epoch\[(\d+)\] (Train|Validation)-accuracy=([0-9.eE+-]+)")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    return buffer.getvalue()


def message_chart(text: str, title: str) -> bytes:
    fig = Figure(figsize=(8, 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, loc="left")
    ax.text(0.5, 0.4, text, ha="center", va="center", color="#555", fontsize=11)
    return _png(fig)


def endpoint_chart(samples: Sequence[Sample], name: str) -> bytes:
    """Rates between consecutive samples (counters reset when the endpoint restarts)."""
    if len(samples) < 2:
        return message_chart("Sampling this endpoint's /metrics; the charts appear after "
                             "two samples.", f"{name}: metrics over time")  # fmt: skip
    times: list[datetime] = []
    calls: list[float] = []
    errors: list[float] = []
    latency: list[float | None] = []
    batch: list[float | None] = []
    for a, b in pairwise(samples):
        dt = b.at - a.at
        d_calls = b.invocations - a.invocations
        if dt <= 0 or d_calls < 0:  # a restart: counters began again
            continue
        times.append(datetime.fromtimestamp(b.at, UTC))
        calls.append(d_calls / dt)
        errors.append(((b.errors_4xx - a.errors_4xx) + (b.errors_5xx - a.errors_5xx)) / dt)
        d_lat = b.latency_count - a.latency_count
        latency.append((b.latency_sum_us - a.latency_sum_us) / d_lat / 1000 if d_lat else None)
        d_batches = b.batches - a.batches
        batch.append((b.batch_images - a.batch_images) / d_batches if d_batches else None)
    fig = Figure(figsize=(9, 6.4), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    series: list[tuple[Sequence[float | None], str, str]] = [
              (calls, "invocations / s", "#1565c0"), (errors, "errors / s (4xx + 5xx)", "#c62828"),
              (latency, "mean latency (ms)", "#6a1b9a"), (batch, "mean batch size", "#2e7d32")]
    for ax, (values, label, colour) in zip(axes, series, strict=True):
        ax.plot(times, [float("nan") if v is None else v for v in values], color=colour,
                marker="o", markersize=3, linewidth=1.4)  # fmt: skip
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0].set_title(f"{name}: metrics over time (sampled from /metrics)", loc="left")
    axes[-1].set_xlabel("time (UTC)")
    return _png(fig)


Curve = tuple[list[int], list[float]]  # epoch numbers and accuracies of one fit


def parse_epochs(log: str) -> dict[str, list[Curve]]:
    """{"Train": fits, "Validation": fits}, each fit its (epochs, accuracies): a job's log
    holds the held-out fit and then, when it ran, the retrain on all images, whose epoch
    numbers start again from 0. Validation is logged every 10th epoch (and the first and
    last), so its curve is drawn at the epochs it was measured, not at its points' index."""
    runs: dict[str, list[Curve]] = {"Train": [], "Validation": []}
    last: dict[str, int] = {}
    for epoch_text, kind, value in _EPOCH.findall(log):
        epoch = int(epoch_text)
        if not runs[kind] or epoch <= last.get(kind, -1):
            runs[kind].append(([], []))
        runs[kind][-1][0].append(epoch)
        runs[kind][-1][1].append(float(value))
        last[kind] = epoch
    return runs


_FITS = ("held-out fit", "all images")


def training_chart(runs: dict[str, list[Curve]], name: str) -> bytes:
    if not any(runs.values()):
        return message_chart("No `Epoch[N] ...-accuracy=` lines in this job's log.",
                             f"{name}: accuracy by epoch")  # fmt: skip
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.add_subplot()
    colours = {"Train": "#1565c0", "Validation": "#ef6c00"}
    several = len(runs["Train"]) > 1
    for kind, kind_runs in runs.items():
        for i, (epochs, values) in enumerate(kind_runs):
            fit = _FITS[i] if i < len(_FITS) else f"fit {i + 1}"
            label = f"{kind} ({fit})" if several else kind
            ax.plot(epochs, values, marker="o", markersize=3 if kind == "Validation" else 1.5,
                    label=label, color=colours[kind], alpha=1.0 if i == 0 else 0.45,
                    linestyle="-" if i == 0 else "--")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{name}: accuracy by epoch", loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
