"""The run state of one execution and the state loop, shared by every module that runs a
state: `Run` holds what every state of the execution sees (the machine, the handlers, the
clock, the history listener, the context object, the runner of each state type), `Frame`
one line of history (the top level, a Parallel branch or a Map iteration), and
`run_states` walks a (sub-)machine from state to state. The state runners are handed in
by engine.py (`RUNNERS`), so that Parallel and Map can run sub-machines without an import
cycle."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .clock import Clock, iso_millis
from .data import TRUNCATED, dumps
from .errors import RUNTIME, StatesFailure
from .history import Event
from .lambdas import Handler
from .machine import State, StateMachine
from .variables import CURRENT, Scope

MAX_HISTORY_EVENTS = 25_000  # AWS's quota on one execution's history

Listener = Callable[[Event], None]
# (run, state, raw input, frame) -> (output, next state or None)
StateRunner = Callable[["Run", State, Any, "Frame"], tuple[Any, str | None]]
_NOTHING = object()
_STOP_POLL_SECONDS = 0.1


class StopSignal(Protocol):
    """What run_execution's `stop` needs: a threading.Event works. A signal may also carry
    `error` and `cause` attributes (StopExecution's), which the ExecutionAborted event then
    records; without them the cause is STOPPED_CAUSE."""

    def is_set(self) -> bool: ...


STOPPED_CAUSE = "the execution was stopped"

_RNG = random.Random()  # retry jitter; seeding one per execution cost 0.1 ms in profiles


class ExecutionAborted(Exception):
    """A stop was requested (StopExecution, a signal to the runner): the execution ends
    ABORTED in the state it was about to run, never caught by Retry or Catch."""

    def __init__(self, state: str | None, cause: str | None, error: str | None = None) -> None:
        super().__init__(cause)
        self.state, self.cause, self.error = state, cause, error


class ExecutionTimedOut(Exception):
    """The execution's own TimeoutSeconds ran out."""


class Frame:
    """One line of history: the top level, a Parallel branch or a Map iteration."""

    __slots__ = ("cached", "cached_json", "entered", "last", "scope")

    def __init__(self, last: int, scope: Scope | None = None) -> None:
        self.last = last  # id of the previous event in this line (previousEventId)
        self.scope = scope if scope is not None else Scope()  # the variables this line sees
        self.entered = 0  # id of the current state's Entered event
        # The last value serialised in this line and its JSON: a state's output is the next
        # state's input, and a Task's OutputPath often selects the handler's result, so the
        # same object is written to history two or three times. Values are never mutated
        # in place, so identity is a safe cache key.
        self.cached: Any = _NOTHING
        self.cached_json = ""

    def json_of(self, value: Any) -> str:
        if value is not self.cached:
            self.cached, self.cached_json = value, dumps(value)
        return self.cached_json

    def remember(self, value: Any, text: str) -> None:
        self.cached, self.cached_json = value, text


class Run:
    """Everything one execution shares across its states."""

    def __init__(
        self,
        machine: StateMachine,
        handlers: Mapping[str, Handler],
        clock: Clock,
        listener: Listener,
        context: dict[str, Any],
        max_workers: int,
        deadline: dt.datetime | None,
        runners: Mapping[str, StateRunner],
        stop: StopSignal | None = None,
        *,
        store: Any = None,
        children: Any = None,
        spawn: Callable[..., Any] | None = None,
        redrive_map_run: Any = None,
    ) -> None:
        self.machine = machine
        self.handlers = handlers
        self.clock = clock
        self.listener = listener
        self.context = context
        self.uses_context = machine.uses_context
        self.max_workers = max_workers
        self.deadline = deadline
        self.count = 0
        self.lock = threading.Lock() if max_workers > 1 else None
        self.rng = _RNG
        self.runners = runners  # state type -> its runner (engine.RUNNERS)
        self.stop = stop  # set from outside to end the execution ABORTED
        # Distributed Map: the object store (items.ObjectStore), the factory of child
        # executions' listeners (history.ChildListeners) and the engine's own function
        # that runs one execution (engine.execute), handed in like `runners`.
        self.store = store
        self.children = children
        self.spawn = spawn
        # The Map Run a redrive of this execution redrives (maprun.PriorMapRun), until the
        # Distributed Map state that started it takes it.
        self.redrive_map_run = redrive_map_run

    def emit(self, frame: Frame, kind: str, key: str | None = None, details: Any = None) -> int:
        """Record one history event; fails the execution at AWS's 25,000-event quota."""
        if self.lock is not None:
            with self.lock:
                return self._emit(frame, kind, key, details)
        return self._emit(frame, kind, key, details)

    def _emit(self, frame: Frame, kind: str, key: str | None, details: Any) -> int:
        if self.count >= MAX_HISTORY_EVENTS - 1 and not kind.startswith("Execution"):
            raise StatesFailure(
                RUNTIME, f"The execution reached the limit of {MAX_HISTORY_EVENTS} history events"
            )
        self.count += 1
        event: Event = {
            "timestamp": self.clock.now(),
            "type": kind,
            "id": self.count,
            "previousEventId": frame.last,
        }
        if key is not None:
            event[key] = details
        frame.last = self.count
        self.listener(event)
        return self.count

    def sleep(self, seconds: float) -> None:
        """Sleep on the clock, but never past the execution's deadline."""
        if self.deadline is not None:
            left = (self.deadline - self.clock.now()).total_seconds()
            if seconds >= left:
                self.clock.sleep(max(left, 0.0))
                raise ExecutionTimedOut
        stop = self.stop
        if seconds > 0 and stop is None:
            self.clock.sleep(seconds)
        elif seconds > 0 and stop is not None:
            # In slices, so that a stop request ends a long Wait or retry back-off promptly:
            # the execution ends ABORTED in the state that was waiting, as StopExecution
            # leaves it on AWS (no StateExited), so a redrive waits again.
            while seconds > 0:
                if stop.is_set():
                    raise ExecutionAborted(None, getattr(stop, "cause", STOPPED_CAUSE),
                                           getattr(stop, "error", None))  # fmt: skip
                step = min(seconds, _STOP_POLL_SECONDS)
                self.clock.sleep(step)
                seconds -= step

    def state_context(self, state: State, retry_count: int | None = None) -> dict[str, Any] | None:
        """The context object `$$` for a state (built only if the definition reads it).

        `$$.State.RetryCount` exists only in the states that can retry (Task, Parallel, Map).
        """
        if not self.uses_context:
            return None
        ctx = dict(self.context)
        # Key order as AWS writes the context object into history.
        ctx["State"] = {"Name": state.name, "EnteredTime": iso_millis(self.clock.now())}
        if retry_count is not None:
            ctx["State"]["RetryCount"] = retry_count
        return ctx


def run_states(
    run: Run, machine: StateMachine, data: Any, frame: Frame, start: str | None = None
) -> Any:
    """The state loop of one (sub-)machine; returns its final output."""
    name: str | None = start or machine.start_at
    states = machine.states
    token = CURRENT.set(frame.scope)  # JSONPath `$name` paths read this line's variables
    try:
        while name is not None:
            if run.deadline is not None and run.clock.now() >= run.deadline:
                raise ExecutionTimedOut
            state = states[name]
            if run.stop is not None and run.stop.is_set():
                # Stopped on the way into `state`: record it as entered, as AWS's history
                # shows the state that was in progress when StopExecution came, so that a
                # redrive runs it again with this input.
                frame.entered = run.emit(
                    frame,
                    state.type + "StateEntered",
                    "stateEnteredEventDetails",
                    {"name": state.name, "input": frame.json_of(data), "inputDetails": TRUNCATED},
                )
                stop = run.stop
                raise ExecutionAborted(
                    state.name, getattr(stop, "cause", STOPPED_CAUSE), getattr(stop, "error", None)
                )
            try:
                data, name = run.runners[state.type](run, state, data, frame)
            except StatesFailure as failure:
                if failure.state is None:
                    failure.state, failure.entered_id = state.name, frame.entered
                raise
    finally:
        CURRENT.reset(token)
    return data
