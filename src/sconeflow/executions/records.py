"""Execution records and their history in the workspace db: the one reader and the one writer.

An execution is a row of `executions` and its history the rows of `history_events`
(schema in sconeflow.db). Everything that reads or writes those rows goes through this
module, so the row shapes live in one place. Shapes follow Step Functions: ARNs
`arn:aws:states:us-east-1:123456789012:execution:<machine>:<name>`, DescribeExecution's
fields, GetExecutionHistory's events.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sconeflow import db, processes
from sconeflow.config import Settings
from sconeflow.errors import WorkflowError

if TYPE_CHECKING:  # the engine is loaded only by those that run executions
    from sconeflow.workflow.history import ChildExecution

log = logging.getLogger(__name__)

FAILED_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")  # the ones RedriveExecution accepts


@dataclass
class ExecutionRecord:
    """One execution as DescribeExecution reports it; `events` when this process ran it."""

    arn: str
    name: str
    state_machine: str
    status: str
    input: str
    started_at: str
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    stopped_at: str | None = None
    redrive_count: int = 0
    redrive_date: str | None = None
    threshold: float | None = None  # filterLowConfidence's THRESHOLD for this run
    map_run_arn: str | None = None  # set on a Distributed Map's child execution
    owner_pid: int | None = None  # the process running it, while RUNNING (owner_alive)
    owner_start: str | None = None
    notification_error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    # A Distributed Map's child executions, when this process ran the parent.
    children: list[ExecutionRecord] = field(default_factory=list, repr=False)

    @property
    def state_machine_arn(self) -> str:
        region, account = self.arn.split(":")[3:5]
        return f"arn:aws:states:{region}:{account}:stateMachine:{self.state_machine}"

    def describe(self) -> dict[str, Any]:
        """DescribeExecution's response fields."""
        out: dict[str, Any] = {
            "executionArn": self.arn,
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": self.status,
            "startDate": self.started_at,
            "input": self.input,
            "inputDetails": {"included": True},
        }
        if self.stopped_at:
            out["stopDate"] = self.stopped_at
        if self.output is not None:
            out["output"] = self.output
            out["outputDetails"] = {"included": True}
        if self.error is not None:
            out["error"] = self.error
        if self.cause is not None:
            out["cause"] = self.cause
        out["redriveCount"] = self.redrive_count
        if self.redrive_date:
            out["redriveDate"] = self.redrive_date
        out["redriveStatus"] = "REDRIVABLE" if self.status in FAILED_STATUSES else "NOT_REDRIVABLE"
        if self.map_run_arn:
            out["mapRunArn"] = self.map_run_arn
        return out


# --- the writer ----------------------------------------------------------------------------


# Events after which the engine does something slow: runs a handler (the *Started events),
# backs off before a retry (the failures) or sleeps (a Wait). The writer commits what it
# holds at each, so nothing slow ever starts before the events leading to it are stored.
_COMMIT_AFTER = frozenset(
    {
        "TaskStarted",
        "TaskFailed",
        "TaskTimedOut",
        "LambdaFunctionStarted",
        "LambdaFunctionFailed",
        "LambdaFunctionTimedOut",
        "WaitStateEntered",
    }
)
_INSERT = (
    "INSERT INTO history_events (execution_arn, id, previous_id, timestamp, type, details) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_FINISH = (
    "UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, stopped_at = ? "
    "WHERE arn = ?"
)
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_string = json.encoder.encode_basestring  # a str as a JSON string (C), raw UTF-8
_NOT_TRUNCATED = {"truncated": False}


def _details_text(key: str, details: Any) -> str:
    """`{"<key>": details}` as compact JSON. Most detail fields are strings (names and the
    JSON texts of inputs and outputs) or `{"truncated": false}`: those are written
    directly, which costs half of a generic encode; anything else goes to the encoder."""
    if type(details) is not dict:
        return f'{{"{key}":{_encode(details)}}}'
    parts = []
    for name, value in details.items():
        if type(value) is str:
            text = _string(value)
        elif value == _NOT_TRUNCATED:
            text = '{"truncated":false}'
        else:
            text = _encode(value)
        parts.append(f"{_string(name)}:{text}")
    return f'{{"{key}":{{{",".join(parts)}}}}}'


