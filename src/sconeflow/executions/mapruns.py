"""Where a redrive starts, read from the record: the top-level state the execution failed
in, with its input, and when that state is a Distributed Map, the Map Run it redrives.

AWS (developer guide, "Redriving Map Runs"; API reference, RedriveExecution): a redriven
parent "redrives all the unsuccessful states, including Distributed Map", and a redriven
Map Run restarts its unsuccessful child workflow executions: FAILED, ABORTED or TIMED_OUT
ones, a STANDARD child redriven (same ARN, from its failed state), an EXPRESS one started
again. Those that succeeded are not run again. "If the Map Run wasn't started in the
original execution attempt", the redrive starts it; so does this module where the Map Run
failed reading its items (the guide's example: no permission to read them), and where it
succeeded and the state failed after it (on its output), for nothing of it failed.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from sconeflow.executions import records
from sconeflow.workflow import PriorChild, PriorMapRun, StateMachine
from sconeflow.workflow.clock import iso_millis
from sconeflow.workflow.items import ITEM_READER_FAILED

_STARTS = ("MapRunStarted", "MapRunRedriven")
_ENDS = ("MapRunSucceeded", "MapRunFailed", "MapRunAborted")


def failed_state(events: Sequence[Mapping[str, Any]]) -> tuple[str | None, Any]:
    """The top-level state an execution failed in, and its input, from its history.

    Events of the top level chain through previousEventId (branches and Map iterations
    hang off that chain), so walking back from the last event finds the top-level state
    that was running when the execution failed.
    """
    by_id = {e["id"]: e for e in events}
    event = events[-1] if events else None
    while event is not None:
        if str(event["type"]).endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            return str(details["name"]), json.loads(details.get("input") or "{}")
        event = by_id.get(event["previousEventId"])
    return None, None  # it ended before entering a state: a redrive starts from StartAt


def prior_map_run(
    conn: sqlite3.Connection, machine: StateMachine, events: Sequence[Mapping[str, Any]],
    state: str | None,
) -> PriorMapRun | None:  # fmt: skip
    """The Map Run that a redrive from `state` redrives: the last one the state's last
    entry started, with its children as recorded; None when the redrive starts a new
    one (or `state` is no Distributed Map)."""
    target = machine.states.get(state or "")
    if target is None or target.distributed is None:
        return None
    entered = max((i for i, e in enumerate(events) if e["type"] == "MapStateEntered"
                   and e["stateEnteredEventDetails"]["name"] == state), default=-1)  # fmt: skip
    arn, ending = None, None
    for event in events[entered + 1 :]:
        kind = event["type"]
        if kind in _STARTS:
            arn, ending = _details(event)["mapRunArn"], None
        elif kind in _ENDS:
            ending = event
    if arn is None:
        return None  # it never started one: the redrive starts it
    if ending is not None and (ending["type"] == "MapRunSucceeded"
                               or _details(ending).get("error") == ITEM_READER_FAILED):  # fmt: skip
        return None
    redrives = sum(1 for e in events if e["type"] == "MapRunRedriven"
                   and _details(e)["mapRunArn"] == arn)  # fmt: skip
    children = tuple(_prior_child(conn, r) for r in records.read_map_run_children(conn, arn))
    return PriorMapRun(state=str(state), arn=arn, redrive_count=redrives, children=children)


def _prior_child(conn: sqlite3.Connection, record: records.ExecutionRecord) -> PriorChild:
    output = None
    state, state_input = None, None
    if record.status == "SUCCEEDED":
        output = None if record.output is None else json.loads(record.output)
    else:
        state, state_input = failed_state(records.read_history(conn, record.arn))
    return PriorChild(
        input=json.loads(record.input), status=record.status, output=output,
        error=record.error, cause=record.cause, arn=record.arn, name=record.name,
        start=_millis(record.started_at), stop=_millis(record.stopped_at),
        redrive_count=record.redrive_count, failed_state=state, state_input=state_input,
    )  # fmt: skip


def _millis(stamp: str | None) -> str:
    """A recorded time (isoformat) as the engine writes a child's dates: ...T00:00:00.000Z."""
    if not stamp:
        return ""
    return iso_millis(dt.datetime.fromisoformat(stamp))


def _details(event: Mapping[str, Any]) -> Any:
    return next((v for k, v in event.items() if k.endswith("EventDetails")), None) or {}
