"""One monitoring execution: read a capture window, check it, write Model Monitor's files.

    analyse_window   capture -> features -> statistics -> checks (+ ground truth), in memory
    run_monitoring   analyse_window, then write under `monitoring/<schedule>/<run-id>/`:
                     statistics.json, constraint_violations.json, summary.json (ours: counts,
                     estimated accuracy, drift tests, skipped lines), model_quality.json
                     (with ground truth), and a row in the `monitoring_runs` table.

With the deployed model's folder (`model_dir`) a run also tests the model's embedding of
the images (monitoring.embeddings) and, with ground truth, checks the promise stored in
its model.json (`selective`: a threshold chosen for a target selective accuracy): the
accuracy of the labelled images that passed the threshold, against the target, with a
one-sided Clopper-Pearson bound (violation `selective_accuracy` / LessThanThreshold when
even the upper bound is below the target).

Status: Completed (no violation), CompletedWithViolations, or Failed when the run itself
could not be done (no baseline, store down); a Failed run is recorded, then raised.
Bad capture lines never fail a run: they are counted in summary.json with file and line.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sconeflow.errors import MonitoringError, SconeflowError
from sconeflow.monitoring.baseline import Baseline, build_statistics, load_baseline
from sconeflow.monitoring.capture_reader import (
    DEFAULT_VARIANT,
    CaptureBatch,
    CaptureProblem,
    format_time,
    read_capture,
)
from sconeflow.monitoring.checks import DEFAULT_ALPHA, CheckResult, check_window
from sconeflow.monitoring.embeddings import Embedder, load_embedder
from sconeflow.monitoring.features import FeatureTable, compute_features
from sconeflow.monitoring.outcomes import (
    Promise,
    PromiseResult,
    WorkflowOutcome,
    check_promise,
    merge_ground_truth,
    outcome_index,
    promise_from_meta,
    quality_metrics,
    read_ground_truth,
    read_workflow_outcomes,
    truth_labels,
)
from sconeflow.store import Store

MAX_LISTED_PROBLEMS = 200  # summary.json lists this many skipped lines, counts all


@dataclass
class WindowAnalysis:
    """Everything known about one window; the report draws from it."""

    endpoint: str
    class_names: list[str]
    since: datetime | None
    until: datetime | None
    capture: CaptureBatch
    table: FeatureTable
    statistics: dict[str, Any]
    baseline: Baseline
    checks: CheckResult
    outcomes: list[WorkflowOutcome] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    truth_problems: list[CaptureProblem] = field(default_factory=list)
    ground_truth_prefix: str | None = None
    truth: list[str | None] = field(default_factory=list)  # per record, when labelled
    promise: Promise | None = None
    promise_result: PromiseResult | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # what plots need (MMD's null)

    @property
    def est_accuracy(self) -> float | None:
        """Mean calibrated top probability of the window: accuracy expected without labels."""
        conf = self.table.numeric.get("confidence")
        if conf is None or not np.any(~np.isnan(conf)):
            return None
        return float(np.nanmean(conf))

    @property
    def status(self) -> str:
        return "CompletedWithViolations" if self.checks.violations else "Completed"

    @property
    def problems(self) -> list[CaptureProblem]:
        return [*self.capture.problems, *self.truth_problems]


@dataclass(frozen=True)
class RunRecord:
    """A finished run as stored: where its files are and what it found."""

    run_id: str
    schedule: str
    endpoint: str
    status: str
    prefix: str
    violations: int
    started_at: str
    window_start: str | None
    window_end: str | None
    failure_reason: str | None = None


def analyse_window(
    store: Store,
    bucket: str,
    *,
    endpoint: str,
    class_names: Sequence[str],
    baseline: Baseline,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str = DEFAULT_VARIANT,
    outcomes: Sequence[WorkflowOutcome] = (),
    ground_truth_prefix: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    embedder: Embedder | None = None,
    promise: Promise | None = None,
    notes: Sequence[str] = (),
) -> WindowAnalysis:
    """Read, featurise and check the capture of [since, until); nothing is written.

    `embedder` adds the embedding test; `promise` (with ground truth) the promise check;
    `notes` are shown with the run's own notes (e.g. "times are simulated")."""
    if not class_names:
        raise MonitoringError(
            "no class names: the baseline does not list them; pass the model's classes "
            "(e.g. --classes bicycle,motorcycle)"
        )
    capture = read_capture(store, bucket, endpoint, variant=variant, since=since, until=until)
    table = compute_features(capture.records, class_names, outcomes=outcome_index(outcomes),
                             embedder=embedder)  # fmt: skip
    statistics = build_statistics(table)
    extras: dict[str, Any] = {}
    checks = check_window(table, statistics, baseline, alpha=alpha, keep=extras)
    checks.notes[:0] = list(notes)
    analysis = WindowAnalysis(
        endpoint=endpoint, class_names=list(class_names), since=since, until=until,
        capture=capture, table=table, statistics=statistics, baseline=baseline,
        checks=checks, outcomes=list(outcomes), ground_truth_prefix=ground_truth_prefix,
        promise=promise, extras=extras,
    )
    if ground_truth_prefix:
        truth = read_ground_truth(store, bucket, ground_truth_prefix, class_names)
        analysis.truth_problems = truth.problems
        analysis.truth = truth_labels(capture.records, truth)
        y_true, y_pred = merge_ground_truth(
            capture.records, table.strings["predicted_class"], truth
        )
        if y_true:
            analysis.quality = quality_metrics(y_true, y_pred, class_names)
            if promise is not None:
                analysis.promise_result = check_promise(
                    promise, table.numeric["confidence"], table.strings["predicted_class"],
                    analysis.truth)  # fmt: skip
                if analysis.promise_result.broken:
                    checks.violations.append(analysis.promise_result.violation())
        else:
            checks.notes.append(
                f"No ground truth under {ground_truth_prefix!r} matched a record of the window "
                "(matched on inferenceId, else eventId)."
            )
    return analysis


