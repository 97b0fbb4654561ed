"""Monitoring executions end to end: files under monitoring/<schedule>/<run-id>/, the
monitoring_runs row, Failed runs, ground truth, the schedule loop and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from sconeflow.cli import main
from sconeflow.config import Settings
from sconeflow.db import connect
from sconeflow.errors import ConfigError, MonitoringError
from sconeflow.monitoring.baseline import baseline_prefix, build_baseline, save_baseline
from sconeflow.monitoring.capture_reader import CaptureRecord, capture_key
from sconeflow.monitoring.features import compute_features
from sconeflow.monitoring.runner import list_runs, run_monitoring
from sconeflow.monitoring.schedule import parse_every, run_schedule
from sconeflow.monitoring.simulate import darken, decode_pngs, encode_pngs, write_capture
from sconeflow.serving.capture import CaptureConfig
from sconeflow.serving.endpoints import delete_endpoint, deploy
from sconeflow.store import Store, copy_prefix, open_store
from test_monitoring_support import (
    CLASSES,
    CONSTRAINTS_SCHEMA,
    STATISTICS_SCHEMA,
    VIOLATIONS_SCHEMA,
    fake_probs,
    staged_split,
    write_tiny_artifact,
)
from test_serving_support import free_port

T0 = datetime(2025, 8, 22, 4, 0, 0, tzinfo=UTC)
SCHEDULE = "ep-monitor"


@pytest.fixture
def workspace(settings: Settings, staged_home: Settings) -> tuple[Settings, Store]:
    """A fresh workspace with a baseline (train images, plausible outputs) for schedule ep."""
    store = open_store(settings)
    pngs, labels = staged_split(staged_home, "train")
    recs = [CaptureRecord(f"b{i}", T0, "image/png", p, tuple(q))
            for i, (p, q) in enumerate(zip(pngs, fake_probs(labels), strict=True))]
    save_baseline(store, settings.bucket, baseline_prefix(SCHEDULE),
                  build_baseline(compute_features(recs, CLASSES)))
    return settings, store


def _json(store: Store, settings: Settings, key: str) -> dict:
    return json.loads(store.get(settings.bucket, key))


def test_run_writes_model_monitor_files_and_a_db_row(
    workspace: tuple[Settings, Store], staged_home: Settings
) -> None:
    settings, store = workspace
    pngs, labels = staged_split(staged_home, "test")
    keys = write_capture(store, settings.bucket, "ep", pngs[:120], fake_probs(labels[:120], 1),
                         start=T0, interval=timedelta(seconds=20))
    # A file being written: its last line is cut off.
    first = store.get(settings.bucket, keys[0])
    store.put(settings.bucket, keys[0], first + first.split(b"\n")[0][:100])
    conn = connect(settings.db_path)
    record, analysis = run_monitoring(store, settings.bucket, conn, endpoint="ep",
                                      schedule=SCHEDULE, since=T0, until=T0 + timedelta(hours=1))
    assert record.status == "Completed", analysis.checks.violations
    assert record.prefix == f"monitoring/{SCHEDULE}/{record.run_id}/"
    jsonschema.validate(_json(store, settings, record.prefix + "statistics.json"),
                        STATISTICS_SCHEMA)
    violations = _json(store, settings, record.prefix + "constraint_violations.json")
    jsonschema.validate(violations, VIOLATIONS_SCHEMA)
    assert violations == {"violations": []}
    summary = _json(store, settings, record.prefix + "summary.json")
    assert summary["records"] == len(analysis.table) == 120
    assert summary["skipped"] == 1
    assert summary["skipped_lines"][0]["file"] == keys[0]
    assert summary["skipped_lines"][0]["line"] == 51
    assert summary["skipped_lines"][0]["reason"].startswith("truncated last line")
    assert 0.6 < summary["est_accuracy"] < 1
    [row] = list_runs(conn, SCHEDULE)
    assert (row.status, row.violations, row.window_start) == ("Completed", 0,
                                                             "2025-08-22T04:00:00Z")


def test_darkened_traffic_completes_with_violations_and_ground_truth(
    workspace: tuple[Settings, Store], staged_home: Settings
) -> None:
    settings, store = workspace
    pngs, labels = staged_split(staged_home, "test")
    dark = encode_pngs(darken(decode_pngs(pngs[:80]), 0.4))
    probs = fake_probs(labels[:80], 2)
    ids = [f"exec-{i}" for i in range(80)]
    write_capture(store, settings.bucket, "ep", dark, probs, start=T0, inference_ids=ids)
    truth = "\n".join(
        json.dumps({"groundTruthData": {"data": str(int(lab)), "encoding": "CSV"},
                    "eventMetadata": {"eventId": ids[i]}, "eventVersion": "0"})
        for i, lab in enumerate(labels[:80]))
    store.put(settings.bucket, "ground_truth/ep/2025/08/22/04/labels.jsonl", truth.encode())
    record, analysis = run_monitoring(
        store, settings.bucket, connect(settings.db_path), endpoint="ep", schedule=SCHEDULE,
        since=T0, until=T0 + timedelta(hours=1), ground_truth_prefix="ground_truth/ep/")
    assert record.status == "CompletedWithViolations" and record.violations >= 1
    names = {v["feature_name"] for v in analysis.checks.violations}
    assert "brightness" in names
    quality = _json(store, settings, record.prefix + "model_quality.json")
    metrics = quality["multiclass_classification_metrics"]
    expected = float(np.mean(np.argmax(probs, axis=1) == labels[:80]))
    assert metrics["accuracy"]["value"] == pytest.approx(expected)
    assert quality["dataset"]["item_count"] == 80 and "weighted_f1" in metrics


def test_failed_run_is_recorded_then_raised(settings: Settings) -> None:
    conn = connect(settings.db_path)
    with pytest.raises(MonitoringError, match="no baseline"):
        run_monitoring(open_store(settings), settings.bucket, conn, endpoint="ep",
                       schedule="none", since=T0, until=T0 + timedelta(hours=1))
    [row] = list_runs(conn)
    assert row.status == "Failed" and "no baseline" in (row.failure_reason or "")


def test_schedule_runs_contiguous_windows_and_survives_failures() -> None:
    clock = [T0]
    windows: list[tuple[datetime, datetime]] = []
    errors: list[Exception] = []

    def once(since: datetime, until: datetime) -> None:
        windows.append((since, until))
        clock[0] += timedelta(minutes=5)  # a run takes 5 minutes
        if len(windows) == 2:
            raise MonitoringError("store unreachable")

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    runs = run_schedule(once, every=timedelta(hours=1), max_runs=3, now=lambda: clock[0],
                        sleep=sleep, on_error=errors.append)
    assert runs == 3 and len(errors) == 1
    assert windows == [(T0 - timedelta(hours=1), T0), (T0, T0 + timedelta(hours=1)),
                       (T0 + timedelta(hours=1), T0 + timedelta(hours=2))]
    assert parse_every("90s") == timedelta(seconds=90) and parse_every("1h") == timedelta(hours=1)
    with pytest.raises(ConfigError, match="e.g. 1h"):
        parse_every("hourly")


def test_cli_baseline_run_report_schedule(
    settings: Settings, staged_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = open_store(settings)
    copy_prefix(open_store(staged_home), store, settings.bucket, "data/")
    artifact = write_tiny_artifact(tmp_path / "model.tar.gz")
    home = ["--home", str(settings.home)]
    main([*home, "monitor", "baseline", "--endpoint", "ep", "--model", str(artifact), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 200 and out["schedule"] == SCHEDULE
    jsonschema.validate(_json(store, settings, f"monitoring/{SCHEDULE}/baseline/constraints.json"),
                        CONSTRAINTS_SCHEMA)
    # Before any traffic, a run says where the captures will appear.
    main([*home, "monitor", "run", "--endpoint", "ep", "--no-report"])
    quiet = capsys.readouterr().out
    assert "Completed run" in quiet and "No captured requests of endpoint ep from" in quiet
    assert store.uri(settings.bucket, "data_capture/ep/") in quiet.replace("\n", "")
    # Traffic: the model's own answers on test images, now (so the default window sees it).
    from sconeflow.serving.inference import load_predictor, predict
    from sconeflow.serving.model import prepare_model_dir

    predictor = load_predictor(prepare_model_dir(artifact, tmp_path / "m"))
    pngs, _ = staged_split(staged_home, "test")
    now = datetime.now(UTC).replace(microsecond=0)
    write_capture(store, settings.bucket, "ep", pngs[:60], predict(predictor, pngs[:60]),
                  start=now - timedelta(minutes=30), interval=timedelta(seconds=10))
    store.put(settings.bucket, capture_key("ep", now - timedelta(minutes=1)), b"{garbage\n")
    main([*home, "monitor", "run", "--endpoint", "ep", "--json"])
    run = json.loads(capsys.readouterr().out)
    assert run["status"] == "Completed" and run["records"] == 60 and run["skipped"] == 1
    assert store.exists(settings.bucket, run["prefix"] + "report.html")
    main([*home, "monitor", "report", "--endpoint", "ep", "--out", str(tmp_path / "rep")])
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Model monitoring: ep" in html and "Completed" in html
    names = {p.name for p in (tmp_path / "rep").glob("*.png")}
    assert {"class_mix.png", "confidence_histogram.png", "confidence_over_time.png",
            "feature_drift.png", "workflow_outcomes.png", "drift-brightness.png",
            "drift-predicted_class.png"} <= names  # and one panel per tested feature
    # The tiny model exports no embedding: monitored all the same, and the report says why.
    assert "embedding_drift.png" not in names and "not tested" in html
    main([*home, "monitor", "schedule", "--endpoint", "ep", "--every", "1s", "--max-runs", "2",
          "--no-report"])
    assert capsys.readouterr().out.count("Completed run") == 2
    assert len(list_runs(connect(settings.db_path), SCHEDULE)) == 4


@pytest.mark.slow
def test_cli_monitors_the_model_the_endpoint_was_deployed_with(
    settings: Settings, staged_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Without --model, the endpoint's record in the workspace names the model; an endpoint
    with no record is an error that says to pass --model."""
    store = open_store(settings)
    copy_prefix(open_store(staged_home), store, settings.bucket, "data/")
    artifact = write_tiny_artifact(tmp_path / "model.tar.gz")
    home = ["--home", str(settings.home)]
    with pytest.raises(SystemExit) as exit_info:
        main([*home, "monitor", "baseline", "--endpoint", "ep", "--json"])
    assert exit_info.value.code == 1
    assert "MonitoringError: endpoint 'ep' is not in the workspace db" in capsys.readouterr().err
    deploy(settings, str(artifact), CaptureConfig(enabled=False), name="ep", port=free_port(),
           workers=1)  # fmt: skip
    try:
        main([*home, "monitor", "baseline", "--endpoint", "ep", "--json"])
        assert json.loads(capsys.readouterr().out)["records"] == 200  # the model's answers
    finally:
        delete_endpoint(settings, "ep")
