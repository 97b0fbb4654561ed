"""The execution records module: the one writer (HistoryWriter) and the one reader of
execution rows and their history, against a real workspace SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import WorkflowError
from sconeflow.executions import records
from sconeflow.workflow import FakeClock, parse_definition, run_execution

MACHINE = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Result": {"n": 1}, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Pass", "End": True},
    },
}
ARN = "arn:aws:states:us-east-1:123456789012:execution:sconeflow:one"


def _create(conn: sqlite3.Connection, arn: str = ARN, threshold: float | None = 0.9) -> None:
    records.create_execution(
        conn, arn=arn, name=arn.rsplit(":", 1)[1], state_machine="sconeflow",
        execution_input={"k": 1}, definition=json.dumps(MACHINE),
        started_at=dt.datetime.now(dt.UTC), threshold=threshold,
    )  # fmt: skip


@pytest.mark.parametrize("commit_every", [1, 1000])
def test_history_written_and_read_back(settings: Settings, commit_every: int) -> None:
    with closing(db.connect(settings.db_path)) as conn:
        _create(conn)
        writer = records.HistoryWriter(conn, ARN, commit_every=commit_every)
        result = run_execution(parse_definition(MACHINE), {"k": 1}, name="one", listener=writer)
        records.finish_execution(conn, ARN, status=result.status, output=result.output,
                                 error=None, cause=None, stopped_at=result.stop_date)  # fmt: skip
    # A second connection sees everything: the grouped writer committed at the end.
    stored = records.get_history(settings, "one")
    assert [e["type"] for e in stored] == [
        "ExecutionStarted", "PassStateEntered", "PassStateExited", "PassStateEntered",
        "PassStateExited", "ExecutionSucceeded",
    ]  # fmt: skip
    assert [e["id"] for e in stored] == list(range(1, 7))
    assert stored == writer.events
    assert json.loads(stored[-1]["executionSucceededEventDetails"]["output"]) == {
        "k": 1, "a": {"n": 1}
    }  # fmt: skip
    record = records.find_execution(settings, ARN)
    assert record.status == "SUCCEEDED" and record.threshold == 0.9
    assert records.definition_of(settings, "one") == MACHINE


def test_grouped_writer_abort_keeps_pending_events(settings: Settings) -> None:
    """An interrupted execution keeps the events its grouped writer had not committed."""
    with closing(db.connect(settings.db_path)) as conn:
        _create(conn)
        writer = records.HistoryWriter(conn, ARN, commit_every=1000)
        now = dt.datetime.now(dt.UTC)
        writer({"timestamp": now, "type": "ExecutionStarted", "id": 1, "previousEventId": 0})
        writer({"timestamp": now, "type": "PassStateEntered", "id": 2, "previousEventId": 1,
                "stateEnteredEventDetails": {"name": "A", "input": "{}"}})  # fmt: skip
        records.abort_execution(conn, ARN, "KeyboardInterrupt: ", writer=writer)
    history = records.get_history(settings, ARN)
    assert [e["type"] for e in history] == [
        "ExecutionStarted", "PassStateEntered", "ExecutionAborted"
    ]  # fmt: skip
    assert history[-1]["previousEventId"] == 2
    assert records.find_execution(settings, ARN).status == "ABORTED"


def test_redrive_writer_continues_ids(settings: Settings) -> None:
    with closing(db.connect(settings.db_path)) as conn:
        _create(conn)
        writer = records.HistoryWriter(conn, ARN, offset=5, redrive_count=1)
        writer({"timestamp": "t", "type": "ExecutionStarted", "id": 1, "previousEventId": 0,
                "executionStartedEventDetails": {"input": "{}"}})  # fmt: skip
        writer.flush()  # the writer holds events until the engine's next slow step or the end
    (event,) = records.get_history(settings, ARN)
    assert event == {"timestamp": "t", "type": "ExecutionRedriven", "id": 6,
                     "previousEventId": 5,
                     "executionRedrivenEventDetails": {"redriveCount": 1}}  # fmt: skip


def test_duplicate_execution_is_refused(settings: Settings) -> None:
    with closing(db.connect(settings.db_path)) as conn:
        _create(conn)
        with pytest.raises(WorkflowError, match="ExecutionAlreadyExists"):
            _create(conn)


def test_old_workspace_gains_the_new_columns(tmp_path: Path) -> None:
    """A db made before `threshold` and the owner columns existed is upgraded on open."""
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as old:
        old.execute(
            "CREATE TABLE executions (arn TEXT PRIMARY KEY, name TEXT NOT NULL, state_machine "
            "TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL, output TEXT, error TEXT,"
            " cause TEXT, definition TEXT NOT NULL, started_at TEXT NOT NULL, stopped_at TEXT,"
            " redrive_of TEXT)"
        )
        old.commit()
    db._initialised.discard(path.resolve())
    with closing(db.connect(path)) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(executions)")}
    assert {"threshold", "owner_pid", "owner_start"} <= columns


def test_unknown_execution(settings: Settings) -> None:
    with pytest.raises(WorkflowError, match="ExecutionDoesNotExist"):
        records.find_execution(settings, "nope")


def test_writer_commits_before_every_handler_call_wait_and_retry(settings: Settings) -> None:
    """What a crash may lose: only pure computation. When a handler starts, when a Wait
    sleeps and when a retry backs off, every event before it is already committed."""
    spec = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "T1"},
            "T1": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
                   "Retry": [{"ErrorEquals": ["ValueError"], "IntervalSeconds": 1}],
                   "Next": "W"},
            "W": {"Type": "Wait", "Seconds": 5, "Next": "T2"},
            "T2": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                   "Parameters": {"FunctionName": "f", "Payload.$": "$"}, "End": True},
        },
    }  # fmt: skip
    seen: list[int] = []

    def stored() -> int:
        with closing(db.connect(settings.db_path)) as other:
            return int(other.execute("SELECT COUNT(*) FROM history_events").fetchone()[0])

    def handler(event: Any, context: Any) -> Any:
        seen.append(stored())
        if len(seen) == 1:
            raise ValueError("once")
        return event

    class Clock(FakeClock):
        def sleep(self, seconds: float) -> None:
            seen.append(-stored())  # negative: counted while sleeping
            super().sleep(seconds)

    with closing(db.connect(settings.db_path)) as conn:
        _create(conn)
        writer = records.HistoryWriter(conn, ARN)
        result = run_execution(parse_definition(spec), {}, {"f": handler}, name="one",
                               listener=writer, clock=Clock())  # fmt: skip
    assert result.status == "SUCCEEDED"
    types = [e["type"] for e in writer.events]
    starts = [
        i + 1 for i, t in enumerate(types) if t.endswith("Started") and t != "ExecutionStarted"
    ]
    failed = types.index("LambdaFunctionFailed") + 1
    wait = types.index("WaitStateEntered") + 1
    # handler 1, back-off, handler 1 again, the Wait, handler 2
    assert seen == [starts[0], -failed, starts[1], -wait, starts[2]]
    assert stored() == len(types)  # and the rest at the end


def test_finishing_writer_ends_the_row_with_the_last_event_atomically(settings: Settings) -> None:
    """With finish=True the last event and the row's end are one transaction: a fault while
    ending stores neither (no ExecutionSucceeded on a RUNNING row), and once it succeeds the
    row says what the event says."""
    with closing(db.connect(settings.db_path)) as conn:
        _create(conn)
        writer = records.HistoryWriter(conn, ARN, finish=True)
        result = run_execution(parse_definition(MACHINE), {"k": 1}, name="one")  # its events
        *body, last = result.events
        for event in body:
            writer(event)
        writer.flush()
        conn.execute("CREATE TEMP TRIGGER no_end BEFORE UPDATE ON executions "
                     "BEGIN SELECT RAISE(ABORT, 'injected fault'); END")  # fmt: skip
        with pytest.raises(sqlite3.DatabaseError, match="injected fault"):
            writer(last)
        with closing(db.connect(settings.db_path)) as other:
            stored = records.read_history(other, ARN)
            assert [e["type"] for e in stored][-1] == "PassStateExited"
            assert records.read_record(other, ARN).status == "RUNNING"
        conn.execute("DROP TRIGGER no_end")
        writer(last)
    record = records.find_execution(settings, ARN)
    (ending,) = [e for e in records.get_history(settings, ARN) if e["type"] == "ExecutionSucceeded"]
    assert record.status == "SUCCEEDED"
    assert record.output == ending["executionSucceededEventDetails"]["output"]
    assert json.loads(record.output or "") == {"k": 1, "a": {"n": 1}}
    assert record.stopped_at == ending["timestamp"]
