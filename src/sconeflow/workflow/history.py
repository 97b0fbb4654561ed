"""Execution history: listeners that receive each event as the engine emits it.

An event is a dict shaped like one entry of GetExecutionHistory's `events`:
`{"timestamp": datetime, "type": "TaskStateEntered", "id": 2, "previousEventId": 1,
"stateEnteredEventDetails": {...}}`. A listener is any callable taking that dict; an
exception it raises stops the execution and propagates to the caller, because history
that silently lost events would mislead whoever reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from sconeflow.db import SCHEMA

Event = dict[str, Any]

class InMemoryHistory:
    """Keeps every event in `events`, in emission order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def details_of(event: Event) -> tuple[str | None, Any]:
    """(key, value) of the event's `*EventDetails` entry, or (None, None) when it has none."""
    for key, value in event.items():
        if key.endswith("EventDetails"):
            return key, value
    return None, None


class SqliteHistory:
    """Persists each event as one row of `history_events` in the given connection.

    Rows are written as they come and committed every `commit_every` events and when the
    execution ends, so a crash loses at most that many events.
    """

    def __init__(
        self, conn: sqlite3.Connection, execution_arn: str, *, commit_every: int = 1
    ) -> None:
        self.conn = conn
        self.execution_arn = execution_arn
        self.commit_every = commit_every
        self._pending = 0
        conn.executescript(SCHEMA)  # the workspace schema (sconeflow.db), idempotent

    def __call__(self, event: Event) -> None:
        insert_event(self.conn, self.execution_arn, event)
        self._pending += 1
        if self._pending >= self.commit_every or (
            event["type"].startswith("Execution") and event["id"] > 1
        ):
            self.conn.commit()
            self._pending = 0


def insert_event(conn: sqlite3.Connection, execution_arn: str, event: Event) -> None:
    """Write one event as a row of the workspace's `history_events` table (see sconeflow.db)."""
    key, details = details_of(event)
    stamp = event["timestamp"]
    conn.execute(
        "INSERT INTO history_events (execution_arn, id, previous_id, timestamp, type, details) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            execution_arn,
            event["id"],
            event["previousEventId"],
            stamp.isoformat() if isinstance(stamp, dt.datetime) else str(stamp),
            event["type"],
            "{}" if key is None else json.dumps({key: details}, separators=(",", ":")),
        ),
    )


def load_history(conn: sqlite3.Connection, execution_arn: str) -> list[Event]:
    """The events SqliteHistory stored for one execution, as event dicts (timestamps as text)."""
    rows = conn.execute(
        "SELECT id, previous_id, timestamp, type, details FROM history_events "
        "WHERE execution_arn = ? ORDER BY id",
        (execution_arn,),
    ).fetchall()
    events: list[Event] = []
    for event_id, previous, stamp, kind, details in rows:
        event: Event = {
            "timestamp": stamp,
            "type": kind,
            "id": event_id,
            "previousEventId": previous,
        }
        if details:
            event.update(json.loads(details))
        events.append(event)
    return events
