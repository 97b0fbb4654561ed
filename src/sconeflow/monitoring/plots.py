"""The report's plots, each a pure function of arrays returning PNG bytes.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no global
state, no display), so plotting is safe in servers, threads and tests.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sconeflow.monitoring.checks import DriftTest
from sconeflow.monitoring.embeddings import MmdResult
from sconeflow.monitoring.outcomes import Promise, WorkflowOutcome
from sconeflow.selective import clopper_pearson_lower, clopper_pearson_upper

DPI = 120
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_BASE, _WIN = "#7f7f7f", "#d62728"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _message(text: str, title: str) -> bytes:
    """A small figure that says why there is nothing to draw (so every plot slot shows)."""
    fig = Figure(layout="constrained", figsize=(6, 1.6))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, loc="left", fontsize=11)
    ax.text(0.5, 0.45, text, ha="center", va="center", fontsize=11, color="#555")
    return _png(fig)


def _colour(i: int) -> str:
    return _COLOURS[i % len(_COLOURS)]


# Bin widths a reader can say out loud, in seconds: from one second to a week.
_NICE_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                43200, 86400, 172800, 604800)
MAX_BINS = 24


def time_bins(times: Sequence[datetime], max_bins: int = MAX_BINS
              ) -> tuple[np.ndarray, list[datetime], timedelta]:
    """Bin index per time, the bins' starts and their width.

    The width is the smallest "nice" one (1 s, 5 s, 1 min, 15 min, 1 h, 1 d, ...) that
    covers the span in at most `max_bins` bins, and bins start on multiples of it (UTC), so
    a burst of one second is one 1-second bin and a week is seven 1-day bins, and labels
    never repeat.
    """
    secs = np.array([t.timestamp() for t in times])
    lo, hi = float(secs.min()), float(secs.max())
    width = _NICE_WIDTHS[-1]
    for w in _NICE_WIDTHS:
        if (hi - math.floor(lo / w) * w) // w + 1 <= max_bins:
            width = w
            break
    start = math.floor(lo / width) * width
    n_bins = int((hi - start) // width) + 1
    idx = ((secs - start) // width).astype(int)
    tz = times[0].tzinfo
    starts = [datetime.fromtimestamp(start + i * width, tz=tz) for i in range(n_bins)]
    return idx, starts, timedelta(seconds=width)


def _width_words(width: timedelta) -> str:
    s = int(width.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size} {unit}"
    return f"{s} s"


def _date_axis(ax: Any, lo: datetime, hi: datetime, minimum: timedelta) -> None:
    """A time x axis that reads well at any span: at least `minimum` wide (matplotlib
    would widen a zero-width range to +-2 years), ticks and labels chosen by matplotlib's
    concise date formatter (seconds for a burst, hours for a day, dates for a week)."""
    span = hi - lo
    pad = (minimum - span) / 2 if span < minimum else span * 0.02
    ax.set_xlim(mdates.date2num(lo - pad), mdates.date2num(hi + pad))
    locator = mdates.AutoDateLocator(minticks=3, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def confidence_over_time(
    times: Sequence[datetime], confidence: np.ndarray, predicted: Sequence[str | None],
    class_names: Sequence[str], threshold: float,
) -> bytes:
    """The reference's plot: top probability of each inference over time, threshold line."""
    ok = ~np.isnan(confidence)
    if not ok.any():
        return _message("No inference with a usable output in this window.",
                        "Confidence of recent inferences")
    fig = Figure(layout="constrained", figsize=(9, 3.6))
    ax = fig.add_subplot()
    for i, name in enumerate(class_names):
        sel = [j for j, p in enumerate(predicted) if p == name and ok[j]]
        if sel:
            ax.scatter(np.array([times[j] for j in sel]), confidence[sel], s=14, alpha=0.75,
                       color=_colour(i), label=f"predicted {name}")
    below = float(np.mean(confidence[ok] < threshold))
    ax.axhline(threshold, color="red", linestyle="--", linewidth=1.5,
               label=f"threshold {threshold:g} ({below:.0%} below)")
    ax.set_ylim(min(0.45, float(np.nanmin(confidence)) - 0.02), 1.02)
    ax.set_ylabel("confidence (top probability)")
    ax.set_xlabel("inference time (UTC)")
    ax.set_title(f"Confidence of {int(ok.sum())} inferences", loc="left")
    ax.legend(loc="lower left", fontsize=8, ncols=3)
    ax.grid(alpha=0.3)
    # Capture times have one-second precision: a burst can fall in a single second.
    shown = [times[j] for j in range(len(times)) if ok[j]]
    _date_axis(ax, min(shown), max(shown), timedelta(seconds=10))
    return _png(fig)