class HistoryWriter:
    """The engine's listener: writes the execution's events as `history_events` rows.

    Rows are held in memory and written with one `executemany` and one commit (a) just
    before the engine does anything slow: runs a Lambda handler (after TaskStarted or
    LambdaFunctionStarted), backs off before a retry (after a failure event) or sleeps in
    a Wait (after WaitStateEntered); and (b) when the execution ends. What a crash may
    lose: only the events of the pure computation since the last commit (Pass, Choice,
    data flow between two handler calls, and the result of the last call), never the
    record of a handler call that has begun; a redrive then re-runs at most that call.
    `commit_every=1` commits each event instead (nothing is ever lost, at about twice the
    cost), and a larger `commit_every` commits every that many events and at the end.

    `offset` shifts event ids so that a redrive's events continue the execution's history
    (its ExecutionStarted becomes AWS's ExecutionRedriven). `keep` keeps the events, as
    stored, in `events` (what the caller summarises). With `finish`, the last event
    (ExecutionSucceeded, ExecutionFailed, ...) also ends the execution's row, from that
    event (status, output, error, cause, its timestamp as the stop date), in the same
    transaction as the events: a crash cannot leave a finished history on a RUNNING row
    (which recovery would then end ABORTED after its ExecutionSucceeded), and the end costs
    one commit, not two.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        arn: str,
        *,
        offset: int = 0,
        redrive_count: int = 0,
        commit_every: int | None = None,
        keep: bool = True,
        finish: bool = False,
    ) -> None:
        self.conn, self.arn = conn, arn
        self.offset, self.redrive_count = offset, redrive_count
        self.commit_every = commit_every
        self.keep, self.finish = keep, finish
        self.events: list[dict[str, Any]] = []
        self.last_id = offset
        self._rows: list[tuple[str, int, int, str, str, str]] = []

    def __call__(self, event: Mapping[str, Any]) -> None:
        kind = event["type"]
        if self.offset and kind == "ExecutionStarted":
            # A redrive does not start the execution again; AWS records this instead.
            event = {k: v for k, v in event.items() if not k.endswith("EventDetails")}
            kind = event["type"] = "ExecutionRedriven"
            event["executionRedrivenEventDetails"] = {"redriveCount": self.redrive_count}
        event_id = event["id"] + self.offset
        previous = event["previousEventId"] + self.offset
        stamp = event["timestamp"]
        stamp = stamp.isoformat() if isinstance(stamp, dt.datetime) else str(stamp)
        text = "{}"
        for key in event:
            if key.endswith("EventDetails"):
                text = _details_text(key, event[key])
                break
        row = (self.arn, event_id, previous, stamp, kind, text)
        status = _ENDINGS.get(kind)
        if status is not None and self.finish:
            details = _details_of(event) or {}
            # Should this fail, the ending is not held: an abort then follows what is stored.
            self._write(row, (status, details.get("output"), details.get("error"),
                              details.get("cause"), stamp, self.arn))  # fmt: skip
        else:
            self._rows.append(row)
        self.last_id = event_id
        if self.keep:
            kept = dict(event)
            kept["id"], kept["previousEventId"], kept["timestamp"] = event_id, previous, stamp
            self.events.append(kept)
        every = self.commit_every
        if status is not None or (kind in _COMMIT_AFTER and every is None) or (
            every is not None and len(self._rows) >= every
        ):
            self.flush()

    def flush(self) -> None:
        """Write and commit the rows held so far (one transaction)."""
        self._write()

    def _write(self, last: tuple[str, int, int, str, str, str] | None = None,
               ending: tuple[Any, ...] | None = None) -> None:  # fmt: skip
        """Write the rows held, then `last` and the row's `ending` (_FINISH's parameters) if
        given, in one transaction; the held rows stay held if it fails."""
        rows = self._rows if last is None else [*self._rows, last]
        if not rows:
            return
        conn = self.conn
        if len(rows) == 1 and ending is None and not conn.in_transaction:
            conn.execute(_INSERT, rows[0])  # autocommits
        else:
            began = not conn.in_transaction
            if began:
                conn.execute("BEGIN")
            try:
                conn.executemany(_INSERT, rows)
                if ending is not None:
                    conn.execute(_FINISH, ending)
                if began:
                    conn.commit()
            except BaseException:
                if began and conn.in_transaction:
                    conn.rollback()
                raise  # the rows stay held, for abort_execution to try again
        self._rows = []


_ENDINGS = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


class ChildRecorder:
    """The engine's `children` factory: records each child workflow execution of a
    Distributed Map as an execution of its own, a row (state machine `MACHINE/LABEL`, its
    Map Run and parent) and its history, ended from its last event.

    Children may run on several threads and share the parent's connection, so every write
    goes under one lock. A child's events are committed together when it ends (one
    transaction per child instead of one per event; a crash loses at most the events of
    the children still running, whose rows then end ABORTED as orphans). A child that is
    redriven (its Map Run redriven with the parent) keeps its row, RUNNING again, and its
    history continues after an ExecutionRedriven event.
    """

    def __init__(self, conn: sqlite3.Connection, *, threshold: float | None = None) -> None:
        self.conn, self.threshold = conn, threshold
        self.lock = threading.Lock()
        self.arns: list[str] = []  # every child recorded, in start order

    def __call__(self, child: ChildExecution) -> Callable[[Mapping[str, Any]], None]:
        offset = 0
        with self.lock:
            if child.redrive_count:
                offset = _reopen_child(self.conn, child.arn)
            else:
                create_execution(
                    self.conn, arn=child.arn, name=child.name, state_machine=child.state_machine,
                    execution_input=child.input,
                    definition=json.dumps(_standalone(child.definition)),
                    started_at=child.start_date, threshold=self.threshold,
                    map_run_arn=child.map_run_arn, parent_arn=child.parent_arn,
                )  # fmt: skip
            self.arns.append(child.arn)
        writer = HistoryWriter(self.conn, child.arn, offset=offset, commit_every=1_000_000,
                               redrive_count=child.redrive_count, keep=False,
                               finish=True)  # fmt: skip

        def listen(event: Mapping[str, Any]) -> None:
            with self.lock:
                writer(event)

        return listen


def _reopen_child(conn: sqlite3.Connection, arn: str) -> int:
    """Set a child execution that did not succeed RUNNING again, for the redrive of its Map
    Run; the id of its last event, after which its history continues."""
    record = read_record(conn, arn)
    if record.status not in FAILED_STATUSES or not reopen_execution(conn, arn, record.status):
        raise WorkflowError(
            f"ExecutionNotRedrivable: the child execution {arn} is {record.status}; only a "
            "FAILED, TIMED_OUT or ABORTED child is redriven with its Map Run"
        )
    return last_event_id(conn, arn)


def _details_of(event: Mapping[str, Any]) -> Any:
    """The event's one `*EventDetails` value, or None (without loading the engine)."""
    return next((v for k, v in event.items() if k.endswith("EventDetails")), None)