def load_model_for_monitoring(
    model_dir: Path | None, model_name: str = "",
) -> tuple[Embedder | None, Promise | None, list[str]]:
    """What a run uses from the deployed model: its embedder (if the graph exports one),
    its promise (model.json's `selective` entry), and notes on what is missing."""
    if model_dir is None:
        return None, None, ["No model was given to this run, so the model's embedding of the "
                            "images is not tested (pass --model, or monitor an endpoint "
                            "deployed from a training job)."]
    from sconeflow.serving.model import read_meta

    embedder, why = load_embedder(model_dir)
    notes = [f"The model {model_name}: {why}."] if why else []
    promise = promise_from_meta(read_meta(model_dir).raw, model_name)
    return embedder, promise, notes


def new_run_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def run_prefix(schedule: str, run_id: str) -> str:
    return f"monitoring/{schedule}/{run_id}/"


def run_monitoring(
    store: Store,
    bucket: str,
    conn: sqlite3.Connection,
    *,
    endpoint: str,
    schedule: str,
    class_names: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str = DEFAULT_VARIANT,
    outcomes: Sequence[WorkflowOutcome] | None = None,
    ground_truth_prefix: str | None = None,
    alpha: float = DEFAULT_ALPHA,
    now: datetime | None = None,
    model_dir: Path | None = None,
    model_name: str = "",
    notes: Sequence[str] = (),
    promise: Promise | None = None,
) -> tuple[RunRecord, WindowAnalysis]:
    """One monitoring execution, recorded in the store and the db; see the module docstring.

    `class_names` defaults to the baseline's; `outcomes` to the workflow executions in the
    db that started in the window; `model_dir` (the deployed model) adds the embedding test
    and the promise check (`promise` replaces the one in its model.json).
    """
    started = (now or datetime.now(UTC)).astimezone(UTC)
    run_id = new_run_id(started)
    prefix = run_prefix(schedule, run_id)
    window = (format_time(since) if since else None, format_time(until) if until else None)
    try:
        baseline = load_baseline(store, bucket, f"monitoring/{schedule}/baseline/")
        classes = list(class_names or baseline.class_names)
        if outcomes is None:
            outcomes = read_workflow_outcomes(conn, since, until)
        embedder, stated, model_notes = load_model_for_monitoring(model_dir, model_name)
        promise = promise or stated
        analysis = analyse_window(
            store, bucket, endpoint=endpoint, class_names=classes, baseline=baseline,
            since=since, until=until, variant=variant, outcomes=outcomes,
            ground_truth_prefix=ground_truth_prefix, alpha=alpha, embedder=embedder,
            promise=promise, notes=[*notes, *model_notes],
        )
        _write_outputs(store, bucket, prefix, run_id, analysis, started)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        _record(conn, RunRecord(run_id, schedule, endpoint, "Failed", prefix, 0,
                                format_time(started), *window, failure_reason=reason))
        if isinstance(err, SconeflowError) and not isinstance(err, MonitoringError):
            raise MonitoringError(f"monitoring run {run_id} failed: {reason}") from err
        raise
    record = RunRecord(run_id, schedule, endpoint, analysis.status, prefix,
                       len(analysis.checks.violations), format_time(started), *window)
    _record(conn, record)
    return record, analysis


