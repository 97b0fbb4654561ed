"""`sconeflow evaluate`: run a model artifact over a staged split and measure it.

The images go through `sconeflow.serving.inference.predict`, the exact code the endpoint
runs (decode, normalise, onnxruntime), so the numbers here are the endpoint's numbers.
Accuracy, confusion matrix, expected calibration error and the confidence-threshold table
(what share of images would pass the workflow's filter, and how many of those are right),
plus a reliability diagram and a confusion-matrix plot as PNGs.

With a target selective accuracy it also chooses the threshold (sconeflow.selective: the
risk-coverage curve, AURC, SGR's guaranteed threshold) and can store it in the artifact's
model.json as the `selective` entry, which `workflow run --threshold model` and the
Lambda's `THRESHOLD=model` read:

    "selective": {"threshold": 0.97, "target_accuracy": 0.99, "confidence": 0.95,
                  "guaranteed": false, "accuracy_lower_bound": 0.962, "coverage": 0.61,
                  "selective_accuracy": 0.992, "passed": 122, "images": 200,
                  "images_needed": 505, "method": "...", "per_class": [...],
                  "data": {"split": "test", "images": 200}, "aurc": 0.012,
                  "computed_at": "2025-08-22T04:00:00Z", "sconeflow_version": "0.1.0"}
"""

from __future__ import annotations

import functools
import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sconeflow import __version__
from sconeflow.channels import read_lst
from sconeflow.config import Settings
from sconeflow.errors import DataError, ModelError
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.selective import (
    DEFAULT_CONFIDENCE,
    RiskCoverage,
    SelectiveThreshold,
    risk_coverage,
    select_threshold,
)
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
REFERENCE_THRESHOLD = 0.93  # the reference project's guess, drawn for comparison
SELECTIVE_KEY = "selective"  # model.json's entry for the chosen threshold


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

    @property
    def correct(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1) == self.labels

    @functools.cached_property
    def risk_coverage(self) -> RiskCoverage:
        return risk_coverage(self.probabilities.max(axis=1), self.correct)

    def selective(
        self, target_accuracy: float, confidence: float = DEFAULT_CONFIDENCE
    ) -> SelectiveThreshold:
        """The threshold for `target_accuracy` on these images (sconeflow.selective)."""
        return select_threshold(
            self.probabilities.max(axis=1), self.correct, target_accuracy,
            confidence_level=confidence, labels=self.labels, class_names=self.classes,
        )  # fmt: skip

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
            "aurc": self.risk_coverage.aurc,
            "excess_aurc": self.risk_coverage.excess_aurc,
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


# ------------------------------------------------------------------ the stored threshold


def selective_entry(ev: Evaluation, chosen: SelectiveThreshold) -> dict[str, Any]:
    """model.json's `selective` entry for a threshold chosen on `ev` (see the module doc)."""
    return {
        **chosen.to_dict(),
        "data": {"split": ev.split, "images": len(ev.labels)},
        "aurc": ev.risk_coverage.aurc,
        "computed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sconeflow_version": __version__,
    }


def parse_selective(meta: dict[str, Any], source: str) -> dict[str, Any]:
    """model.json's `selective` entry, checked; ModelError says how to create one."""
    entry = meta.get(SELECTIVE_KEY)
    if entry is None:
        raise ModelError(
            f"{source} has no {SELECTIVE_KEY!r} entry, so it states no threshold; choose one "
            "with `sconeflow evaluate --model <job> --target-accuracy 0.99 --split <split> "
            "--save`, or pass a number (e.g. --threshold 0.93)"
        )
    threshold = entry.get("threshold") if isinstance(entry, dict) else None
    if (not isinstance(threshold, int | float) or isinstance(threshold, bool)
            or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0 + 1e-9):
        raise ModelError(
            f"{source}: {SELECTIVE_KEY}.threshold is {threshold!r}; expected a probability "
            "between 0 and 1; recompute it with `sconeflow evaluate ... --save`"
        )
    return dict(entry)


def model_selective(settings: Settings, model: str) -> dict[str, Any]:
    """The `selective` entry of a model (training job name, model.tar.gz or folder)."""
    from sconeflow.serving.endpoints import resolve_model
    from sconeflow.serving.model import read_meta

    with tempfile.TemporaryDirectory(prefix="sconeflow-meta-") as tmp:
        meta = read_meta(resolve_model(settings, model, Path(tmp) / "model")).raw
    return parse_selective(meta, f"model {model!r}")