def _standalone(processor: Mapping[str, Any]) -> dict[str, Any]:
    """An ItemProcessor as the definition of the child's own state machine."""
    return {k: v for k, v in processor.items() if k != "ProcessorConfig"}


def create_execution(
    conn: sqlite3.Connection,
    *,
    arn: str,
    name: str,
    state_machine: str,
    execution_input: Any,
    definition: str,
    started_at: dt.datetime,
    threshold: float | None = None,
    map_run_arn: str | None = None,
    parent_arn: str | None = None,
) -> None:
    """The RUNNING row of a new execution; ExecutionAlreadyExists when the ARN ran before.
    A Distributed Map's child execution also names its Map Run and parent execution."""
    pid, start = owner()
    try:
        conn.execute(
            "INSERT INTO executions (arn, name, state_machine, status, input, definition,"
            " started_at, threshold, owner_pid, owner_start, map_run_arn, parent_arn)"
            " VALUES (?, ?, ?, 'RUNNING', ?, ?, ?, ?, ?, ?, ?, ?)",
            (arn, name, state_machine, json.dumps(execution_input), definition,
             started_at.isoformat(), threshold, pid, start, map_run_arn, parent_arn),
        )  # fmt: skip
    except sqlite3.IntegrityError as err:
        raise WorkflowError(
            f"ExecutionAlreadyExists: {arn} already ran; choose another name"
        ) from err


