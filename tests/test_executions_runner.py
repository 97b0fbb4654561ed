"""Executions as resources: persistence as it happens, redrive, failure notification,
generated streams, the fan-out definition and the `sconeflow workflow` CLI, on real SQLite
files and real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import EndpointError, WorkflowError
from sconeflow.executions import records as execution_records
from sconeflow.executions import runner, summary, traffic
from sconeflow.executions.definitions import Definition, load_definition
from sconeflow.executions.notify import Notifier
from sconeflow.executions.runner import WorkflowRunner
from sconeflow.functions import EndpointInvocationError, ThresholdConfidenceNotMet
from sconeflow.store import LocalStore
from test_functions import PNG, FakeEndpoint

ARN_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:stepfunction:"


class Functions:
    """Stand-in handlers (the runner's seam): count calls, answer `probabilities`."""

    def __init__(self, probabilities: list[float], threshold: float = 0.93) -> None:
        self.probabilities, self.threshold = probabilities, threshold
        self.calls: dict[str, int] = {}
        self.classify_error: Exception | BaseException | None = None
        self.on_classify: Any = None

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def serialize(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._count("serializeImageData")
        return {**event, "image_data": base64.b64encode(PNG).decode(), "inferences": []}

    def classify(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._count("classifyImage")
        if self.on_classify is not None:
            self.on_classify()
        if self.classify_error is not None:
            raise self.classify_error
        return {**event, "inferences": self.probabilities}

    def filter(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._count("filterLowConfidence")
        if max(event["inferences"]) < self.threshold:
            raise ThresholdConfidenceNotMet(max(event["inferences"]), self.threshold)
        return event

    def table(self) -> dict[str, Any]:
        return {"serializeImageData": self.serialize, "classifyImage": self.classify,
                "filterLowConfidence": self.filter}  # fmt: skip


EVENT = {"image_data": "", "s3_bucket": "sconeflow", "s3_key": "data/test/bicycle_s_000513.png"}


def _rows(settings: Settings, arn: str) -> list[sqlite3.Row]:
    conn = db.connect(settings.db_path)
    try:
        return conn.execute(
            "SELECT * FROM history_events WHERE execution_arn = ? ORDER BY id", (arn,)
        ).fetchall()
    finally:
        conn.close()


def _assert_chain(events: list[dict[str, Any]]) -> None:
    """ids 1..n; each previousEventId names an earlier event (0 for the first)."""
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["previousEventId"] == 0
    assert all(0 < e["previousEventId"] < e["id"] for e in events[1:])


def test_history_rows_are_written_as_the_events_happen(settings: Settings) -> None:
    fns = Functions([0.02, 0.98])
    seen: list[tuple[str, int]] = []

    def peek() -> None:  # while classify runs, the record must already be in the db
        conn = db.connect(settings.db_path)
        (status,) = conn.execute("SELECT status FROM executions").fetchone()
        (count,) = conn.execute("SELECT COUNT(*) FROM history_events").fetchone()
        conn.close()
        seen.append((status, count))

    fns.on_classify = peek
    wf = WorkflowRunner(settings, load_definition(), fns.table())
    record = wf.start(EVENT, "run-1")
    assert seen == [("RUNNING", 9)]  # started, serialize (5 events), classify entered + 2
    assert record.arn == ARN_PREFIX + "run-1" and record.status == "SUCCEEDED"
    assert json.loads(record.output or "{}")["inferences"] == [0.02, 0.98]
    rows = _rows(settings, record.arn)
    stored = execution_records.get_history(settings, record.arn)
    assert [(r["id"], r["previous_id"], r["type"]) for r in rows] == [
        (e["id"], e["previousEventId"], e["type"]) for e in record.events
    ]
    assert stored == record.events  # what was read back is what was emitted
    _assert_chain(stored)
    assert stored[0]["type"] == "ExecutionStarted" and stored[-1]["type"] == "ExecutionSucceeded"
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in stored if "stateEnteredEventDetails" in e
    ]
    assert entered == ["serializeImageData", "classify", "filterLowConfidence"]
    info = execution_records.find_execution(settings, "run-1").describe()
    assert info["executionArn"] == record.arn and info["redriveStatus"] == "NOT_REDRIVABLE"
    assert info["stateMachineArn"].endswith(":stateMachine:stepfunction")


def test_low_confidence_fails_with_the_error_name_and_cause(settings: Settings) -> None:
    fns = Functions([0.4, 0.6])
    record = WorkflowRunner(settings, load_definition(), fns.table()).start(EVENT, "low")
    assert record.status == "FAILED" and record.error == "ThresholdConfidenceNotMet"
    cause = json.loads(record.cause or "{}")
    assert cause["errorType"] == "ThresholdConfidenceNotMet"
    assert "0.6000 is below the threshold 0.9300" in cause["errorMessage"]
    (row,) = summary.summarize(record, ["bicycle", "motorcycle"])
    assert (row.status, row.predicted, row.confidence) == ("FAILED", "motorcycle", 0.6)
    described = execution_records.find_execution(settings, record.arn).describe()
    assert described["redriveStatus"] == "REDRIVABLE"


def test_threshold_is_recorded_for_monitoring(settings: Settings) -> None:
    """The threshold an execution ran with is on its row, where the monitor report reads it."""
    from sconeflow.monitoring.outcomes import read_workflow_outcomes, workflow_threshold

    fns = Functions([0.1, 0.9], threshold=0.85)
    wf = WorkflowRunner(settings, load_definition(), fns.table(), threshold=0.85)
    assert wf.start(EVENT, "th").threshold == 0.85
    with closing(db.connect(settings.db_path)) as conn:
        outcomes = read_workflow_outcomes(conn)
    assert [(o.name, o.threshold) for o in outcomes] == [("th", 0.85)]
    assert workflow_threshold(outcomes) == 0.85
    assert workflow_threshold([]) == 0.93  # filterLowConfidence's default, from one place


def test_redrive_restarts_at_the_failed_state_and_continues_the_history(
    settings: Settings,
) -> None:
    fns = Functions([0.99, 0.01])
    fns.classify_error = EndpointInvocationError("endpoint 'scones' is down")
    first = WorkflowRunner(settings, load_definition(), fns.table()).start(EVENT, "rd")
    assert first.status == "FAILED" and first.error == "EndpointInvocationError"
    before = execution_records.get_history(settings, first.arn)
    fns.classify_error = None
    again = runner.redrive_execution(settings, first.arn, fns.table())
    assert again.arn == first.arn and again.status == "SUCCEEDED" and again.redrive_count == 1
    assert again.error is None and again.redrive_date is not None
    # Serialize ran once: the redrive started at classify, with the input classify had.
    assert fns.calls == {"serializeImageData": 1, "classifyImage": 2, "filterLowConfidence": 1}
    after = execution_records.get_history(settings, first.arn)
    assert after[: len(before)] == before
    redriven = after[len(before)]
    assert redriven["type"] == "ExecutionRedriven"
    assert redriven["executionRedrivenEventDetails"] == {"redriveCount": 1}
    assert redriven["previousEventId"] == before[-1]["id"]
    _assert_chain(after)
    assert after[len(before) + 1]["stateEnteredEventDetails"]["name"] == "classify"
    assert len(execution_records.list_executions(settings)) == 1  # same execution, not a new one
    with pytest.raises(WorkflowError, match="ExecutionNotRedrivable"):
        runner.redrive_execution(settings, first.arn, fns.table())


def test_a_redrive_shows_in_the_context_object(settings: Settings) -> None:
    # $$.Execution.RedriveCount is 0 on the first run and n after n redrives (AWS).
    spec = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {
                    "FunctionName": "classifyImage",
                    "Payload": {"count.$": "$$.Execution.RedriveCount"},
                },
                "OutputPath": "$.Payload",
                "End": True,
            }
        },
    }
    seen: list[int] = []

    def classify(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event["count"])
        if len(seen) < 3:
            raise RuntimeError("endpoint down")
        return event

    table = {"classifyImage": classify}
    definition = Definition("redrives", json.dumps(spec), "test")
    first = WorkflowRunner(settings, definition, table).start({}, "rc")
    assert first.status == "FAILED"
    assert runner.redrive_execution(settings, first.arn, table).status == "FAILED"
    last = runner.redrive_execution(settings, first.arn, table)
    assert last.status == "SUCCEEDED" and last.redrive_count == 2
    assert seen == [0, 1, 2] and json.loads(last.output or "{}") == {"count": 2}


