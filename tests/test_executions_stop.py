"""StopExecution across processes: `sconeflow workflow stop` stops an execution that another
process runs (a `workflow run`, or the console), through the stop request on its row."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from console_support import client, start_console, stop_console
from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import WorkflowError
from sconeflow.executions import records
from sconeflow.executions.stop import stop_execution
from sfn_script import ROLE, until

HOLD = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Pass", "Result": "ok", "ResultPath": "$.first", "Next": "Hold"},
        "Hold": {"Type": "Wait", "TimestampPath": "$.until", "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "done", "ResultPath": "$.done", "End": True},
    },
}


def _cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sconeflow", "--home", str(home), *args]


def _entered(settings: Settings, state: str) -> bool:
    if not settings.db_path.exists():
        return False
    with closing(sqlite3.connect(settings.db_path)) as conn:
        try:
            rows = conn.execute("SELECT details FROM history_events WHERE type LIKE "
                                "'%StateEntered'").fetchall()  # fmt: skip
        except sqlite3.OperationalError:
            return False
    return any(json.loads(r[0])["stateEnteredEventDetails"]["name"] == state for r in rows)


def _wait_entered(settings: Settings, state: str, proc: subprocess.Popen[Any] | None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc is None or proc.poll() is None
        if _entered(settings, state):
            return
        time.sleep(0.05)
    raise AssertionError(f"never entered {state}")


def test_workflow_stop_stops_a_run_in_another_process(settings: Settings,
                                                      tmp_path: Path) -> None:  # fmt: skip
    definition = tmp_path / "hold.json"
    definition.write_text(json.dumps(HOLD))
    run = subprocess.Popen(
        _cli(settings.home, "workflow", "run", "--definition", str(definition), "--name",
             "victim", "--input", json.dumps({"until": until(120)}), "--json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_entered(settings, "Hold", run)
    stopped = subprocess.run(
        _cli(settings.home, "workflow", "stop", "victim", "--error", "Operator",
             "--cause", "stopped by hand", "--json"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr
    described = json.loads(stopped.stdout)
    assert described["status"] == "ABORTED" and described["error"] == "Operator"
    out, err = run.communicate(timeout=60)  # the 120 s Wait was cut short
    assert run.returncode == 0, err
    assert json.loads(out)[0]["status"] == "ABORTED"
    history = records.get_history(settings, "victim")
    assert history[-1]["type"] == "ExecutionAborted"
    assert history[-1]["executionAbortedEventDetails"] == {"error": "Operator",
                                                           "cause": "stopped by hand"}
    assert history[-2]["type"] == "WaitStateEntered"  # written by its owner, in order
    # Not running any more: a second stop says so, by name.
    again = subprocess.run(_cli(settings.home, "workflow", "stop", "victim"),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 1 and "ExecutionNotRunning" in again.stderr


def test_console_stop_execution_reaches_a_cli_run_and_back(settings: Settings,
                                                          tmp_path: Path) -> None:  # fmt: skip
    """boto3 StopExecution on the console stops a `workflow run` in another process; and
    `workflow stop` stops an execution that the console runs."""
    definition = tmp_path / "hold.json"
    definition.write_text(json.dumps(HOLD))
    run = subprocess.Popen(
        _cli(settings.home, "workflow", "run", "--definition", str(definition),
             "--state-machine", "hold", "--name", "by-cli",
             "--input", json.dumps({"until": until(120)})),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_entered(settings, "Hold", run)
    proc, url = start_console(settings.home)
    try:
        sfn = client(url)
        arn = "arn:aws:states:us-east-1:123456789012:execution:hold:by-cli"
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        sfn.stop_execution(executionArn=arn, cause="from boto3")
        assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
        run.communicate(timeout=60)

        machine = sfn.create_state_machine(name="held", definition=json.dumps(HOLD),
                                           roleArn=ROLE)["stateMachineArn"]  # fmt: skip
        mine = sfn.start_execution(stateMachineArn=machine, name="by-console",
                                   input=json.dumps({"until": until(120)}))["executionArn"]
        deadline = time.monotonic() + 30
        while not any(e["type"] == "WaitStateEntered" for e in sfn.get_execution_history(
                executionArn=mine)["events"]) and time.monotonic() < deadline:  # fmt: skip
            time.sleep(0.05)
        stopped = subprocess.run(_cli(settings.home, "workflow", "stop", mine),
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr
        assert "ABORTED" in stopped.stdout
        described = sfn.describe_execution(executionArn=mine)
        assert described["status"] == "ABORTED" and "cause" not in described  # none given
    finally:
        stop_console(proc)


def test_stop_request_is_read_at_most_every_poll_interval(settings: Settings) -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:m:polled"
    now = [100.0]
    with closing(db.connect(settings.db_path)) as conn:
        records.create_execution(conn, arn=arn, name="polled", state_machine="m",
                                 execution_input={}, definition="{}",
                                 started_at=dt.datetime.now(dt.UTC))  # fmt: skip
        signal = records.StopRequest(conn, arn, clock=lambda: now[0])
        assert records.request_stop(conn, arn, error="E", cause="C")
        assert not signal.is_set()  # not read yet: the first read comes one interval later
        now[0] += records.STOP_POLL_SECONDS
        assert signal.is_set() and (signal.error, signal.cause) == ("E", "C")
        records.finish_execution(conn, arn, status="SUCCEEDED", output={}, error=None,
                                 cause=None, stopped_at=dt.datetime.now(dt.UTC))  # fmt: skip
        assert not records.request_stop(conn, arn)  # only a RUNNING execution takes one


def test_stopping_an_unknown_or_finished_execution_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(WorkflowError, match="ExecutionDoesNotExist"):
        stop_execution(settings, "nobody")