def finish_execution(
    conn: sqlite3.Connection,
    arn: str,
    *,
    status: str,
    output: Any,
    error: str | None,
    cause: str | None,
    stopped_at: dt.datetime,
) -> None:
    """Record how an execution ended."""
    conn.execute(
        "UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, stopped_at = ? "
        "WHERE arn = ?",
        (status, None if output is None else json.dumps(output), error, cause,
         stopped_at.isoformat(), arn),
    )  # fmt: skip


def reopen_execution(conn: sqlite3.Connection, arn: str, status: str) -> bool:
    """Set a FAILED/TIMED_OUT/ABORTED execution RUNNING again for a redrive; False when it
    was no longer in `status` (another process redrove it first)."""
    updated = conn.execute(
        "UPDATE executions SET status = 'RUNNING', output = NULL, error = NULL, cause = NULL,"
        " stopped_at = NULL, stop_requested = NULL, owner_pid = ?, owner_start = ?"
        " WHERE arn = ? AND status = ?",
        (*owner(), arn, status),
    ).rowcount
    return updated == 1


def abort_execution(
    conn: sqlite3.Connection,
    arn: str,
    cause: str | None,
    last_id: int | None = None,
    error: str | None = None,
    *,
    writer: HistoryWriter | None = None,
) -> bool:
    """End a RUNNING execution as ABORTED with an `ExecutionAborted` event (as StopExecution
    does), after the events `writer` still holds; False when it was not RUNNING (it ended,
    or another process aborted it first). Problems recording it are logged, since the
    caller's own error matters more."""
    try:
        if writer is not None:
            writer.flush()  # keep the events the writer had not committed yet
            last_id = writer.last_id
        if conn.in_transaction:
            conn.commit()
    except sqlite3.Error as err:
        log.warning("could not record the last events of %s: %s", arn, err)
        last_id = None  # count from what is stored
    now = dt.datetime.now(dt.UTC).isoformat()
    try:
        conn.execute("BEGIN IMMEDIATE")
        updated = conn.execute(
            "UPDATE executions SET status = 'ABORTED', error = ?, cause = ?, stopped_at = ? "
            "WHERE arn = ? AND status = 'RUNNING'",
            (error, cause, now, arn),
        ).rowcount
        if updated:
            last = last_id if last_id is not None else last_event_id(conn, arn)
            details = {k: v for k, v in (("error", error), ("cause", cause)) if v is not None}
            conn.execute(
                "INSERT INTO history_events VALUES (?, ?, ?, ?, 'ExecutionAborted', ?)",
                (arn, last + 1, last, now,
                 json.dumps({"executionAbortedEventDetails": details})),
            )  # fmt: skip
        conn.commit()
        return bool(updated)
    except sqlite3.Error as err:
        if conn.in_transaction:
            conn.rollback()
        log.warning("could not record the abort of %s: %s", arn, err)
        return False


def abort_children(conn: sqlite3.Connection, parent_arn: str, cause: str) -> None:
    """End as ABORTED the child executions of `parent_arn` still RUNNING (its runner
    was interrupted while a Distributed Map ran)."""
    rows = conn.execute(
        "SELECT arn FROM executions WHERE parent_arn = ? AND status = 'RUNNING'", (parent_arn,)
    ).fetchall()
    for row in rows:
        abort_execution(conn, row["arn"], cause)


def owner() -> tuple[int, str | None]:
    """This process as an execution's owner: (pid, start time). The start time tells a
    live owner from a later process that was given the same pid."""
    pid = os.getpid()
    return pid, _own_start(pid)


@functools.lru_cache(maxsize=4)
def _own_start(pid: int) -> str | None:
    """This process's start time, read once per pid (a forked child has a pid of its own);
    every execution row and every owner check needs it, and /proc costs a file read."""
    return process_start(pid)


