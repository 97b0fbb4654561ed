"""`sconeflow evaluate`: run a model artifact over a staged split and measure it.

The images go through `sconeflow.serving.inference.predict`, the exact code the endpoint
runs (decode, normalise, onnxruntime), so the numbers here are the endpoint's numbers.
Accuracy, confusion matrix, expected calibration error and the confidence-threshold table
(what share of images would pass the workflow's filter, and how many of those are right),
plus a reliability diagram and a confusion-matrix plot as PNGs.
"""

from __future__ import annotations

import functools
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sconeflow.channels import read_lst
from sconeflow.config import Settings
from sconeflow.errors import DataError
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.store import Store
from sconeflow.training.calibration import (
    ECE_BINS,
    EceFloor,
    ReliabilityBin,
    ThresholdRow,
    ece_sampling_floor,
    expected_calibration_error,
    reliability_bins,
    threshold_table,
)

THRESHOLDS = (0.5, 0.8, 0.9, 0.93, 0.95, 0.99)


@dataclass(frozen=True)
class Evaluation:
    model: str
    split: str
    classes: list[str]
    labels: np.ndarray = field(repr=False)  # (N,)
    probabilities: np.ndarray = field(repr=False)  # (N, K) as the endpoint returns them
    files: list[str] = field(repr=False)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.probabilities.argmax(axis=1) == self.labels))

    @property
    def confusion(self) -> np.ndarray:
        """(K, K) counts: row = true class, column = predicted class."""
        k = len(self.classes)
        out = np.zeros((k, k), dtype=np.int64)
        np.add.at(out, (self.labels, self.probabilities.argmax(axis=1)), 1)
        return out

    @property
    def ece(self) -> float:
        return expected_calibration_error(self.probabilities, self.labels, ECE_BINS)

    @functools.cached_property
    def ece_floor(self) -> EceFloor:
        """ECE a perfectly calibrated model would show on this many images (simulated)."""
        return ece_sampling_floor(self.probabilities, levels=(0.03,), simulations=1000)

    def thresholds(self, thresholds: tuple[float, ...] = THRESHOLDS) -> list[ThresholdRow]:
        return threshold_table(self.probabilities, self.labels, thresholds)

    def reliability(self) -> list[ReliabilityBin]:
        return reliability_bins(self.probabilities, self.labels, ECE_BINS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "split": self.split,
            "images": len(self.labels),
            "classes": self.classes,
            "accuracy": self.accuracy,
            "ece": self.ece,
            "ece_bins": ECE_BINS,
            "ece_if_perfectly_calibrated": {
                "mean": self.ece_floor.mean,
                "std": self.ece_floor.std,
            },
            "confusion_matrix": self.confusion.tolist(),
            "thresholds": [
                {
                    "threshold": r.threshold,
                    "passed": r.passed,
                    "pass_share": r.pass_share,
                    "accuracy_on_passed": None if r.passed == 0 else r.accuracy_on_passed,
                }
                for r in self.thresholds()
            ],
        }


def evaluate_model(
    settings: Settings,
    store: Store,
    model: str,
    split: str = "test",
    *,
    progress: ProgressFn = no_progress,
) -> Evaluation:
    """Evaluate `model` (training job name, store key or local path) on a staged split."""
    from sconeflow.serving.endpoints import resolve_model
    from sconeflow.serving.inference import load_predictor, predict
    from sconeflow.serving.model import prepare_model_dir

    lst_key = f"data/{split}.lst"
    if not store.exists(settings.bucket, lst_key):
        raise DataError(
            f"no manifest at {store.uri(settings.bucket, lst_key)}; stage the data first "
            "(`sconeflow stage`) or pick another --split"
        )
    _, rows = read_lst(store, settings.bucket, split)
    with tempfile.TemporaryDirectory(prefix="sconeflow-eval-") as tmp:
        source = resolve_model(settings, model, Path(tmp))
        predictor = load_predictor(prepare_model_dir(source, Path(tmp) / "model"), threads=2)
        classes = list(predictor.meta.classes)
        bad = [lab for _, lab, _ in rows if not 0 <= lab < len(classes)]
        if bad:
            raise DataError(
                f"{lst_key} has label {bad[0]}, but the model knows {len(classes)} classes "
                f"({', '.join(classes)}); was it staged with other --classes?"
            )
        images = []
        for n, (_, _, name) in enumerate(rows, start=1):
            images.append(store.get(settings.bucket, f"data/{split}/{name}"))
            if n % 100 == 0 or n == len(rows):
                progress(f"read {split}", n, len(rows))
        probs = predict(predictor, images)
    labels = np.array([lab for _, lab, _ in rows], dtype=np.int64)
    return Evaluation(model, split, classes, labels, probs, [name for _, _, name in rows])


# ------------------------------------------------------------------ plots


def plot_reliability(ev: Evaluation) -> bytes:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in ev.reliability() if b.count]
    fig, (ax, ax_n) = plt.subplots(
        2, 1, figsize=(5.5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    width = bins[0].upper - bins[0].lower if bins else 1 / ECE_BINS
    ax.plot([0, 1], [0, 1], color="#888", linestyle="--", label="perfect calibration")
    ax.bar(
        [b.lower for b in bins],
        [b.accuracy for b in bins],
        width=width,
        align="edge",
        color="#4c78a8",
        edgecolor="white",
        label="accuracy in bin",
    )
    ax.plot(
        [b.mean_confidence for b in bins],
        [b.accuracy for b in bins],
        "o",
        color="#e45756",
        label="mean confidence vs accuracy",
    )
    ax.axvline(0.93, color="#f58518", linewidth=1, label="workflow threshold 0.93")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"Reliability on {ev.split} ({len(ev.labels)} images): accuracy {ev.accuracy:.3f}, "
        f"ECE {ev.ece:.3f}",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar([b.lower for b in bins], [b.count for b in bins], width=width, align="edge",
             color="#72b7b2", edgecolor="white")  # fmt: skip
    ax_n.set_yscale("log")
    ax_n.set_xlabel("confidence (top probability)")
    ax_n.set_ylabel("images")
    ax_n.set_xlim(0, 1)
    fig.tight_layout()
    return _png(fig)


def plot_confusion(ev: Evaluation) -> bytes:
    """Confusion matrix with counts and row shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = ev.confusion
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(ev.classes)
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * k, 1.8 + 1.1 * k))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=10)  # fmt: skip
    ax.set_xticks(range(k), ev.classes, rotation=30 if k > 3 else 0)
    ax.set_yticks(range(k), ev.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion on {ev.split}: accuracy {ev.accuracy:.3f}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