def test_an_interrupted_execution_is_recorded_as_aborted(settings: Settings) -> None:
    fns = Functions([0.99, 0.01])
    fns.classify_error = KeyboardInterrupt()
    wf = WorkflowRunner(settings, load_definition(), fns.table())
    with pytest.raises(KeyboardInterrupt):
        wf.start(EVENT, "stopped")
    record = execution_records.find_execution(settings, "stopped")
    assert record.status == "ABORTED" and record.stopped_at is not None
    events = execution_records.get_history(settings, "stopped")
    assert events[-1]["type"] == "ExecutionAborted"
    _assert_chain(events)


def test_duplicate_names_and_unknown_placeholders_are_refused(
    settings: Settings, tmp_path: Path
) -> None:
    wf = WorkflowRunner(settings, load_definition(), Functions([1.0, 0.0]).table())
    wf.start(EVENT, "same")
    with pytest.raises(WorkflowError, match="ExecutionAlreadyExists"):
        wf.start(EVENT, "same")
    with pytest.raises(WorkflowError, match="execution name"):
        wf.start(EVENT, "not a valid name!")
    bad = tmp_path / "bad.json"
    bad.write_text('{"StartAt": "a", "States": {"a": {"Type": "Pass", "Result": "${Nope}", '
                   '"End": true}}}')  # fmt: skip
    with pytest.raises(WorkflowError, match=r"\$\{Nope\}"):
        load_definition(bad)
    with pytest.raises(WorkflowError, match="ExecutionDoesNotExist"):
        execution_records.find_execution(settings, "missing")