def process_start(pid: int) -> str | None:
    """The start time of process `pid` as the executions table stores it (text), or None
    where it cannot be read (another OS, or the process is gone)."""
    start = processes.process_start(pid)
    return None if start is None else str(start)


def owner_alive(pid: int | None, start: str | None) -> bool:
    if pid is None:
        return False
    if (pid, start) == owner():  # this process: alive, no system call needed
        return True
    return processes.is_alive(pid, start)


def recover_orphans(conn: sqlite3.Connection) -> list[str]:
    """End as ABORTED (and so redrivable) every RUNNING execution whose owner process is
    gone, e.g. killed with SIGKILL; returns their ARNs. Run whenever a command opens the
    workspace's executions, so that none stays RUNNING for ever."""
    rows = conn.execute(
        "SELECT arn, owner_pid, owner_start FROM executions WHERE status = 'RUNNING'"
    ).fetchall()
    orphans = [r["arn"] for r in rows if not owner_alive(r["owner_pid"], r["owner_start"])]
    for arn, row in ((r["arn"], r) for r in rows if r["arn"] in orphans):
        who = f"process {row['owner_pid']}" if row["owner_pid"] else "the process running it"
        abort_execution(
            conn, arn, f"{who} ended before the execution did; redrive it to finish it"
        )
    return orphans


# --- stop requests from another process -----------------------------------------------------

STOP_POLL_SECONDS = 0.2  # how often an owner reads its executions' stop requests, at most


def request_stop(
    conn: sqlite3.Connection, arn: str, *, error: str | None = None, cause: str | None = None
) -> bool:
    """Ask the process running `arn` to stop it (StopExecution from another process): the
    owner reads the request through `StopRequest` and ends the execution ABORTED with
    `error` and `cause`. False when the execution is not RUNNING."""
    request = json.dumps({"error": error, "cause": cause})
    updated = conn.execute(
        "UPDATE executions SET stop_requested = ? WHERE arn = ? AND status = 'RUNNING'",
        (request, arn),
    ).rowcount
    return updated == 1


class StopRequest:
    """A stop signal (the engine's `stop=`) set by `request_stop` in any process.

    `is_set()` reads the execution's row at most every STOP_POLL_SECONDS (the first time
    that long after it was made), so an execution of a few milliseconds never reads it
    and a long one costs one indexed read per interval. Once set, `error` and `cause` say
    what the stop request gave."""

    def __init__(self, conn: sqlite3.Connection, arn: str,
                 clock: Any = time.monotonic) -> None:  # fmt: skip
        self.conn, self.arn, self._clock = conn, arn, clock
        self._next = clock() + STOP_POLL_SECONDS
        self._set = False
        self._lock = threading.Lock()  # Map/Parallel branches may ask from several threads
        self.error: str | None = None
        self.cause: str | None = None

    def is_set(self) -> bool:
        if self._set or self._clock() < self._next:
            return self._set
        with self._lock:
            self._next = self._clock() + STOP_POLL_SECONDS
            try:
                row = self.conn.execute(
                    "SELECT stop_requested FROM executions WHERE arn = ?", (self.arn,)
                ).fetchone()
            except sqlite3.Error as err:  # a busy db must not fail the execution
                log.warning("could not read the stop request of %s: %s", self.arn, err)
                return False
            if row is not None and row[0]:
                request = json.loads(row[0])
                self.error, self.cause = request.get("error"), request.get("cause")
                self._set = True
        return self._set


# --- the reader ----------------------------------------------------------------------------


def last_event_id(conn: sqlite3.Connection, arn: str) -> int:
    row = conn.execute(
        "SELECT MAX(id) FROM history_events WHERE execution_arn = ?", (arn,)
    ).fetchone()
    return int(row[0] or 0)


_READ_RECORD = (
    "SELECT *, (SELECT COUNT(*) FROM history_events WHERE execution_arn = e.arn AND"
    " type = 'ExecutionRedriven') AS redrives, (SELECT MAX(timestamp) FROM history_events"
    " WHERE execution_arn = e.arn AND type = 'ExecutionRedriven') AS redriven"
    " FROM executions AS e WHERE arn = ?"
)


