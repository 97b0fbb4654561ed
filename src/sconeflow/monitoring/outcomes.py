"""What is learnt about inferences after the fact: ground truth labels and workflow outcomes.

Ground truth (model-quality monitoring, AWS_FORMATS.md section 5): JSONL objects
`{"groundTruthData":{"data":"1","encoding":"CSV"},"eventMetadata":{"eventId":"..."},
"eventVersion":"0"}` anywhere under a store prefix. `eventId` there names the capture's
`inferenceId` when the caller sent one, else the capture's `eventId`, so a record is matched
on its inferenceId first. `data` is the label index ("1") or the class name.

The promise: a model.json `selective` entry (threshold chosen by `sconeflow evaluate
--target-accuracy`) says "of the images that pass this threshold, at least target are
right". With ground truth the promise is checked on the window's labelled passed images.

Workflow outcomes come from the `executions` table: SUCCEEDED / FAILED per image, with the
image's `s3_key` in the execution input. A record is linked to an execution when the caller
sent the execution name, ARN or image key as the inference id (X-Amzn-SageMaker-Inference-Id).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from sconeflow.functions.config import DEFAULT_THRESHOLD
from sconeflow.monitoring.capture_reader import CaptureProblem, CaptureRecord, parse_time
from sconeflow.selective import DEFAULT_CONFIDENCE, promise_check
from sconeflow.store import Store


@dataclass(frozen=True)
class WorkflowOutcome:
    time: datetime
    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED | RUNNING
    name: str = ""
    s3_key: str = ""
    threshold: float | None = None  # filterLowConfidence's THRESHOLD the execution ran with


@dataclass
class GroundTruth:
    labels: dict[str, str] = field(default_factory=dict)  # eventId / inferenceId -> class name
    problems: list[CaptureProblem] = field(default_factory=list)


def read_workflow_outcomes(
    conn: sqlite3.Connection, since: datetime | None = None, until: datetime | None = None
) -> list[WorkflowOutcome]:
    """Executions started in [since, until), oldest first; rows with bad times are skipped."""
    out = []
    rows = conn.execute("SELECT name, arn, status, input, started_at, threshold FROM executions")
    for row in rows:
        try:
            when = parse_time(str(row["started_at"]))
        except ValueError:
            continue
        if (since and when < since) or (until and when >= until):
            continue
        try:
            doc = json.loads(row["input"] or "{}")
        except json.JSONDecodeError:
            doc = {}
        key = doc.get("s3_key", "") if isinstance(doc, dict) else ""
        threshold = None if row["threshold"] is None else float(row["threshold"])
        out.append(
            WorkflowOutcome(when, str(row["status"]), str(row["name"]), str(key or ""), threshold)
        )
    return sorted(out, key=lambda o: o.time)


def workflow_threshold(outcomes: Sequence[WorkflowOutcome]) -> float:
    """The confidence threshold the window's workflow ran with: the latest execution's that
    recorded one, else filterLowConfidence's default."""
    for outcome in reversed(outcomes):
        if outcome.threshold is not None:
            return outcome.threshold
    return DEFAULT_THRESHOLD


def outcome_index(outcomes: Iterable[WorkflowOutcome]) -> dict[str, str]:
    """id -> status, keyed by execution name and image key (what an inference id may carry)."""
    index: dict[str, str] = {}
    for o in outcomes:
        for key in (o.name, o.s3_key):
            if key:
                index[key] = o.status
    return index


