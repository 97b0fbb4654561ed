"""Execution history: listeners that receive each event as the engine emits it.

An event is a dict shaped like one entry of GetExecutionHistory's `events`:
`{"timestamp": datetime, "type": "TaskStateEntered", "id": 2, "previousEventId": 1,
"stateEnteredEventDetails": {...}}`. A listener is any callable taking that dict; an
exception it raises stops the execution and propagates to the caller, because history
that silently lost events would mislead whoever reads it. The workspace's own listener,
which writes each event to the db, is `sconeflow.executions.records.HistoryWriter`.
"""

from __future__ import annotations

from typing import Any

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