def read_record(conn: sqlite3.Connection, arn: str) -> ExecutionRecord:
    """The execution with this exact ARN (it must exist)."""
    found = find_record(conn, arn)
    if found is None:
        raise WorkflowError(f"ExecutionDoesNotExist: no execution {arn!r}")
    return found


def find_record(conn: sqlite3.Connection, arn: str) -> ExecutionRecord | None:
    """The execution with this exact ARN, or None; one query."""
    row = conn.execute(_READ_RECORD, (arn,)).fetchone()
    return None if row is None else _record_of(row, (int(row["redrives"]), row["redriven"]))


def current_record(conn: sqlite3.Connection, arn: str) -> ExecutionRecord | None:
    """The execution with this exact ARN as it stands now, or None: one RUNNING whose owner
    process is gone (kill -9) is ended ABORTED first (recover_orphans), as every reader
    does. One query when it is finished or its owner is alive (DescribeExecution's path)."""
    record = find_record(conn, arn)
    if record is not None and record.status == "RUNNING" and not owner_alive(
        record.owner_pid, record.owner_start
    ):
        recover_orphans(conn)
        record = find_record(conn, arn)
    return record


def _record_of(row: sqlite3.Row, redrives: tuple[int, str | None]) -> ExecutionRecord:
    return ExecutionRecord(
        arn=row["arn"], name=row["name"], state_machine=row["state_machine"],
        status=row["status"], input=row["input"], started_at=row["started_at"],
        output=row["output"], error=row["error"], cause=row["cause"],
        stopped_at=row["stopped_at"], redrive_count=int(redrives[0]), redrive_date=redrives[1],
        threshold=row["threshold"], map_run_arn=row["map_run_arn"],
        owner_pid=row["owner_pid"], owner_start=row["owner_start"],
    )  # fmt: skip


def read_children(conn: sqlite3.Connection, parent_arn: str) -> list[ExecutionRecord]:
    """The child executions an execution's Distributed Maps started, in start order."""
    return _children(conn, "parent_arn", parent_arn)


def read_map_run_children(conn: sqlite3.Connection, map_run_arn: str) -> list[ExecutionRecord]:
    """The child executions of one Map Run, in start order (ListExecutions of a Map Run)."""
    return _children(conn, "map_run_arn", map_run_arn)


def _children(conn: sqlite3.Connection, column: str, arn: str) -> list[ExecutionRecord]:
    # `column` is one of the two literals above, never outside input.
    rows = conn.execute(
        f"SELECT arn FROM executions WHERE {column} = ? ORDER BY started_at, rowid", (arn,)
    ).fetchall()
    return [read_record(conn, row["arn"]) for row in rows]