def confidence_histograms(
    confidence: np.ndarray, predicted: Sequence[str | None], class_names: Sequence[str],
    threshold: float,
) -> bytes:
    """Histogram of the top probability per predicted class."""
    k = len(class_names)
    fig = Figure(layout="constrained", figsize=(min(4.2 * k, 12), 3.2))
    axes = fig.subplots(1, k, squeeze=False)[0]
    bins = np.linspace(1.0 / k, 1.0, 21)
    for i, (ax, name) in enumerate(zip(axes, class_names, strict=True)):
        values = np.array([c for c, p in zip(confidence, predicted, strict=True)
                           if p == name and not np.isnan(c)])
        ax.hist(values, bins=bins, color=_colour(i), alpha=0.85)
        ax.axvline(threshold, color="red", linestyle="--", linewidth=1.2)
        ax.set_title(f"predicted {name} (n={values.size})", fontsize=10)
        ax.set_xlabel("confidence")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("inferences")
    fig.suptitle(f"Confidence per predicted class (red: threshold {threshold:g})", x=0.01,
                 ha="left", fontsize=11)
    return _png(fig)


def _bar_axis(ax: Any, starts: list[datetime], width: timedelta) -> np.ndarray:
    """Left edges of time bins as matplotlib dates, with the x axis set for them."""
    left = np.array([mdates.date2num(t) for t in starts])
    _date_axis(ax, starts[0], starts[-1] + width, width * 2)
    return left


def _counts_on_top(ax: Any, left: np.ndarray, days: float, totals: np.ndarray,
                   top: np.ndarray) -> None:
    if len(left) <= MAX_BINS:
        for x, n, y in zip(left, totals, top, strict=True):
            if n:
                ax.text(x + days / 2, y, f"{int(n)}", ha="center", va="bottom", fontsize=6,
                        color="#444")