def read_ground_truth(
    store: Store, bucket: str, prefix: str, class_names: Sequence[str]
) -> GroundTruth:
    """Labels from every .jsonl under `prefix`; bad lines become problems, never errors."""
    truth = GroundTruth()
    for key in store.list(bucket, prefix):
        if not key.endswith(".jsonl"):
            continue
        text = store.get(bucket, key).decode("utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                event_id, label = _parse_truth(line, class_names)
            except ValueError as err:
                truth.problems.append(CaptureProblem(key, n, f"ground truth: {err}"))
                continue
            truth.labels[event_id] = label
    return truth


def format_ground_truth(event_id: str, label: int) -> str:
    """One ground truth line in AWS's format (the inverse of what read_ground_truth reads)."""
    return json.dumps({"groundTruthData": {"data": str(label), "encoding": "CSV"},
                       "eventMetadata": {"eventId": event_id}, "eventVersion": "0"})


def _parse_truth(line: str, class_names: Sequence[str]) -> tuple[str, str]:
    try:
        doc: Any = json.loads(line)
        data = doc["groundTruthData"]["data"]
        event_id = doc["eventMetadata"]["eventId"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(
            'expected {"groundTruthData":{"data":"1","encoding":"CSV"},'
            '"eventMetadata":{"eventId":"..."},"eventVersion":"0"}'
        ) from err
    value = str(data).strip().strip('"')
    if value in class_names:
        return str(event_id), value
    try:
        index = int(float(value))
    except ValueError as err:
        raise ValueError(
            f"label {value!r} is neither a class index nor one of {list(class_names)}"
        ) from err
    if not 0 <= index < len(class_names):
        raise ValueError(f"label index {index} is outside 0..{len(class_names) - 1}")
    return str(event_id), class_names[index]


def truth_labels(records: Sequence[CaptureRecord], truth: GroundTruth) -> list[str | None]:
    """The true class of each record (inferenceId first, else eventId), None if unlabelled."""
    return [truth.labels.get(r.inference_id or "") or truth.labels.get(r.event_id)
            for r in records]


@dataclass(frozen=True)
class Promise:
    """What the deployed model promises: images with confidence >= threshold are right
    with probability >= target_accuracy (stated with `confidence`)."""

    threshold: float
    target_accuracy: float
    confidence: float = DEFAULT_CONFIDENCE
    guaranteed: bool = False  # proved on held-out data (SGR), or only observed there
    expected_coverage: float | None = None  # share that passed where it was chosen
    source: str = ""


def promise_from_meta(meta: dict[str, Any], model: str = "") -> Promise | None:
    """The Promise of a model.json document's `selective` entry, or None without one."""
    entry = meta.get("selective")
    if not isinstance(entry, dict):
        return None
    try:
        return Promise(
            threshold=float(entry["threshold"]),
            target_accuracy=float(entry["target_accuracy"]),
            confidence=float(entry.get("confidence", DEFAULT_CONFIDENCE)),
            guaranteed=bool(entry.get("guaranteed", False)),
            expected_coverage=(None if entry.get("coverage") is None
                               else float(entry["coverage"])),
            source=f"model.json of {model or 'the model'} ({entry.get('data', {})})",
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class PromiseResult:
    """The promise on one window's labelled traffic."""

    records: int
    passed: int  # records with confidence >= threshold
    labelled_passed: int
    correct: int
    selective_accuracy: float | None
    upper_bound: float  # one-sided upper bound of the selective accuracy at `confidence`
    broken: bool
    promise: Promise

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.records if self.records else None

    def to_json(self) -> dict[str, Any]:
        return {"records": self.records, "passed": self.passed, "pass_rate": self.pass_rate,
                "labelled_passed": self.labelled_passed, "correct": self.correct,
                "selective_accuracy": self.selective_accuracy,
                "upper_bound": self.upper_bound, "broken": self.broken}

    def violation(self) -> dict[str, str]:
        p = self.promise
        return {
            "feature_name": "selective_accuracy",
            "constraint_check_type": "LessThanThreshold",
            "description": (
                f"Of {self.labelled_passed} labelled images that passed threshold "
                f"{p.threshold:.4f}, {self.correct} were right "
                f"({(self.selective_accuracy or 0):.1%}); even the {p.confidence:.0%} upper "
                f"bound {self.upper_bound:.1%} is below the promised "
                f"{p.target_accuracy:.1%}."
            ),
        }


def check_promise(promise: Promise, confidence: np.ndarray, predicted: Sequence[str | None],
                  truth: Sequence[str | None]) -> PromiseResult:
    """The promise on a window: `confidence` (N,), predictions and true labels per record."""
    conf = np.asarray(confidence, dtype=float)
    passed = ~np.isnan(conf) & (conf >= promise.threshold)
    labelled = [int(i) for i in np.flatnonzero(passed) if truth[int(i)] is not None]
    correct = sum(predicted[i] == truth[i] for i in labelled)
    broken, observed, upper = promise_check(len(labelled), correct, promise.target_accuracy,
                                            promise.confidence)
    return PromiseResult(
        records=int(np.sum(~np.isnan(conf))), passed=int(passed.sum()),
        labelled_passed=len(labelled), correct=int(correct),
        selective_accuracy=None if not labelled else observed, upper_bound=upper,
        broken=broken, promise=promise,
    )


def merge_ground_truth(
    records: Sequence[CaptureRecord], predicted: Sequence[str | None], truth: GroundTruth
) -> tuple[list[str], list[str]]:
    """(true, predicted) class names for the records that have both."""
    y_true, y_pred = [], []
    for record, pred in zip(records, predicted, strict=True):
        label = truth.labels.get(record.inference_id or "") or truth.labels.get(record.event_id)
        if label is not None and pred is not None:
            y_true.append(label)
            y_pred.append(pred)
    return y_true, y_pred


def quality_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], class_names: Sequence[str], *, seed: int = 0
) -> dict[str, Any]:
    """SageMaker's multiclass_classification_metrics: values with bootstrap std deviations."""
    k = len(class_names)
    index = {c: i for i, c in enumerate(class_names)}
    t = np.array([index[c] for c in y_true], dtype=np.int64)
    p = np.array([index[c] for c in y_pred], dtype=np.int64)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)  # rows: truth, cols: predicted
    # 200 bootstrap resamples at once: (R, N) indices -> (R, K, K) confusion matrices.
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(t), size=(200, len(t))) if len(t) else np.zeros((200, 0), int)
    flat = (t[draws] * k + p[draws]) + (np.arange(200)[:, None] * k * k)
    boot = np.bincount(flat.ravel(), minlength=200 * k * k).reshape(200, k, k)
    metrics = {name: _metric(fn(cm[None])[0], fn(boot)) for name, fn in _METRICS.items()}
    return {
        "confusion_matrix": {
            class_names[i]: {class_names[j]: int(cm[i, j]) for j in range(k)} for i in range(k)
        },
        **metrics,
    }


def _metric(value: float, boot: np.ndarray) -> dict[str, float]:
    return {"value": float(value), "standard_deviation": float(np.std(boot))}


def _accuracy(cm: np.ndarray) -> np.ndarray:  # (R, K, K) -> (R,)
    total = cm.sum(axis=(1, 2))
    return np.trace(cm, axis1=1, axis2=2) / np.maximum(total, 1)


def _weighted(cm: np.ndarray, which: str) -> np.ndarray:
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)  # (R, K)
    support = cm.sum(axis=2)  # true count per class
    predicted = cm.sum(axis=1)
    precision = tp / np.maximum(predicted, 1)
    recall = tp / np.maximum(support, 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    per_class = {"precision": precision, "recall": recall, "f1": f1}[which]
    return (per_class * support).sum(axis=1) / np.maximum(support.sum(axis=1), 1)


_METRICS = {
    "accuracy": _accuracy,
    "weighted_precision": lambda cm: _weighted(cm, "precision"),
    "weighted_recall": lambda cm: _weighted(cm, "recall"),
    "weighted_f1": lambda cm: _weighted(cm, "f1"),
}