def page_executions(
    conn: sqlite3.Connection,
    *,
    state_machine: str | None = None,
    status: str | None = None,
    limit: int = 100,
    after: tuple[str, str] | None = None,
) -> tuple[list[ExecutionRecord], tuple[str, str] | None]:
    """One page of executions, newest first (ListExecutions), and the cursor of the next
    page (None on the last). `after` is the (started_at, arn) cursor of the previous page.
    Indexed on (state_machine | status, started_at), so a page costs the same at 10 or
    10,000,000 rows."""
    where, args = [], []
    if state_machine is not None:
        where.append("state_machine = ?")
        args.append(state_machine)
    if status is not None:
        where.append("status = ?")
        args.append(status)
    if after is not None:
        where.append("(started_at, arn) < (?, ?)")
        args.extend(after)
    sql = "SELECT * FROM executions" + (" WHERE " + " AND ".join(where) if where else "")
    rows = conn.execute(
        sql + " ORDER BY started_at DESC, arn DESC LIMIT ?", (*args, limit + 1)
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    redrives = _redrives(conn, [r["arn"] for r in rows])
    page = [_record_of(r, redrives.get(r["arn"], (0, None))) for r in rows]
    cursor = (rows[-1]["started_at"], rows[-1]["arn"]) if more and rows else None
    return page, cursor


def _redrives(conn: sqlite3.Connection, arns: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    """(redrive count, last redrive date) of each ARN that was redriven."""
    if not arns:
        return {}
    marks = ", ".join("?" * len(arns))
    rows = conn.execute(
        "SELECT execution_arn, COUNT(*), MAX(timestamp) FROM history_events WHERE "
        f"type = 'ExecutionRedriven' AND execution_arn IN ({marks}) GROUP BY execution_arn",
        tuple(arns),
    ).fetchall()
    return {r[0]: (int(r[1]), r[2]) for r in rows}


def count_by_status(conn: sqlite3.Connection, state_machine: str | None = None) -> dict[str, int]:
    """How many executions are in each status (of one state machine, or all)."""
    rows = conn.execute(
        "SELECT status, COUNT(*) FROM executions WHERE ? IS NULL OR state_machine = ? "
        "GROUP BY status",
        (state_machine, state_machine),
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def machine_names(conn: sqlite3.Connection) -> list[str]:
    """The state machine names that executions were recorded under."""
    return [r[0] for r in conn.execute("SELECT DISTINCT state_machine FROM executions")]


def read_history(conn: sqlite3.Connection, arn: str) -> list[dict[str, Any]]:
    """GetExecutionHistory's events of one execution, oldest first, timestamps as text."""
    rows = conn.execute(
        "SELECT id, previous_id, timestamp, type, details FROM history_events "
        "WHERE execution_arn = ? ORDER BY id",
        (arn,),
    ).fetchall()
    events = []
    for event_id, previous, stamp, kind, details in rows:
        event: dict[str, Any] = {"timestamp": stamp, "type": kind, "id": event_id,
                                 "previousEventId": previous}  # fmt: skip
        if details:
            event.update(json.loads(details))
        events.append(event)
    return events


def read_definition(conn: sqlite3.Connection, arn: str) -> dict[str, Any]:
    row = conn.execute("SELECT definition FROM executions WHERE arn = ?", (arn,)).fetchone()
    parsed: dict[str, Any] = json.loads(row["definition"])
    return parsed


def find_execution(settings: Settings, arn_or_name: str) -> ExecutionRecord:
    """An execution by ARN, or by name (the newest of that name)."""
    with closing(db.connect(settings.db_path)) as conn:
        recover_orphans(conn)
        row = conn.execute(
            "SELECT arn FROM executions WHERE arn = ? OR name = ? ORDER BY started_at DESC LIMIT 1",
            (arn_or_name, arn_or_name),
        ).fetchone()
        if row is None:
            raise WorkflowError(
                f"ExecutionDoesNotExist: no execution {arn_or_name!r}; see "
                "`sconeflow workflow list`"
            )
        return read_record(conn, row["arn"])


def list_executions(
    settings: Settings, *, status: str | None = None, map_run_arn: str | None = None
) -> list[ExecutionRecord]:
    """Recorded executions, newest first (ListExecutions): those started directly, or with
    `map_run_arn` the child executions of that Map Run (as AWS lists them apart)."""
    with closing(db.connect(settings.db_path)) as conn:
        recover_orphans(conn)
        arns = conn.execute(
            "SELECT arn FROM executions WHERE (? IS NULL OR status = ?) AND "
            "(map_run_arn IS ? OR map_run_arn = ?) ORDER BY started_at DESC",
            (status, status, map_run_arn, map_run_arn),
        ).fetchall()
        return [read_record(conn, r["arn"]) for r in arns]


def get_history(settings: Settings, arn_or_name: str) -> list[dict[str, Any]]:
    """GetExecutionHistory's events, oldest first, as stored."""
    arn = find_execution(settings, arn_or_name).arn
    with closing(db.connect(settings.db_path)) as conn:
        return read_history(conn, arn)


def definition_of(settings: Settings, arn_or_name: str) -> dict[str, Any]:
    """The ASL definition (placeholders filled) that an execution ran."""
    arn = find_execution(settings, arn_or_name).arn
    with closing(db.connect(settings.db_path)) as conn:
        return read_definition(conn, arn)
