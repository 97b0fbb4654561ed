"""Faults injected into running executions: no execution is ever left RUNNING for ever.

* kill -9 `sconeflow workflow run` mid-run: the next command that opens the workspace's
  executions finds the owner process gone, ends the execution ABORTED, and it redrives;
* SIGTERM / SIGINT mid-run: the command ends its executions ABORTED itself, with
  `ExecutionAborted` in their history, and exits 143 / 130;
* a runner stopped while several executions run at once on threads: all end ABORTED at
  their next state and each redrives to SUCCEEDED.

Real processes, real signals, the real workspace SQLite file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sconeflow.config import Settings
from sconeflow.executions import records
from sconeflow.executions.definitions import Definition
from sconeflow.executions.runner import WorkflowRunner, redrive_execution

# Pass, then a Wait until `$.until` (so the process is killed while it waits), then Pass.
HOLD = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Pass", "Result": "ok", "ResultPath": "$.first", "Next": "Hold"},
        "Hold": {"Type": "Wait", "TimestampPath": "$.until", "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "done", "ResultPath": "$.done", "End": True},
    },
}


def _until(seconds: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sconeflow", "--home", str(home), *args]


def _start_run(settings: Settings, tmp_path: Path, name: str, wait: float) -> subprocess.Popen:
    definition = tmp_path / "hold.json"
    definition.write_text(json.dumps(HOLD))
    payload = json.dumps({"until": _until(wait)})
    return subprocess.Popen(
        _cli(settings.home, "workflow", "run", "--definition", str(definition),
             "--input", payload, "--name", name),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _raw(settings: Settings, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Read the db without going through records (which would recover orphans)."""
    with closing(sqlite3.connect(settings.db_path)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


def _wait_for_state(settings: Settings, state: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if settings.db_path.exists():
            try:
                rows = _raw(settings, "SELECT details FROM history_events WHERE type LIKE "
                                      "'%StateEntered'")  # fmt: skip
            except sqlite3.OperationalError:  # the schema is still being created
                rows = []
            if any(json.loads(r["details"])["stateEnteredEventDetails"]["name"] == state
                   for r in rows):  # fmt: skip
                return
        time.sleep(0.05)
    raise AssertionError(f"the execution never entered {state}")


def test_kill_9_mid_run_is_recovered_and_redrives(settings: Settings, tmp_path: Path) -> None:
    proc = _start_run(settings, tmp_path, "victim", wait=4)
    _wait_for_state(settings, "Hold", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (row,) = _raw(settings, "SELECT status, owner_pid FROM executions")
    assert row["status"] == "RUNNING" and row["owner_pid"] == proc.pid  # stuck, until...

    listed = subprocess.run(_cli(settings.home, "workflow", "list", "--json"),
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    (execution,) = json.loads(listed.stdout)["executions"]
    assert execution["status"] == "ABORTED" and execution["redriveStatus"] == "REDRIVABLE"
    assert f"process {proc.pid} ended" in execution["cause"]
    history = records.get_history(settings, "victim")
    assert history[-1]["type"] == "ExecutionAborted"
    assert history[-1]["previousEventId"] == history[-2]["id"]  # nothing lost before it

    redriven = subprocess.run(_cli(settings.home, "workflow", "redrive", "victim", "--json"),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert redriven.returncode == 0, redriven.stderr
    record = records.find_execution(settings, "victim")
    assert record.status == "SUCCEEDED" and record.redrive_count == 1
    assert json.loads(record.output or "{}")["done"] == "done"
    after = records.get_history(settings, "victim")
    assert [e["id"] for e in after] == list(range(1, len(after) + 1))
    types = [e["type"] for e in after[len(history):]]
    assert types[:2] == ["ExecutionRedriven", "WaitStateEntered"]  # from the state it was in
    assert types[-1] == "ExecutionSucceeded"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_ends_the_execution_aborted(
    settings: Settings, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    proc = _start_run(settings, tmp_path, "stopped", wait=60)
    _wait_for_state(settings, "Hold", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)  # the 60 s Wait is cut short
    assert proc.returncode == code, err
    # Recorded by the process itself: read the rows raw, so no recovery could have done it.
    (row,) = _raw(settings, "SELECT status FROM executions")
    assert row["status"] == "ABORTED"
    (event,) = _raw(settings, "SELECT type FROM history_events ORDER BY id DESC LIMIT 1")
    assert event["type"] == "ExecutionAborted"


def test_stopping_a_runner_aborts_every_running_execution(settings: Settings) -> None:
    """Eight executions on eight threads, stopped at once: none left RUNNING, all redrive."""
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow(event: Any, context: Any) -> Any:
        entered.release()
        release.wait(30)
        return {**event, "slow": True}

    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {"Type": "Task",
                     "Resource": "arn:aws:lambda:us-east-1:123456789012:function:slow",
                     "Next": "After"},
            "After": {"Type": "Pass", "Result": 1, "ResultPath": "$.after", "End": True},
        },
    }  # fmt: skip
    wf = WorkflowRunner(settings, Definition("slow", json.dumps(definition), "test"),
                        {"slow": slow})  # fmt: skip
    done: list[Any] = []
    worker = threading.Thread(
        target=lambda: done.append(wf.stream([{"i": i} for i in range(8)], concurrency=8,
                                             names=[f"e{i}" for i in range(8)]))
    )  # fmt: skip
    worker.start()
    for _ in range(8):
        assert entered.acquire(timeout=30)
    wf.stop_all()
    release.set()  # the handlers in progress finish; the executions stop before "After"
    worker.join(timeout=30)
    (ended,) = done
    assert [r.status for r in ended] == ["ABORTED"] * 8
    for r in ended:
        history = records.get_history(settings, r.arn)
        assert [e["type"] for e in history[-2:]] == ["PassStateEntered", "ExecutionAborted"]
        again = redrive_execution(settings, r.arn, {"slow": slow})
        assert again.status == "SUCCEEDED" and json.loads(again.output or "{}")["after"] == 1


def test_recovery_leaves_live_owners_alone(settings: Settings) -> None:
    """An execution whose owner is alive (this process) stays RUNNING; one whose recorded
    start time belongs to another process (a reused pid) is an orphan."""
    from sconeflow import db

    with closing(db.connect(settings.db_path)) as conn:
        for name in ("mine", "reused"):
            records.create_execution(
                conn, arn=f"arn:aws:states:us-east-1:123456789012:execution:m:{name}",
                name=name, state_machine="m", execution_input={}, definition="{}",
                started_at=dt.datetime.now(dt.UTC),
            )  # fmt: skip
        conn.execute("UPDATE executions SET owner_start = 'not-this-one' WHERE name = 'reused'")
        assert records.recover_orphans(conn) == [
            "arn:aws:states:us-east-1:123456789012:execution:m:reused"
        ]
    assert records.find_execution(settings, "mine").status == "RUNNING"
    assert records.find_execution(settings, "reused").status == "ABORTED"
    assert os.getpid() == records.owner()[0]
