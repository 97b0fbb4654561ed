"""The execution records module: the one writer (HistoryWriter) and the one reader of
execution rows and their history, against a real workspace SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import WorkflowError
from sconeflow.executions import records
from sconeflow.workflow import parse_definition, run_execution

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
        records.abort_execution(conn, ARN, "KeyboardInterrupt: ", writer.last_id)
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


