"""The report's plots, each a pure function of arrays returning PNG bytes.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no global
state, no display), so plotting is safe in servers, threads and tests.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sconeflow.monitoring.checks import DriftTest
from sconeflow.monitoring.outcomes import WorkflowOutcome

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


def _time_bins(times: Sequence[datetime], n_bins: int = 12) -> tuple[np.ndarray, list[datetime]]:
    """Bin index per time and the bins' start times: at most n_bins equal spans."""
    secs = np.array([t.timestamp() for t in times])
    lo, hi = float(secs.min()), float(secs.max())
    span = max(hi - lo, 1.0)
    width = span / n_bins
    idx = np.minimum(((secs - lo) / width).astype(int), n_bins - 1)
    starts = [datetime.fromtimestamp(lo + i * width, tz=times[0].tzinfo) for i in range(n_bins)]
    return idx, starts


def _clock(starts: Sequence[datetime]) -> str:
    """strftime format for bin labels: seconds only when bins are under a minute apart."""
    if len(starts) > 1 and (starts[1] - starts[0]).total_seconds() < 60:
        return "%H:%M:%S"
    return "%H:%M"


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
    ax.set_title("Confidence of recent inferences", loc="left")
    ax.legend(loc="lower left", fontsize=8, ncols=3)
    ax.grid(alpha=0.3)
    # Capture times have one-second precision: a burst can fall in a single second, and
    # matplotlib widens a zero-width date range to +-2 years. Keep at least a minute.
    shown = [times[j] for j in range(len(times)) if ok[j]]
    lo, hi = min(shown), max(shown)
    if (hi - lo).total_seconds() < 60:
        pad = timedelta(seconds=30 - (hi - lo).total_seconds() / 2)
        ax.set_xlim(lo - pad, hi + pad)  # type: ignore[arg-type]
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
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


def class_mix(
    times: Sequence[datetime], predicted: Sequence[str | None], class_names: Sequence[str],
    baseline_share: dict[str, float],
) -> bytes:
    """Share of each predicted class per time bin, with the baseline's share dotted."""
    keep = [j for j, p in enumerate(predicted) if p is not None]
    if not keep:
        return _message("No predictions in this window.", "Class mix over time")
    idx, starts = _time_bins([times[j] for j in keep])
    labels = [predicted[j] for j in keep]
    n_bins = len(starts)
    counts = np.zeros((len(class_names), n_bins))  # (K, bins)
    for b, lab in zip(idx, labels, strict=True):
        counts[list(class_names).index(str(lab)), b] += 1
    totals = counts.sum(axis=0)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = Figure(layout="constrained", figsize=(9, 3.2))
    ax = fig.add_subplot()
    x = np.arange(n_bins)
    bottom = np.zeros(n_bins)
    for i, name in enumerate(class_names):
        ax.bar(x, share[i], bottom=bottom, color=_colour(i), label=name, width=0.9)
        bottom += share[i]
    acc = 0.0
    for i, name in enumerate(class_names[:-1]):
        acc += baseline_share.get(name, 0.0)
        ax.axhline(acc, color="black", linestyle=":", linewidth=1.5,
                   label="baseline mix" if i == 0 else None)
    fmt = _clock(starts)
    ticks = [f"{s.strftime(fmt)}\n(n={int(t)})" for s, t in zip(starts, totals, strict=True)]
    ax.set_xticks(x, ticks, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of predictions")
    ax.set_title("Predicted class mix over time (UTC bin start, requests)", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png(fig)


def feature_drift(
    tests: Sequence[DriftTest], baseline_values: dict[str, np.ndarray],
    window_values: dict[str, np.ndarray], baseline_counts: dict[str, dict[str, int]],
    window_counts: dict[str, dict[str, int]], max_panels: int = 6,
) -> bytes:
    """Baseline vs window distribution for the drifting features (else the closest calls)."""
    chosen = [t for t in tests if t.drifted] or sorted(tests, key=lambda t: -t.distance)[:3]
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
            base, win = baseline_values[t.feature], window_values[t.feature]
            both = np.concatenate([base, win])
            lo, hi = np.percentile(both, [0.5, 99.5])
            bins = np.linspace(lo, hi + 1e-9, 31)
            ax.hist(np.clip(base, lo, hi), bins=bins, density=True, color=_BASE, alpha=0.55,
                    label=f"baseline (n={t.n_baseline})")
            ax.hist(np.clip(win, lo, hi), bins=bins, density=True, histtype="step",
                    linewidth=2, color=_WIN, label=f"window (n={t.n_window})")
            ax.set_yticks([])
            ax.xaxis.set_major_locator(MaxNLocator(4))
            stat = f"KS D={t.distance:.2f}"
        else:
            ref, cur = baseline_counts[t.feature], window_counts[t.feature]
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
        p = f", p={t.p_adjusted:.1g}" if t.p_adjusted is not None else ""
        verdict = "DRIFT" if t.drifted else "ok"
        ax.set_title(f"{t.feature}: {stat}{p} [{verdict}]", fontsize=9,
                     color=_WIN if t.drifted else "black")
        ax.legend(fontsize=7)
    for ax in axes[len(chosen):]:
        ax.set_axis_off()
    fig.suptitle("Feature drift: baseline vs window (p after Holm correction)", x=0.01,
                 ha="left", fontsize=11)
    return _png(fig)


def workflow_outcomes(outcomes: Sequence[WorkflowOutcome]) -> bytes:
    """Succeeded / failed workflow executions per time bin."""
    if not outcomes:
        return _message("No workflow executions were recorded in this window.",
                        "Workflow executions")
    idx, starts = _time_bins([o.time for o in outcomes])
    statuses = sorted({o.status for o in outcomes}, key=lambda s: (s != "SUCCEEDED", s))
    counts = np.zeros((len(statuses), len(starts)))
    for b, o in zip(idx, outcomes, strict=True):
        counts[statuses.index(o.status), b] += 1
    colours = {"SUCCEEDED": "#2ca02c", "FAILED": "#d62728", "TIMED_OUT": "#9467bd",
               "ABORTED": "#8c564b", "RUNNING": "#bbbbbb"}
    fig = Figure(layout="constrained", figsize=(9, 3.0))
    ax = fig.add_subplot()
    x = np.arange(len(starts))
    bottom = np.zeros(len(starts))
    for s, row in zip(statuses, counts, strict=True):
        ax.bar(x, row, bottom=bottom, color=colours.get(s, "#17becf"), width=0.9,
               label=f"{s} ({int(row.sum())})")
        bottom += row
    ax.set_xticks(x, [s.strftime(_clock(starts)) for s in starts], fontsize=7)
    ax.set_ylabel("executions")
    ax.set_title("Workflow executions per time bin (UTC bin start)", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png(fig)