class Webhook:
    """A real HTTP receiver on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def test_failed_executions_post_an_eventbridge_event(settings: Settings, webhook: Webhook) -> None:
    fns = Functions([0.5, 0.5])
    wf = WorkflowRunner(settings, load_definition(), fns.table(),
                        notifier=Notifier(url=webhook.url))  # fmt: skip
    failed = wf.start(EVENT, "will-fail")
    fns.probabilities = [0.99, 0.01]
    wf.start(EVENT, "will-pass")
    assert failed.notification_error is None
    (body,) = webhook.bodies  # only the failure was announced
    assert body["detail-type"] == "Step Functions Execution Status Change"
    assert body["source"] == "aws.states" and body["resources"] == [failed.arn]
    detail = body["detail"]
    assert detail["status"] == "FAILED" and detail["error"] == "ThresholdConfidenceNotMet"
    assert detail["executionArn"] == failed.arn and detail["stopDate"] >= detail["startDate"]


def test_notification_problems_never_fail_the_run(settings: Settings, tmp_path: Path) -> None:
    from tests.conftest import free_port

    out = tmp_path / "event.json"
    command = [sys.executable, "-c",
               f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"]  # fmt: skip
    notifier = Notifier(url=f"http://127.0.0.1:{free_port()}/nobody", command=command)
    wf = WorkflowRunner(settings, load_definition(), Functions([0.5, 0.5]).table(),
                        notifier=notifier)  # fmt: skip
    record = wf.start(EVENT, "unheard")
    assert record.status == "FAILED"
    assert record.notification_error and "POST http://127.0.0.1" in record.notification_error
    assert json.loads(out.read_text())["detail"]["name"] == "unheard"  # the command still ran
    with pytest.raises(WorkflowError, match="not an http"):
        Notifier(url="ftp://example")


def test_generated_cases_stream_at_the_requested_rate(
    settings: Settings, local_store: LocalStore
) -> None:
    for i in range(5):
        local_store.put(settings.bucket, f"data/test/bicycle_s_{i:06d}.png", PNG)
    local_store.put(settings.bucket, "data/test.lst", b"")
    cases = traffic.generate_test_cases(local_store, settings.bucket, 4, seed=1)
    assert len({c["s3_key"] for c in cases}) == 4
    assert all(c["s3_key"].startswith("data/test/") and c["image_data"] == "" for c in cases)
    assert traffic.arrival_offsets(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert traffic.arrival_offsets(5, 2.0, "bursty", burst=2) == [0.0, 0.0, 1.0, 1.0, 2.0]
    with pytest.raises(WorkflowError, match="rate"):
        traffic.arrival_offsets(3, 0.0)
    waits: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:  # a fake clock: sleeping moves time on at once
        waits.append(seconds)
        now[0] += seconds

    wf = WorkflowRunner(settings, load_definition(), Functions([0.99, 0.01]).table())
    done: list[str] = []
    records = wf.stream(cases, offsets=[0.0, 5.0, 10.0, 10.0], concurrency=2,
                        sleep=sleep, monotonic=lambda: now[0],
                        on_done=lambda r: done.append(r.name))  # fmt: skip
    assert [r.status for r in records] == ["SUCCEEDED"] * 4
    assert sorted(done) == sorted(r.name for r in records)
    assert waits == [5.0, 5.0]  # waited for the 2nd and the 3rd; the 4th came with the 3rd
    assert records[0].name.startswith(Path(cases[0]["s3_key"]).stem)
    with pytest.raises(WorkflowError, match="no .png images"):
        traffic.generate_test_cases(local_store, settings.bucket, 1, prefix="data/none/")


def test_fanout_tolerates_low_confidence_items_and_reports_each(settings: Settings) -> None:
    fns = Functions([0.99, 0.01])
    original = fns.classify

    def classify(event: dict[str, Any], context: Any) -> dict[str, Any]:
        out = original(event, context)  # every other image is unsure
        return {**out, "inferences": [0.6, 0.4]} if event["s3_key"].endswith("1.png") else out

    handlers = {**fns.table(), "classifyImage": classify}
    images = [{**EVENT, "s3_key": f"data/test/img{i}.png"} for i in range(4)]
    wf = WorkflowRunner(settings, load_definition("fanout"), handlers, max_workers=2)
    record = wf.start({"images": images}, "batch")
    assert record.status == "SUCCEEDED"
    rows = summary.summarize(record, ["bicycle", "motorcycle"])
    assert [r.status for r in rows] == ["SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert rows[1].error == "ThresholdConfidenceNotMet" and rows[0].predicted == "bicycle"
    _assert_chain(execution_records.get_history(settings, "batch"))


def test_resolve_endpoint_picks_the_newest_in_service(settings: Settings) -> None:
    with pytest.raises(EndpointError, match="no endpoint is InService"):
        runner.resolve_endpoint(settings)
    _add_endpoint(settings, "old-ep", "http://127.0.0.1:1", "2024-01-01T00:00:00")
    _add_endpoint(settings, "new-ep", "http://127.0.0.1:2", "2024-02-01T00:00:00")
    _add_endpoint(settings, "dead-ep", "http://127.0.0.1:3", "2024-03-01T00:00:00", "Failed")
    assert runner.resolve_endpoint(settings) == ("new-ep", "http://127.0.0.1:2")
    assert runner.resolve_endpoint(settings, "old-ep") == ("old-ep", "http://127.0.0.1:1")
    with pytest.raises(EndpointError, match="'nope' not found"):
        runner.resolve_endpoint(settings, "nope")


def _add_endpoint(settings: Settings, name: str, url: str, created: str,
                  status: str = "InService") -> None:  # fmt: skip
    conn = db.connect(settings.db_path)
    conn.execute(
        "INSERT INTO endpoints (name, status, model, url, port, capture_config, created_at, "
        "updated_at) VALUES (?, ?, 'm', ?, 0, '{}', ?, ?)",
        (name, status, url, created, created),
    )
    conn.close()


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    """Run `sconeflow --home H workflow ...` in a child process: (exit code, output)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "sconeflow", "--home", str(settings.home), "workflow", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **_PYTHONPATH},
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


