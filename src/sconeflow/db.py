"""The workspace database: one SQLite file holding training jobs, endpoints, state machines,
executions and their history, and monitoring runs.

Plain sqlite3, WAL mode so the endpoint process, the CLI and the workflow runner can use
it at once. Rows carry JSON text for nested fields; callers parse them where they enter.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sconeflow.errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS training_jobs (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,               -- InProgress | Completed | Failed | Stopping | Stopped
    created_at TEXT NOT NULL,
    ended_at TEXT,
    hyperparameters TEXT NOT NULL,      -- JSON object of strings, SageMaker style
    metrics TEXT NOT NULL DEFAULT '{}', -- JSON object
    artifact TEXT,                      -- store URI of model.tar.gz
    failure_reason TEXT,
    secondary_status TEXT,              -- Training | Uploading | Stopped | MaxRuntimeExceeded ...
    status_message TEXT,                -- why it stopped, in words
    owner_pid INTEGER,                  -- the process running the job ...
    owner_start INTEGER                 -- ... and its start time (/proc/<pid>/stat field 22)
);
CREATE TABLE IF NOT EXISTS endpoints (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,               -- Creating|InService|OutOfService|Failed|Deleting
    model TEXT NOT NULL,                -- training job name or artifact path
    url TEXT NOT NULL,
    port INTEGER NOT NULL,
    pid INTEGER,
    workers INTEGER NOT NULL DEFAULT 1,
    capture_config TEXT NOT NULL,       -- JSON DataCaptureConfig
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state_machine TEXT NOT NULL,
    status TEXT NOT NULL,               -- RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT,
    definition TEXT NOT NULL,           -- the ASL JSON it ran
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    redrive_of TEXT,
    threshold REAL,                     -- filterLowConfidence's THRESHOLD for this run
    owner_pid INTEGER,                  -- the process running it, while RUNNING
    owner_start TEXT,                   -- that process's start time (a reused pid differs)
    map_run_arn TEXT,                   -- a Distributed Map's child: its Map Run
    parent_arn TEXT,                    -- ... and the execution that started the Map Run
    stop_requested TEXT                 -- JSON {"error", "cause"}: StopExecution from another
                                        -- process, which the owner polls and obeys
);
CREATE INDEX IF NOT EXISTS executions_by_start ON executions (started_at);
CREATE INDEX IF NOT EXISTS executions_by_machine ON executions (state_machine, started_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, started_at);
CREATE TABLE IF NOT EXISTS history_events (
    execution_arn TEXT NOT NULL,
    id INTEGER NOT NULL,
    previous_id INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    type TEXT NOT NULL,
    details TEXT NOT NULL,              -- JSON: the event's *EventDetails object
    PRIMARY KEY (execution_arn, id)
);
CREATE TABLE IF NOT EXISTS state_machines (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    type TEXT NOT NULL,                 -- STANDARD | EXPRESS
    definition TEXT NOT NULL,           -- the ASL JSON as given to CreateStateMachine
    role_arn TEXT NOT NULL,
    revision_id TEXT NOT NULL,          -- changes with every UpdateStateMachine
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    logging TEXT NOT NULL DEFAULT '{}', -- JSON LoggingConfiguration
    tracing TEXT NOT NULL DEFAULT '{}'  -- JSON TracingConfiguration
);
CREATE TABLE IF NOT EXISTS monitoring_runs (
    id TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL,               -- Completed | CompletedWithViolations | Failed
    started_at TEXT NOT NULL,
    window_start TEXT,
    window_end TEXT,
    violations INTEGER NOT NULL DEFAULT 0,
    output_prefix TEXT NOT NULL,
    failure_reason TEXT
);
"""

