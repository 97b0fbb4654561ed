"""kill -9 the console while 50 executions run, restart it: every execution is either
finished with its true history or ABORTED and redrivable; none is lost, none stays RUNNING.

Real console processes, a real SIGKILL, the real workspace SQLite file, boto3 clients.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console_support import client, start_console, stop_console
from sfn_script import ROLE, until

pytestmark = pytest.mark.slow

HOLD = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Pass", "Result": "ok", "ResultPath": "$.first", "Next": "Route"},
        "Route": {"Type": "Choice", "Choices": [
            {"Variable": "$.until", "IsPresent": True, "Next": "Hold"}], "Default": "Done"},
        "Hold": {"Type": "Wait", "TimestampPath": "$.until", "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "done", "ResultPath": "$.done", "End": True},
    },
}  # fmt: skip
COUNT = 50


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    return list(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])


def test_kill_9_the_console_mid_run_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc, url = start_console(home)
    sfn = client(url)
    machine = sfn.create_state_machine(name="hold", definition=json.dumps(HOLD),
                                       roleArn=ROLE)["stateMachineArn"]  # fmt: skip
    hold_until = until(6)
    arns = []
    for i in range(COUNT):  # every third finishes at once, the others wait in Hold
        payload = {"i": i} if i % 3 == 0 else {"i": i, "until": hold_until}
        arns.append(sfn.start_execution(stateMachineArn=machine, name=f"e{i:02d}",
                                        input=json.dumps(payload))["executionArn"])
    deadline = time.monotonic() + 30
    waiting = [a for i, a in enumerate(arns) if i % 3]
    while time.monotonic() < deadline:
        entered = [a for a in waiting if any(
            e.get("stateEnteredEventDetails", {}).get("name") == "Hold"
            for e in _history(sfn, a))]  # fmt: skip
        if len(entered) == len(waiting):
            break
        time.sleep(0.1)
    assert len(entered) == len(waiting)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    proc, url = start_console(home)  # the same workspace, a new process
    try:
        sfn = client(url)
        statuses = {a: sfn.describe_execution(executionArn=a) for a in arns}
        assert {d["status"] for d in statuses.values()} <= {"SUCCEEDED", "ABORTED"}
        listed = sfn.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]
        assert sorted(e["executionArn"] for e in listed) == sorted(arns)  # none lost
        aborted = []
        for i, arn in enumerate(arns):
            events = _history(sfn, arn)
            ids = [e["id"] for e in events]
            assert ids == list(range(1, len(ids) + 1)), arn  # no hole in the history
            assert events[0]["type"] == "ExecutionStarted"
            if statuses[arn]["status"] == "SUCCEEDED":
                assert i % 3 == 0 and events[-1]["type"] == "ExecutionSucceeded"
                continue
            assert i % 3 and statuses[arn]["redriveStatus"] == "REDRIVABLE"
            assert events[-1]["type"] == "ExecutionAborted"
            assert events[-1]["previousEventId"] == events[-2]["id"]
            assert events[-2]["type"] == "WaitStateEntered"  # the true history, to the kill
            aborted.append(arn)
        assert len(aborted) == len(waiting)

        wait = (dt.datetime.fromisoformat(hold_until) - dt.datetime.now(dt.UTC)).total_seconds()
        time.sleep(max(0.0, wait + 0.2))
        for arn in aborted:
            sfn.redrive_execution(executionArn=arn)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [sfn.describe_execution(executionArn=a)["status"] for a in aborted]
            if "RUNNING" not in done:
                break
            time.sleep(0.1)
        assert done == ["SUCCEEDED"] * len(aborted)
        redriven = _history(sfn, aborted[0])
        assert "ExecutionRedriven" in [e["type"] for e in redriven]
        assert redriven[-1]["type"] == "ExecutionSucceeded"
    finally:
        stop_console(proc)


def test_sigterm_ends_running_executions_aborted(tmp_path: Path) -> None:
    """A console stopped cleanly ends what it runs ABORTED itself, with ExecutionAborted."""
    home = tmp_path / "home"
    proc, url = start_console(home)
    sfn = client(url)
    machine = sfn.create_state_machine(name="hold", definition=json.dumps(HOLD),
                                       roleArn=ROLE)["stateMachineArn"]  # fmt: skip
    arn = sfn.start_execution(stateMachineArn=machine, name="long",
                              input=json.dumps({"until": until(120)}))["executionArn"]
    while not any(e["type"] == "WaitStateEntered" for e in _history(sfn, arn)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    import sqlite3

    conn = sqlite3.connect(home / "sconeflow.db")  # raw: no recovery could have done it
    (status,) = conn.execute("SELECT status FROM executions WHERE arn = ?", (arn,)).fetchone()
    (last,) = conn.execute("SELECT type FROM history_events WHERE execution_arn = ? "
                           "ORDER BY id DESC LIMIT 1", (arn,)).fetchone()  # fmt: skip
    conn.close()
    assert (status, last) == ("ABORTED", "ExecutionAborted")
