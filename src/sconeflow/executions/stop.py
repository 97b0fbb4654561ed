"""StopExecution from any process: `sconeflow workflow stop`, the console, a script.

The process running an execution (its owner, recorded on the row) is the only one that
ends it, so that the history stays one line written by one writer. Another process asks
through the row (`records.request_stop`); the owner reads that at most every
`records.STOP_POLL_SECONDS` and ends the execution ABORTED, with `ExecutionAborted`, before
its next state (a Wait or a retry back-off is cut short; a handler already running
finishes first). An owner that is gone cannot obey: its executions are orphans, which
`records.recover_orphans` ends ABORTED at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import WorkflowError
from sconeflow.executions import records
from sconeflow.executions.records import ExecutionRecord


def stop_execution(
    settings: Settings,
    arn_or_name: str,
    *,
    error: str | None = None,
    cause: str | None = None,
    wait: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ExecutionRecord:
    """Ask the owner of a RUNNING execution to stop it, and wait up to `wait` seconds for
    it to end; returns the record as it is then (still RUNNING if a handler is busy)."""
    record = records.find_execution(settings, arn_or_name)  # recovers orphans first
    if record.status != "RUNNING":
        raise WorkflowError(
            f"ExecutionNotRunning: {record.name} is {record.status}, not RUNNING; only a "
            "running execution can be stopped (a failed or aborted one can be redriven)"
        )
    with closing(db.connect(settings.db_path)) as conn:
        records.request_stop(conn, record.arn, error=error, cause=cause)
        deadline = time.monotonic() + wait
        while True:
            records.recover_orphans(conn)  # the owner may have died since
            record = records.read_record(conn, record.arn)
            if record.status != "RUNNING" or time.monotonic() >= deadline:
                return record
            sleep(0.05)
