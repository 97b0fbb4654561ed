"""Run a compiled state machine: `run_execution` and the table of state runners.

The modules behind it: `run` (the execution's shared state and the state loop),
`dataflow` (the InputPath -> Parameters -> ... -> OutputPath pipeline every state shares),
`recovery` (Retry and Catch), `states` (Pass, Task, Choice, Wait, Succeed, Fail) and
`fanout` (Parallel and Map). Errors travel as `StatesFailure(error, cause)`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock, iso_millis
from .data import MAX_PAYLOAD_BYTES, TRUNCATED, dumps, within_quota
from .errors import RUNTIME, TIMEOUT, HandlerError, StatesFailure
from .fanout import run_map, run_parallel
from .history import ChildListeners, Event, InMemoryHistory
from .lambdas import Handler, new_request_id
from .machine import StateMachine
from .maprun import PriorMapRun
from .recovery import error_matches, retry_delay
from .run import (
    ExecutionAborted,
    ExecutionTimedOut,
    Frame,
    Listener,
    Run,
    StateRunner,
    StopSignal,
    run_states,
)
from .states import run_choice, run_fail, run_pass, run_succeed, run_task, run_wait

__all__ = [
    "RUNNERS",
    "ExecutionResult",
    "error_matches",
    "execute",
    "retry_delay",
    "run_execution",
]

DEFAULT_ROLE_ARN = "arn:aws:iam::123456789012:role/sconeflow-stepfunctions"
EXECUTION_TYPES = ("STANDARD", "EXPRESS")
EXPRESS_MAX_SECONDS = 300  # AWS: an Express workflow runs for at most five minutes


@dataclass
class ExecutionResult:
    """How an execution ended, as DescribeExecution reports it, plus its history."""

    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    output: Any
    error: str | None
    cause: str | None
    execution_arn: str
    name: str
    start_date: dt.datetime
    stop_date: dt.datetime
    failed_state: str | None = None  # where a failure happened: the `start_at` for a redrive
    events: list[Event] = field(default_factory=list)  # filled when no listener was given


_SAME = object()  # sentinel: `execution_input` defaults to `input`


def run_execution(
    machine: StateMachine,
    input: Any = None,
    handlers: Mapping[str, Handler] | None = None,
    *,
    name: str | None = None,
    listener: Listener | None = None,
    clock: Clock | None = None,
    start_at: str | None = None,
    execution_input: Any = _SAME,
    role_arn: str = DEFAULT_ROLE_ARN,
    max_workers: int = 1,
    stop: StopSignal | None = None,
    store: Any = None,
    children: ChildListeners | None = None,
    execution_type: str = "STANDARD",
    redrive_count: int = 0,
    redrive_time: dt.datetime | None = None,
    redrive_map_run: PriorMapRun | None = None,
) -> ExecutionResult:
    """Run one execution to its end and report it.

    `input` is the execution input (a JSON value; default `{}`). `handlers` maps Lambda
    function names to `lambda_handler(event, context)` callables. Events go to `listener`
    as they happen; without one they are collected into `ExecutionResult.events`.
    `start_at` starts from that state instead of StartAt (a redrive of a failed execution
    from `ExecutionResult.failed_state`); then `input` is that state's input and
    `execution_input` the execution's original input, which `$$.Execution.Input` keeps
    showing after a redrive, as on AWS; `redrive_count` (n after n redrives) and
    `redrive_time` fill `$$.Execution.RedriveCount` and `RedriveTime`. `stop` (a
    threading.Event) ends the execution ABORTED before its next state, and cuts short a
    Wait or retry back-off in progress (a handler already running finishes first).

    `execution_type` is the state machine's type. "EXPRESS" runs as StartSyncExecution
    does: the ARN is `arn:aws:states:REGION:ACCOUNT:express:MACHINE:NAME:ID`,
    `$$.Execution` has no RedriveCount, the execution times out after five minutes at
    most, and it cannot be redriven. (Events still reach `listener`, as an Express
    workflow's history reaches CloudWatch Logs with logging at level ALL.)

    A Distributed Map reads and writes objects through `store` (items.ObjectStore);
    `children(child)` returns the listener of each of its child workflow executions
    (history.ChildExecution), whose events are dropped without it. With `start_at` at a
    Distributed Map, `redrive_map_run` (maprun.PriorMapRun: the Map Run that state started,
    as it was recorded) redrives that Map Run, as AWS does: the same Map Run ARN, a
    `MapRunRedriven` event instead of `MapRunStarted`, the children that succeeded not run
    again (their outputs reused), the others redriven.

    Raises HandlerError for unusable arguments; failures of the state machine itself are
    reported in the result, never raised.
    """
    handlers = handlers or {}
    missing = sorted(machine.function_names - set(handlers))
    if missing:
        raise HandlerError(
            f"no handler registered for Lambda function(s) {missing}; pass handlers="
            f"{{'{missing[0]}': module.lambda_handler}} (registered: {sorted(handlers)})"
        )
    if start_at is not None and start_at not in machine.states:
        raise HandlerError(
            f"start_at {start_at!r} is not a top-level state; use one of {sorted(machine.states)}"
        )
    if max_workers < 1:
        raise HandlerError(f"max_workers must be >= 1, got {max_workers}")
    if execution_type not in EXECUTION_TYPES:
        raise HandlerError(
            f"execution_type must be one of {list(EXECUTION_TYPES)}, got {execution_type!r}"
        )
    express = execution_type == "EXPRESS"
    if express and _has_distributed_map(machine):
        raise HandlerError(
            "a Distributed Map runs only in a STANDARD workflow (AWS: 'Distributed mode is "
            "supported in Standard workflows but not supported in Express workflows'); run "
            "the execution as STANDARD, or give the Map ProcessorConfig Mode INLINE"
        )
    if express and (start_at is not None or redrive_count):
        raise HandlerError(
            "an EXPRESS execution cannot be redriven (AWS redrives only STANDARD workflows); "
            "start a new execution instead"
        )
    if redrive_count < 0:
        raise HandlerError(f"redrive_count must be >= 0, got {redrive_count}")
    if redrive_map_run is not None:
        target = machine.states.get(start_at or machine.start_at)
        if target is None or target.distributed is None or target.name != redrive_map_run.state:
            raise HandlerError(
                f"redrive_map_run is the Map Run of state {redrive_map_run.state!r}, but the "
                f"execution starts at {start_at or machine.start_at!r}; pass "
                f"start_at={redrive_map_run.state!r} (a top-level Distributed Map)"
            )
    data = {} if input is None else input
    try:
        input_json = dumps(data)
    except (TypeError, ValueError, RecursionError) as err:
        raise HandlerError(f"the execution input must be JSON-serialisable: {err}") from err
    if not within_quota(input_json):
        raise HandlerError(
            f"the execution input exceeds AWS's {MAX_PAYLOAD_BYTES}-byte limit; pass less data"
        )
    if machine.uses_store and store is None:
        raise HandlerError(
            "the definition has a Distributed Map that reads or writes objects "
            "(ItemReader/ResultWriter); pass store= (anything with list/get/put, see "
            "sconeflow.workflow.items.ObjectStore)"
        )
    return execute(
        machine, data, input_json, handlers, name=name, listener=listener,
        clock=clock or SystemClock(), start_at=start_at,
        execution_input=data if execution_input is _SAME else execution_input,
        role_arn=role_arn, max_workers=max_workers, stop=stop, store=store, children=children,
        express=express, redrive_count=redrive_count, redrive_time=redrive_time,
        redrive_map_run=redrive_map_run,
    )  # fmt: skip


def execute(
    machine: StateMachine,
    data: Any,
    input_json: str,
    handlers: Mapping[str, Handler],
    *,
    name: str | None,
    listener: Listener | None,
    clock: Clock,
    start_at: str | None,
    execution_input: Any,
    role_arn: str,
    max_workers: int,
    stop: StopSignal | None,
    store: Any,
    children: ChildListeners | None,
    express: bool = False,
    redrive_count: int = 0,
    redrive_time: dt.datetime | None = None,
    redrive_map_run: PriorMapRun | None = None,
) -> ExecutionResult:
    """Run one execution whose arguments were checked: `run_execution` and each child
    workflow execution of a Distributed Map (distributed.py, through `Run.spawn`)."""
    collector = InMemoryHistory() if listener is None else None
    emit_to: Listener = collector if collector is not None else listener  # type: ignore[assignment]
    name = name or new_request_id()
    prefix = f"arn:aws:states:{machine.region}:{machine.account}"
    if express:
        arn = f"{prefix}:express:{machine.name}:{name}:{new_request_id()}"
    else:
        arn = f"{prefix}:execution:{machine.name}:{name}"
    started = clock.now()
    context = {
        "Execution": _execution_context(
            arn,
            execution_input,
            started,
            name,
            role_arn,
            None if express else redrive_count,
            redrive_time,
        ),
        "StateMachine": {"Id": machine.arn, "Name": machine.name},
    }
    timeout = machine.timeout_seconds
    if express:
        timeout = min(timeout or EXPRESS_MAX_SECONDS, EXPRESS_MAX_SECONDS)
    deadline = started + dt.timedelta(seconds=timeout) if timeout else None
    run = Run(machine, handlers, clock, emit_to, context, max_workers, deadline, RUNNERS,
              stop, store=store, children=children, spawn=execute,
              redrive_map_run=redrive_map_run)  # fmt: skip
    top = Frame(0)
    run.emit(
        top,
        "ExecutionStarted",
        "executionStartedEventDetails",
        {"input": input_json, "inputDetails": TRUNCATED, "roleArn": role_arn},
    )
    status, output, error, cause, failed = "SUCCEEDED", None, None, None, None
    try:
        output = run_states(run, machine, data, top, start_at)
        run.emit(
            top,
            "ExecutionSucceeded",
            "executionSucceededEventDetails",
            {"output": top.json_of(output), "outputDetails": TRUNCATED},
        )
    except StatesFailure as failure:
        status, error, cause, failed = "FAILED", failure.error, failure.cause, failure.state
        if error == RUNTIME and failure.state is not None:
            # AWS prefixes runtime causes with where they happened.
            cause = (
                f"An error occurred while executing the state '{failure.state}' "
                f"(entered at the event id #{failure.entered_id}). {cause}"
            )
        details = {k: v for k, v in (("error", error), ("cause", cause)) if v is not None}
        run.emit(top, "ExecutionFailed", "executionFailedEventDetails", details)
    except ExecutionAborted as aborted:
        status, error, cause, failed = "ABORTED", aborted.error, aborted.cause, aborted.state
        details = {k: v for k, v in (("error", error), ("cause", cause)) if v is not None}
        run.emit(top, "ExecutionAborted", "executionAbortedEventDetails", details)
    except ExecutionTimedOut:
        status, error = "TIMED_OUT", TIMEOUT
        run.emit(top, "ExecutionTimedOut", "executionTimedOutEventDetails", {"error": TIMEOUT})
    return ExecutionResult(
        status,
        output,
        error,
        cause,
        arn,
        name,
        started,
        clock.now(),
        failed,
        collector.events if collector is not None else [],
    )


def _has_distributed_map(machine: StateMachine) -> bool:
    for state in machine.states.values():
        if state.distributed is not None:
            return True
        inner = [*state.branches, *([state.iterator] if state.iterator else [])]
        if any(_has_distributed_map(m) for m in inner):
            return True
    return False


def _execution_context(
    arn: str,
    execution_input: Any,
    started: dt.datetime,
    name: str,
    role_arn: str,
    redrive_count: int | None,
    redrive_time: dt.datetime | None,
) -> dict[str, Any]:
    """`$$.Execution`, keys in AWS's order. A STANDARD execution has RedriveCount (0 until
    redriven) and, once redriven, RedriveTime; an EXPRESS one has neither."""
    execution: dict[str, Any] = {
        "Id": arn,
        "Input": execution_input,
        "StartTime": iso_millis(started),
        "Name": name,
        "RoleArn": role_arn,
    }
    if redrive_count is not None:
        execution["RedriveCount"] = redrive_count
        if redrive_count and redrive_time is not None:
            execution["RedriveTime"] = iso_millis(redrive_time)
    return execution


RUNNERS: dict[str, StateRunner] = {
    "Pass": run_pass,
    "Task": run_task,
    "Choice": run_choice,
    "Wait": run_wait,
    "Succeed": run_succeed,
    "Fail": run_fail,
    "Parallel": run_parallel,
    "Map": run_map,
}