def save_selective(settings: Settings, store: Store, model: str, entry: dict[str, Any]) -> str:
    """Write `entry` into the model's model.json (the artifact is repacked by the one
    writer, sconeflow.serving.model.pack_artifact); returns where it was written.

    A training job name updates models/<job>/output/model.tar.gz in the store; a
    model.tar.gz path or a model folder is updated in place.
    """
    from sconeflow.serving.model import META_NAME, ONNX_NAME, extract_artifact, pack_artifact

    path = Path(model).expanduser()
    if path.is_dir():
        meta = json.loads((path / META_NAME).read_text(encoding="utf-8"))
        meta[SELECTIVE_KEY] = entry
        (path / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return str(path / META_NAME)
    key = f"models/{model}/output/model.tar.gz"
    with tempfile.TemporaryDirectory(prefix="sconeflow-save-") as tmp:
        if path.is_file():
            tarball = path
        else:
            tarball = Path(tmp) / "model.tar.gz"
            try:
                tarball.write_bytes(store.get(settings.bucket, key))
            except Exception as err:
                raise ModelError(
                    f"model {model!r} is neither a file, a folder nor a training job with an "
                    f"artifact at {store.uri(settings.bucket, key)}"
                ) from err
        folder = extract_artifact(tarball, Path(tmp) / "model")
        meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
        meta[SELECTIVE_KEY] = entry
        blob = pack_artifact((folder / ONNX_NAME).read_bytes(), meta)
    if path.is_file():
        tmp_path = path.with_name(path.name + ".part")
        tmp_path.write_bytes(blob)
        tmp_path.replace(path)
        return str(path)
    store.put(settings.bucket, key, blob)
    return store.uri(settings.bucket, key)


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
    ax.axvline(REFERENCE_THRESHOLD, color="#f58518", linewidth=1,
               label=f"reference threshold {REFERENCE_THRESHOLD}")
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


def plot_risk_coverage(ev: Evaluation, chosen: SelectiveThreshold | None = None) -> bytes:
    """Selective accuracy against coverage, with the chosen threshold, the reference's 0.93
    and, for each point, the one-sided Clopper-Pearson lower bound at the same confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sconeflow.selective import clopper_pearson_lower

    rc = ev.risk_coverage
    n = len(ev.labels)
    passed = np.rint(rc.coverage * n).astype(int)
    accuracy = 1.0 - rc.risk
    confidence = chosen.confidence if chosen else DEFAULT_CONFIDENCE
    lower = [clopper_pearson_lower(round(a * k), int(k), 1 - confidence)
             for a, k in zip(accuracy, passed, strict=True)]  # fmt: skip
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.step(rc.coverage, accuracy, where="post", color="#4c78a8", label="selective accuracy")
    ax.step(rc.coverage, lower, where="post", color="#4c78a8", linestyle=":",
            label=f"its {confidence:.0%} lower bound (per threshold)")  # fmt: skip
    ref = ev.thresholds((REFERENCE_THRESHOLD,))[0]
    if ref.passed:
        ax.plot([ref.pass_share], [float(ref.accuracy_on_passed)], "s", color="#f58518",
                markersize=8,
                label=f"reference threshold {REFERENCE_THRESHOLD}: {ref.pass_share:.0%} pass, "
                f"{ref.accuracy_on_passed:.1%} right")  # fmt: skip
    if chosen is not None:
        ax.axhline(chosen.target_accuracy, color="#e45756", linestyle="--", linewidth=1,
                   label=f"target {chosen.target_accuracy:.1%}")  # fmt: skip
        if chosen.passed:
            kind = "guaranteed" if chosen.guaranteed else "empirical, NOT guaranteed"
            ax.plot([chosen.coverage], [float(chosen.selective_accuracy or 0.0)], "o",
                    color="#e45756", markersize=8, label=f"chosen {chosen.threshold:.4f} ({kind}): "
                    f"{chosen.coverage:.0%} pass, bound {chosen.accuracy_lower_bound:.1%}")
    ax.set_xlabel("coverage (share of images that pass)")
    ax.set_ylabel("accuracy of the images that pass")
    ax.set_xlim(0, 1.01)
    # The bound is near 0 for the first few images; the accuracy curve sets the scale.
    ax.set_ylim(max(0.0, min(0.85, float(np.min(accuracy)) - 0.05)), 1.005)
    ax.grid(alpha=0.3)
    ax.set_title(f"Risk-coverage on {ev.split} ({n} images): AURC {rc.aurc:.4f} "
                 f"(excess {rc.excess_aurc:.4f})", fontsize=10)  # fmt: skip
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