# A worktree runs its own copy of sconeflow (PYTHONPATH), in child processes too.
_PYTHONPATH = {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}


def test_cli_run_list_describe_history_redrive(
    settings: Settings, local_store: LocalStore, webhook: Webhook
) -> None:
    for i in range(3):
        local_store.put(settings.bucket, f"data/test/bicycle_s_{i:06d}.png", PNG)
    endpoint = FakeEndpoint(b"[0.6, 0.4]")
    try:
        _add_endpoint(settings, "scones", endpoint.url, "2024-01-01T00:00:00")
        code, out = _cli(settings, "run", "--count", "3", "--rate", "50", "--concurrency", "2",
                         "--notify-url", webhook.url)  # fmt: skip
        assert code == 0, out
        assert "ThresholdConfidenceNotMet" in out and "3 FAILED" in out and "0.6000" in out
        assert len(webhook.bodies) == 3
        assert len(endpoint.requests) == 3
        assert all(r["path"] == "/endpoints/scones/invocations" for r in endpoint.requests)
        code, out = _cli(settings, "list", "--json")
        executions = json.loads(out)["executions"]
        assert code == 0 and len(executions) == 3
        name = executions[0]["name"]
        code, out = _cli(settings, "describe", name, "--json")
        assert code == 0 and json.loads(out)["error"] == "ThresholdConfidenceNotMet"
        code, out = _cli(settings, "history", name, "--json")
        events = json.loads(out)["events"]
        _assert_chain(events)
        assert events[-1]["type"] == "ExecutionFailed"
        # The redrive starts at filterLowConfidence with the input it had (0.6), so only
        # the lower threshold makes it pass; the endpoint is not called again.
        code, out = _cli(settings, "redrive", executions[0]["executionArn"], "--threshold",
                         "0.5")  # fmt: skip
        assert code == 0 and "1 SUCCEEDED" in out and len(endpoint.requests) == 3
        assert re.search(r"SUCCEEDED\s*│\s*│ 0\s*│ 0\.6000", out)  # no manifest: label "0"
        code, out = _cli(settings, "run", "--input", json.dumps(EVENT), "--name", "x y")
        assert code == 1 and "WorkflowError: InvalidName: execution name 'x y'" in out
        code, out = _cli(settings, "describe", "nope")
        assert code == 1 and "ExecutionDoesNotExist" in out
    finally:
        endpoint.close()