def class_mix(
    times: Sequence[datetime], predicted: Sequence[str | None], class_names: Sequence[str],
    baseline_share: dict[str, float],
) -> bytes:
    """Share of each predicted class per time bin, with the baseline's share dotted; the
    number above a bar is its count of predictions (empty bins stay empty)."""
    keep = [j for j, p in enumerate(predicted) if p is not None]
    if not keep:
        return _message("No predictions in this window.", "Class mix over time")
    idx, starts, width = time_bins([times[j] for j in keep])
    labels = [predicted[j] for j in keep]
    n_bins = len(starts)
    counts = np.zeros((len(class_names), n_bins))  # (K, bins)
    for b, lab in zip(idx, labels, strict=True):
        counts[list(class_names).index(str(lab)), b] += 1
    totals = counts.sum(axis=0)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = Figure(layout="constrained", figsize=(9, 3.2))
    ax = fig.add_subplot()
    left = _bar_axis(ax, starts, width)
    days = width.total_seconds() / 86400
    bottom = np.zeros(n_bins)
    for i, name in enumerate(class_names):
        ax.bar(left, share[i], bottom=bottom, color=_colour(i), label=name, width=days * 0.92,
               align="edge")
        bottom += share[i]
    acc = 0.0
    for i, name in enumerate(class_names[:-1]):
        acc += baseline_share.get(name, 0.0)
        ax.axhline(acc, color="black", linestyle=":", linewidth=1.5,
                   label="baseline mix" if i == 0 else None)
    _counts_on_top(ax, left, days, totals, np.where(totals > 0, 1.0, 0.0))
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of predictions")
    ax.set_xlabel(f"time (UTC), bins of {_width_words(width)}; number above a bar: requests")
    ax.set_title("Predicted class mix over time", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png(fig)


def feature_drift(
    tests: Sequence[DriftTest], baseline_values: dict[str, np.ndarray],
    window_values: dict[str, np.ndarray], baseline_counts: dict[str, dict[str, int]],
    window_counts: dict[str, dict[str, int]], max_panels: int = 6,
) -> bytes:
    """Baseline vs window distribution for the drifting features (else the closest calls);
    the embedding has a plot of its own."""
    columns = [t for t in tests if t.method != "MMD"]
    chosen = [t for t in columns if t.drifted] or sorted(columns, key=lambda t: -t.distance)[:3]
    chosen = sorted(chosen, key=lambda t: -t.distance)[:max_panels]
    if not chosen:
        return _message("No drift test ran (too few records or comparison disabled).",
                        "Feature drift against the baseline")
    cols = min(3, len(chosen))
    rows = (len(chosen) + cols - 1) // cols
    fig = Figure(layout="constrained", figsize=(4.2 * cols, 3.1 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, t in zip(axes, chosen, strict=False):
        if t.method == "KS":
            _panel(ax, t, baseline_values[t.feature], window_values[t.feature])
        else:
            _panel(ax, t, baseline_counts[t.feature], window_counts[t.feature])
    for ax in axes[len(chosen):]:
        ax.set_axis_off()
    title = "drifting features" if any(t.drifted for t in chosen) else "closest calls"
    fig.suptitle(f"Feature drift, {title}: baseline vs window", x=0.01, ha="left", fontsize=11)
    return _png(fig)


def workflow_outcomes(outcomes: Sequence[WorkflowOutcome]) -> bytes:
    """Succeeded / failed workflow executions per time bin."""
    if not outcomes:
        return _message("No workflow executions were recorded in this window.",
                        "Workflow executions")
    idx, starts, width = time_bins([o.time for o in outcomes])
    statuses = sorted({o.status for o in outcomes}, key=lambda s: (s != "SUCCEEDED", s))
    counts = np.zeros((len(statuses), len(starts)))
    for b, o in zip(idx, outcomes, strict=True):
        counts[statuses.index(o.status), b] += 1
    colours = {"SUCCEEDED": "#2ca02c", "FAILED": "#d62728", "TIMED_OUT": "#9467bd",
               "ABORTED": "#8c564b", "RUNNING": "#bbbbbb"}
    fig = Figure(layout="constrained", figsize=(9, 3.0))
    ax = fig.add_subplot()
    left = _bar_axis(ax, starts, width)
    days = width.total_seconds() / 86400
    bottom = np.zeros(len(starts))
    for s, row in zip(statuses, counts, strict=True):
        ax.bar(left, row, bottom=bottom, color=colours.get(s, "#17becf"), width=days * 0.92,
               align="edge", label=f"{s} ({int(row.sum())})")
        bottom += row
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("executions")
    ax.set_xlabel(f"execution start (UTC), bins of {_width_words(width)}")
    ax.set_title("Workflow executions per time bin", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png(fig)


def drift_panel(test: DriftTest, baseline_values: np.ndarray | dict[str, int],
                window_values: np.ndarray | dict[str, int]) -> bytes:
    """One feature's baseline and window distributions, titled with its verdict."""
    fig = Figure(layout="constrained", figsize=(4.6, 2.9))
    ax = fig.add_subplot()
    _panel(ax, test, baseline_values, window_values)
    return _png(fig)


def _panel(ax: Any, t: DriftTest, base: np.ndarray | dict[str, int],
           win: np.ndarray | dict[str, int]) -> None:
    if isinstance(base, np.ndarray) and isinstance(win, np.ndarray):
        both = np.concatenate([base, win])
        lo, hi = np.percentile(both, [0.5, 99.5]) if both.size else (0.0, 1.0)
        if hi - lo < 1e-9 * max(1.0, abs(hi)):  # one value (e.g. every image 32 px wide)
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
        ax.hist(np.clip(base, lo, hi), bins=bins, density=True, color=_BASE, alpha=0.55,
                label=f"baseline (n={t.n_baseline})")
        ax.hist(np.clip(win, lo, hi), bins=bins, density=True, histtype="step",
                linewidth=2, color=_WIN, label=f"window (n={t.n_window})")
        ax.set_yticks([])
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.ticklabel_format(axis="x", useOffset=False)
        stat = f"KS D={t.distance:.2f}"
    else:
        ref = base if isinstance(base, dict) else {}
        cur = win if isinstance(win, dict) else {}
        cats = sorted(set(ref) | set(cur))
        x = np.arange(len(cats))
        rs, cs = max(sum(ref.values()), 1), max(sum(cur.values()), 1)
        ax.bar(x - 0.2, [ref.get(c, 0) / rs for c in cats], 0.4, color=_BASE,
               label=f"baseline (n={t.n_baseline})")
        ax.bar(x + 0.2, [cur.get(c, 0) / cs for c in cats], 0.4, color=_WIN,
               label=f"window (n={t.n_window})")
        ax.set_xticks(x, cats, fontsize=8)
        ax.set_ylabel("share")
        stat = f"L\u221e={t.distance:.2f}"
    p = f", corrected p={t.p_adjusted:.2g}" if t.p_adjusted is not None else ""
    verdict = "DRIFT" if t.drifted else "ok"
    ax.set_title(f"{t.feature}: {stat}{p} [{verdict}]", fontsize=9,
                 color=_WIN if t.drifted else "black")
    ax.legend(fontsize=7)


def embedding_drift(test: DriftTest, base_2d: np.ndarray, win_2d: np.ndarray,
                    explained: float, mmd: MmdResult) -> bytes:
    """Where the window's images sit in the model's embedding (the baseline's first two
    principal components), and the MMD^2 against its permutation null."""
    fig = Figure(layout="constrained", figsize=(9, 3.3))
    left, right = fig.subplots(1, 2)
    left.scatter(base_2d[:, 0], base_2d[:, 1], s=8, color=_BASE, alpha=0.5,
                 label=f"baseline (n={test.n_baseline})")
    left.scatter(win_2d[:, 0], win_2d[:, 1], s=10, color=_WIN, alpha=0.7,
                 label=f"window (n={test.n_window})")
    left.set_xlabel("PC 1")
    left.set_ylabel("PC 2")
    left.set_title(f"embedding on the baseline's 2 main axes ({explained:.0%} of variance)",
                   fontsize=9)
    left.legend(fontsize=7)
    right.hist(mmd.null, bins=40, color=_BASE, alpha=0.7, label="MMD\u00b2 if nothing changed")
    right.axvline(mmd.mmd2, color=_WIN, linewidth=2, label=f"window: {mmd.mmd2:.4f}")
    right.set_yticks([])
    right.set_xlabel("MMD\u00b2 (Gaussian kernel, median bandwidth)")
    p = "" if test.p_adjusted is None else f", corrected p={test.p_adjusted:.2g}"
    right.set_title(f"permutation test: p={mmd.p_value:.2g}{p} "
                    f"[{'DRIFT' if test.drifted else 'ok'}]", fontsize=9,
                    color=_WIN if test.drifted else "black")
    right.legend(fontsize=7)
    return _png(fig)


def promise_over_time(times: Sequence[datetime], confidence: np.ndarray,
                      predicted: Sequence[str | None], truth: Sequence[str | None],
                      promise: Promise) -> bytes:
    """Selective accuracy of the labelled passed images so far (cumulative, at the end of
    each time bin, with its two-sided Clopper-Pearson interval) against the target, and the
    pass rate per bin. Cumulative, because a bin holds a handful of images and an interval
    over five images says nothing; the last point is the window's verdict."""
    conf = np.asarray(confidence, dtype=float)
    ok = ~np.isnan(conf)
    if not ok.any():
        return _message("No inference with a usable output in this window.", "The promise")
    sel = [int(j) for j in np.flatnonzero(ok)]
    idx, starts, width = time_bins([times[j] for j in sel])
    n_bins = len(starts)
    records, passed, labelled, right = (np.zeros(n_bins, int) for _ in range(4))
    for b, j in zip(idx, sel, strict=True):
        records[b] += 1
        if conf[j] >= promise.threshold:
            passed[b] += 1
            if truth[j] is not None:
                labelled[b] += 1
                right[b] += predicted[j] == truth[j]
    fig = Figure(layout="constrained", figsize=(9, 4.6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    left = _bar_axis(bottom, starts, width)
    days = width.total_seconds() / 86400
    mid = left + days / 2
    delta = (1 - promise.confidence) / 2
    n_cum, c_cum = np.cumsum(labelled), np.cumsum(right)
    has = n_cum > 0
    acc = np.divide(c_cum, n_cum, out=np.full(n_bins, np.nan), where=has)
    lo = np.array([clopper_pearson_lower(int(c), int(n), delta) if n else np.nan
                   for c, n in zip(c_cum, n_cum, strict=True)])
    hi = np.array([clopper_pearson_upper(int(c), int(n), delta) if n else np.nan
                   for c, n in zip(c_cum, n_cum, strict=True)])
    end = mid + days / 2  # the value holds at the end of its bin
    top.fill_between(end[has], lo[has], hi[has], color="#1f77b4", alpha=0.2,
                     label=f"{1 - 2 * delta:.0%} interval")
    top.plot(end[has], acc[has], "o-", color="#1f77b4",
             label="accuracy of the labelled passed images so far")
    if has.any():
        last = int(np.flatnonzero(has)[-1])
        top.annotate(f"{int(c_cum[last])}/{int(n_cum[last])}", (end[last], acc[last]),
                     textcoords="offset points", xytext=(4, -12), fontsize=7)
    top.axhline(promise.target_accuracy, color="red", linestyle="--",
                label=f"promise: {promise.target_accuracy:.1%}")
    top.set_ylim(max(0.0, float(np.nanmin(lo)) - 0.05) if has.any() else 0.5, 1.01)
    top.set_ylabel("selective accuracy")
    top.set_title(f"The promise: images with confidence >= {promise.threshold:.4f} are "
                  f"{promise.target_accuracy:.1%} right", loc="left", fontsize=10)
    top.legend(loc="lower left", fontsize=7)
    top.grid(alpha=0.3)
    rate = np.divide(passed, records, out=np.zeros(n_bins), where=records > 0)
    bottom.bar(left, rate, width=days * 0.92, align="edge", color="#2ca02c", alpha=0.8,
               label="pass rate")
    if promise.expected_coverage is not None:
        bottom.axhline(promise.expected_coverage, color="black", linestyle=":",
                       label=f"pass rate where it was chosen ({promise.expected_coverage:.0%})")
    _counts_on_top(bottom, left, days, records, rate)
    bottom.set_ylim(0, 1.15)
    bottom.set_ylabel("pass rate")
    bottom.set_xlabel(f"time (UTC), bins of {_width_words(width)}; number: requests")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return _png(fig)