# Columns added after a table's first version: (table, column, declaration). `CREATE TABLE
# IF NOT EXISTS` leaves an older workspace's table as it was, so these are added to it.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("executions", "threshold", "REAL"),
    ("executions", "owner_pid", "INTEGER"),
    ("executions", "owner_start", "TEXT"),
    ("executions", "map_run_arn", "TEXT"),
    ("executions", "parent_arn", "TEXT"),
    ("executions", "stop_requested", "TEXT"),
    ("training_jobs", "secondary_status", "TEXT"),
    ("training_jobs", "status_message", "TEXT"),
    ("training_jobs", "owner_pid", "INTEGER"),
    ("training_jobs", "owner_start", "INTEGER"),
)

_init_lock = threading.Lock()
_initialised: set[Path] = set()


class _Connection(sqlite3.Connection):
    """Names a parameter SQLite cannot store, text with undecodable bytes (what Python makes
    of a command-line argument in another encoding: `train describe $'\\xff'`), instead of
    failing with a UnicodeEncodeError deep in whichever query met it first."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        _check_text(parameters)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> sqlite3.Cursor:
        rows = list(seq_of_parameters)
        for row in rows:
            _check_text(row)
        return super().executemany(sql, rows)


def _check_text(parameters: Any) -> None:
    values = parameters.values() if isinstance(parameters, dict) else parameters
    for value in values:
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
                raise ConfigError(
                    f"{shown} is not valid UTF-8 text (it holds bytes in another encoding, "
                    "as a command-line argument can); names and values must be UTF-8"
                ) from err


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the workspace database at `path`."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=30, isolation_level=None, check_same_thread=False, factory=_Connection
    )
    conn.row_factory = sqlite3.Row
    # WAL with synchronous=NORMAL: a commit has written its pages to the WAL file (in the
    # OS's page cache) before COMMIT returns, and only checkpoints fsync. So whatever was
    # committed survives the death of the process, kill -9 included (what the chaos tests
    # inject); an OS crash or power loss can lose the last commits, never corrupt the file.
    # FULL would fsync at every commit: a StartExecution would wait on the disk.
    conn.execute("PRAGMA synchronous=NORMAL")
    with _init_lock:
        if path not in _initialised:
            _initialise(conn)
            _initialised.add(path)
    return conn


@contextmanager
def using(path: Path, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
    """`conn` when the caller has one (a long-lived process's, kept open: see
    ThreadConnections), left open; else a new connection to `path`, closed at the end (a
    CLI command, which reads once)."""
    if conn is not None:
        yield conn
        return
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


class ThreadConnections:
    """One connection to the workspace db per thread, opened on the thread's first `get` and
    kept open: opening one per call (a request, an execution) cost more than a short
    execution, and closing the last one to the file checkpoints the WAL, a file sync.

    Reads stay fresh: connections are in autocommit mode, so each statement reads the
    latest commit of any thread or process. A thread that has ended cannot use its
    connection again; the next thread to open one closes it (servers' worker threads come
    and go). `close` closes the rest, once no thread will use them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[threading.Thread, sqlite3.Connection]] = []

    def get(self) -> sqlite3.Connection:
        """The calling thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
            with self._lock:
                ended = [c for thread, c in self._open if not thread.is_alive()]
                self._open = [(t, c) for t, c in self._open if t.is_alive()]
                self._open.append((threading.current_thread(), conn))
            for old in ended:
                old.close()
        return conn

    def close(self) -> None:
        """Close every connection; a thread that calls `get` after this opens a new one."""
        with self._lock:
            connections, self._open = [c for _, c in self._open], []
            self._local = threading.local()
        for conn in connections:
            conn.close()


def _initialise(conn: sqlite3.Connection) -> None:
    """WAL mode (persistent in the file) and the schema, once per process and file.

    Switching the journal mode needs an exclusive lock and does not wait on the busy
    timeout, so connections racing to do it (threads here, or another process) would fail
    with "database is locked": switch only when needed, and retry briefly.
    """
    for attempt in range(50):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            _add_columns(conn)
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == 49:
                raise
            time.sleep(0.05)


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, column, declaration in ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            except sqlite3.OperationalError as err:  # another process added it just now
                if "duplicate column" not in str(err):
                    raise