def test_cli_run_says_how_to_fix_a_missing_endpoint(settings: Settings) -> None:
    code, out = _cli(settings, "run", "--input", json.dumps(EVENT))
    assert code == 1 and "EndpointError: no endpoint is InService" in out
    code, out = _cli(settings, "run")
    assert code == 2 and "exactly one of --input" in out


@pytest.mark.slow
def test_acceptance_reference_workflow_over_every_test_image(
    staged_home: Settings, tmp_path: Path
) -> None:
    """The reference definition over every image in data/test against an endpoint deployed
    with sconeflow.serving: SUCCEEDED exactly when the endpoint's top probability reaches
    the threshold, FAILED with ThresholdConfidenceNotMet and its cause otherwise.

    The model is $SCONEFLOW_ACCEPTANCE_MODEL (a trained model.tar.gz; threshold 0.93, the
    reference's) or else a small untrained CNN, with the threshold set between two of its
    answers near the median so that both outcomes occur.
    """
    import os
    import statistics

    pytest.importorskip("sconeflow.serving.endpoints", reason="sconeflow.serving is absent")
    pytest.importorskip("onnxruntime", reason="serving needs onnxruntime")
    from sconeflow.config import load_settings
    from sconeflow.functions import FunctionConfig, Services
    from sconeflow.serving.capture import capture_config
    from sconeflow.serving.endpoints import delete_endpoint, deploy
    from sconeflow.store import open_store
    from test_serving_support import write_artifact

    trained = os.environ.get("SCONEFLOW_ACCEPTANCE_MODEL")
    model = trained or str(write_artifact(tmp_path / "model" / "model.tar.gz"))
    # Our own workspace (db, endpoint files) over the session's staged store, read-only.
    settings = load_settings(env={}, home=tmp_path / "home", store_uri=staged_home.store_uri)
    bucket, store = settings.bucket, open_store(settings)
    keys = [k for k in store.list(bucket, "data/test/") if k.endswith(".png")]
    assert len(keys) >= 20
    endpoint = deploy(settings, model, capture_config(0, "InputAndOutput", bucket),
                      name="scones-acceptance")  # fmt: skip
    try:
        direct = Services(FunctionConfig(settings=settings, endpoint_name=endpoint.name,
                                         endpoint_url=endpoint.url))  # fmt: skip
        top = {k: max(direct.invoke_endpoint(store.get(bucket, k))) for k in keys}
        if trained:
            threshold = 0.93
        else:
            ranked = sorted(top.values())
            mid = len(ranked) // 2
            gaps = [i for i in range(len(ranked) - 1) if ranked[i + 1] - ranked[i] > 1e-4]
            i = min(gaps, key=lambda j: abs(j - mid))  # a clear gap near the median
            threshold = (ranked[i] + ranked[i + 1]) / 2
        handlers = runner.local_handlers(settings, None, threshold)  # newest InService
        wf = WorkflowRunner(settings, load_definition(), handlers)
        cases = [{"image_data": "", "s3_bucket": bucket, "s3_key": k, "inferences": []}
                 for k in keys]  # fmt: skip
        records = wf.stream(cases, concurrency=4)
        outcomes = {"SUCCEEDED": 0, "FAILED": 0}
        for key, record in zip(keys, records, strict=True):
            outcomes[record.status] += 1
            if top[key] >= threshold:
                assert record.status == "SUCCEEDED", (key, top[key], record.cause)
                output = json.loads(record.output or "{}")
                assert output["s3_key"] == key
                assert max(output["inferences"]) == pytest.approx(top[key], abs=1e-5)
            else:
                assert record.status == "FAILED", (key, top[key])
                assert record.error == "ThresholdConfidenceNotMet"
                message = json.loads(record.cause or "{}")["errorMessage"]
                assert f"{top[key]:.4f} is below the threshold {threshold:.4f}" in message
        assert trained or (outcomes["SUCCEEDED"] and outcomes["FAILED"])
        statuses = [r.status for r in execution_records.list_executions(settings)]
        assert len(statuses) == len(keys) and "RUNNING" not in statuses
        print(
            f"acceptance: {len(keys)} images, threshold {threshold:.4f}, {outcomes},",
            f"median top probability {statistics.median(top.values()):.4f}",
        )
    finally:
        delete_endpoint(settings, endpoint.name)