def summary_of(analysis: WindowAnalysis, run_id: str, started: datetime) -> dict[str, Any]:
    """summary.json: the numbers a person or a script acts on."""
    problems = analysis.problems
    return {
        "run_id": run_id,
        "endpoint": analysis.endpoint,
        "status": analysis.status,
        "started_at": format_time(started),
        "window": {
            "start": format_time(analysis.since) if analysis.since else None,
            "end": format_time(analysis.until) if analysis.until else None,
        },
        "records": len(analysis.table),
        "files_read": analysis.capture.files,
        "lines_read": analysis.capture.lines,
        "skipped": len(problems),
        "skipped_lines": [
            {"file": p.source, "line": p.line, "reason": p.reason}
            for p in problems[:MAX_LISTED_PROBLEMS]
        ],
        "est_accuracy": analysis.est_accuracy,
        "baseline_est_accuracy": analysis.baseline.est_accuracy,
        "model_quality": analysis.quality,
        "ground_truth_prefix": analysis.ground_truth_prefix,
        "promise": None if analysis.promise is None else {
            **asdict(analysis.promise),
            "result": None if analysis.promise_result is None
            else analysis.promise_result.to_json(),
        },
        **analysis.checks.to_json(),
    }


def _write_outputs(
    store: Store, bucket: str, prefix: str, run_id: str, analysis: WindowAnalysis,
    started: datetime,
) -> None:
    docs: dict[str, Any] = {
        "statistics.json": analysis.statistics,
        "constraint_violations.json": {"violations": analysis.checks.violations},
        "summary.json": summary_of(analysis, run_id, started),
    }
    if analysis.quality is not None:
        docs["model_quality.json"] = {
            "version": 0,
            "dataset": {"item_count": sum(
                sum(row.values()) for row in analysis.quality["confusion_matrix"].values()
            ), "evaluation_time": format_time(started)},
            "multiclass_classification_metrics": analysis.quality,
        }
    for name, doc in docs.items():
        store.put(bucket, prefix + name, json.dumps(doc, indent=1).encode())


def _record(conn: sqlite3.Connection, r: RunRecord) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO monitoring_runs (id, schedule, endpoint, status, started_at, "
        "window_start, window_end, violations, output_prefix, failure_reason) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (r.run_id, r.schedule, r.endpoint, r.status, r.started_at, r.window_start,
         r.window_end, r.violations, r.prefix, r.failure_reason),
    )


def list_runs(conn: sqlite3.Connection, schedule: str | None = None) -> list[RunRecord]:
    """Runs newest first, optionally of one schedule."""
    sql = "SELECT * FROM monitoring_runs"
    args: tuple[str, ...] = ()
    if schedule:
        sql += " WHERE schedule = ?"
        args = (schedule,)
    rows = conn.execute(sql + " ORDER BY started_at DESC, id DESC", args).fetchall()
    return [
        RunRecord(row["id"], row["schedule"], row["endpoint"], row["status"],
                  row["output_prefix"], row["violations"], row["started_at"],
                  row["window_start"], row["window_end"], row["failure_reason"])
        for row in rows
    ]


def delete_runs(conn: sqlite3.Connection) -> int:
    """Forget every monitoring run (`sconeflow cleanup --captures`, which deletes their
    outputs from the store); how many records there were."""
    return int(conn.execute("DELETE FROM monitoring_runs").rowcount)
