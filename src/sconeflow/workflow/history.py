"""Execution history: listeners that receive each event as the engine emits it.

An event is a dict shaped like one entry of GetExecutionHistory's `events`:
`{"timestamp": datetime, "type": "TaskStateEntered", "id": 2, "previousEventId": 1,
"stateEnteredEventDetails": {...}}`. A listener is any callable taking that dict; an
exception it raises stops the execution and propagates to the caller, because history
that silently lost events would mislead whoever reads it. The workspace's own listener,
which writes each event to the db, is `sconeflow.executions.records.HistoryWriter`.

A Distributed Map's child workflow executions have histories of their own (AWS: each is
an execution of the state machine `<machine>/<label>`). `run_execution(children=...)`
takes a factory that is called with a `ChildExecution` as each one starts (or is redriven,
when its Map Run is) and returns the listener for that child's events; its last event
(ExecutionSucceeded, ExecutionFailed...) says how it ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]


@dataclass(frozen=True)
class ChildExecution:
    """A Distributed Map's child workflow execution, as it starts."""

    arn: str  # arn:aws:states:REGION:ACCOUNT:execution:MACHINE/LABEL:NAME
    name: str
    state_machine: str  # MACHINE/LABEL
    map_run_arn: str  # arn:aws:states:REGION:ACCOUNT:mapRun:MACHINE/LABEL:ID
    parent_arn: str
    execution_type: str  # STANDARD | EXPRESS
    input: Any
    definition: dict[str, Any]  # the ItemProcessor it runs
    start_date: Any  # datetime
    # > 0: a redrive of this existing execution (a Map Run redriven with its parent), whose
    # history continues after an ExecutionRedriven event; 0: a new execution.
    redrive_count: int = 0


ChildListeners = Callable[[ChildExecution], Callable[[Event], None]]


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
