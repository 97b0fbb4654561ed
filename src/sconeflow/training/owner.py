"""Who runs a training job: the owner process, its stop requests, and jobs whose owner died.

A job's record holds its owner's pid and start time (field 22 of /proc/<pid>/stat, clock
ticks since boot), so `reconcile_jobs` can tell a live owner from a dead one, and a pid that
the kernel handed to another process is never taken for the owner. The owner asks
`StopRequests` between optimizer steps whether to stop: a `sconeflow train stop` (the record
turned Stopping) or a SIGTERM, which SageMaker sends to stop a job.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.processes import is_alive as owner_alive

STOP_POLL_SECONDS = 0.5  # how often a running job looks for a stop request in the database


def log_path(settings: Settings, job: str) -> Path:
    return settings.logs_dir / f"{job}.log"


def reconcile_jobs(settings: Settings, *, conn: sqlite3.Connection | None = None) -> None:
    """Mark jobs whose owner process is gone: InProgress -> Failed, Stopping -> Stopped,
    each with the reason, also appended to the job's log. Through `conn` when given, else
    a connection opened for this call."""
    with db.using(settings.db_path, conn) as conn:
        rows = conn.execute(
            "SELECT name, status, owner_pid, owner_start FROM training_jobs "
            "WHERE status IN ('InProgress', 'Stopping')"
        ).fetchall()
        for row in rows:
            if owner_alive(row["owner_pid"], row["owner_start"]):
                continue
            gone = (
                f"its training process (pid {row['owner_pid']}) ended without recording an "
                "outcome: killed, crashed, or the machine restarted"
                if row["owner_pid"] is not None
                else "it was recorded by an older sconeflow that kept no owner process"
            )
            ended = "Stopped" if row["status"] == "Stopping" else "Failed"
            if ended == "Stopped":
                updated = conn.execute(
                    "UPDATE training_jobs SET status = 'Stopped', secondary_status = 'Stopped',"
                    " ended_at = ?, status_message = ? WHERE name = ? AND status = 'Stopping'",
                    (utc_now(), f"stopped; {gone}", row["name"]),
                ).rowcount
            else:
                reason = f"{gone}; the partial log is in {log_path(settings, row['name'])}"
                updated = conn.execute(
                    "UPDATE training_jobs SET status = 'Failed', secondary_status = 'Failed', "
                    "ended_at = ?, failure_reason = ? WHERE name = ? AND status = 'InProgress'",
                    (utc_now(), reason, row["name"]),
                ).rowcount
            if updated:
                _append(log_path(settings, row["name"]), f"Marked {ended}: {gone}")


class StopRequests:
    """train()'s `should_stop`: a SIGTERM to this process, or `stop_job` from anywhere (the
    record turned Stopping, read at most every STOP_POLL_SECONDS)."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.signalled = False
        self._conn = db.connect(settings.db_path)
        self._next = 0.0

    def __call__(self) -> str | None:
        if self.signalled:
            return "SIGTERM received"
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + STOP_POLL_SECONDS
        row = self._conn.execute(
            "SELECT status, status_message FROM training_jobs WHERE name = ?", (self.name,)
        ).fetchone()
        if row is not None and row["status"] == "Stopping":
            return str(row["status_message"] or "stop requested")
        return None

    def close(self) -> None:
        self._conn.close()


@contextmanager
def sigterm_stops(requests: StopRequests) -> Iterator[None]:
    """While the job runs, SIGTERM (SageMaker's stop signal) asks for a stop instead of
    killing the process; only the main thread can set a handler, elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        requests.signalled = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:  # None: a handler set outside Python; the default is the closest we can do
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _append(path: Path, line: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        pass  # the record holds the reason too; a missing log folder must not hide it


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
