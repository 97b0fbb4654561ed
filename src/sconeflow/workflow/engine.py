"""Run a compiled state machine: the state loop, the data flow, Retry/Catch, history events.

Every state goes through the same pipeline (spec: "Input and Output Processing"):
raw input -> InputPath -> Parameters -> the state's work -> ResultSelector -> ResultPath
(against the raw input) -> OutputPath. `_effective_input` and `_finish` are that pipeline;
the per-type functions in `_RUNNERS` do only the work in between.

Errors travel as `StatesFailure(error, cause)`; Task, Parallel and Map wrap their work in
`_guarded`, which applies Retry then Catch. Map iterations and Parallel branches run in
order on the calling thread by default (fastest for in-process handlers); `max_workers > 1`
runs them on a thread pool bounded by MaxConcurrency, for handlers that wait on I/O.
Outputs keep item/branch order either way, as in AWS.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock, iso_millis
from .data import MAX_PAYLOAD_BYTES, TRUNCATED, dumps, json_type, within_quota
from .errors import (
    ALL,
    DATA_LIMIT_EXCEEDED,
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    NO_CHOICE_MATCHED,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
    HandlerError,
    StatesFailure,
)
from .history import Event, InMemoryHistory
from .lambdas import Handler, new_request_id
from .machine import Retrier, State, StateMachine
from .paths import PathNotFound, bracket_notation, parse_reference_path, set_path
from .run import ExecutionTimedOut, Frame, Listener, Run
from .tasks import invoke

DEFAULT_ROLE_ARN = "arn:aws:iam::123456789012:role/sconeflow-stepfunctions"
_ABORTED = "States.Aborted"  # marks Map iterations skipped after another one failed


@dataclass
class ExecutionResult:
    """How an execution ended, as DescribeExecution reports it, plus its history."""

    status: str  # SUCCEEDED | FAILED | TIMED_OUT
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
) -> ExecutionResult:
    """Run one execution to its end and report it.

    `input` is the execution input (a JSON value; default `{}`). `handlers` maps Lambda
    function names to `lambda_handler(event, context)` callables. Events go to `listener`
    as they happen; without one they are collected into `ExecutionResult.events`.
    `start_at` starts from that state instead of StartAt (a redrive of a failed execution
    from `ExecutionResult.failed_state`); then `input` is that state's input and
    `execution_input` the execution's original input, which `$$.Execution.Input` keeps
    showing after a redrive, as on AWS. Raises HandlerError for unusable arguments;
    failures of the state machine itself are reported in the result, never raised.
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
    data = {} if input is None else input
    try:
        input_json = dumps(data)
    except (TypeError, ValueError, RecursionError) as err:
        raise HandlerError(f"the execution input must be JSON-serialisable: {err}") from err
    if not within_quota(input_json):
        raise HandlerError(
            f"the execution input exceeds AWS's {MAX_PAYLOAD_BYTES}-byte limit; pass less data"
        )
    clock = clock or SystemClock()
    collector = InMemoryHistory() if listener is None else None
    emit_to: Listener = collector if collector is not None else listener  # type: ignore[assignment]
    name = name or new_request_id()
    arn = f"arn:aws:states:{machine.region}:{machine.account}:execution:{machine.name}:{name}"
    started = clock.now()
    context = {
        "Execution": {
            "Id": arn,
            "Input": data if execution_input is _SAME else execution_input,
            "Name": name,
            "RoleArn": role_arn,
            "StartTime": iso_millis(started),
        },
        "StateMachine": {"Id": machine.arn, "Name": machine.name},
    }
    deadline = (
        started + dt.timedelta(seconds=machine.timeout_seconds) if machine.timeout_seconds else None
    )
    run = Run(machine, handlers, clock, emit_to, context, max_workers, deadline)
    top = Frame(0)
    run.emit(
        top,
        "ExecutionStarted",
        "executionStartedEventDetails",
        {"input": input_json, "inputDetails": TRUNCATED, "roleArn": role_arn},
    )
    status, output, error, cause, failed = "SUCCEEDED", None, None, None, None
    try:
        output = _run_states(run, machine, data, top, start_at)
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


def _run_states(
    run: Run, machine: StateMachine, data: Any, frame: Frame, start: str | None = None
) -> Any:
    """The state loop of one (sub-)machine; returns its final output."""
    name: str | None = start or machine.start_at
    states = machine.states
    while name is not None:
        if run.deadline is not None and run.clock.now() >= run.deadline:
            raise ExecutionTimedOut
        state = states[name]
        try:
            data, name = _RUNNERS[state.type](run, state, data, frame)
        except StatesFailure as failure:
            if failure.state is None:
                failure.state, failure.entered_id = state.name, frame.entered
            raise
    return data


# --- the shared data pipeline -------------------------------------------------------------


def _enter(run: Run, state: State, data: Any, frame: Frame) -> None:
    frame.entered = run.emit(
        frame,
        state.type + "StateEntered",
        "stateEnteredEventDetails",
        {"name": state.name, "input": frame.json_of(data), "inputDetails": TRUNCATED},
    )


def _exit(run: Run, state: State, output: Any, frame: Frame) -> None:
    output_json = frame.json_of(output)
    if not within_quota(output_json):
        raise StatesFailure(
            DATA_LIMIT_EXCEEDED,
            f"The state/task '{state.name}' returned a result with a size "
            "exceeding the maximum number of bytes service limit.",
        )
    run.emit(
        frame,
        state.type + "StateExited",
        "stateExitedEventDetails",
        {"name": state.name, "output": output_json, "outputDetails": TRUNCATED},
    )


def _effective_input(state: State, data: Any, ctx: Any) -> Any:
    """InputPath then Parameters (spec: "InputPath, Parameters...")."""
    if state.input_path_null:
        value: Any = {}
    elif state.input_path is None:
        value = data
    else:
        value = _select(state.input_path, state.input_path_text, data)
    if state.parameters is not None:
        value = state.parameters(value, ctx)
    return value


def _finish(state: State, data: Any, result: Any, ctx: Any) -> Any:
    """ResultSelector, ResultPath (against the raw input), then OutputPath."""
    if state.result_selector is not None:
        result = state.result_selector(result, ctx)
    steps = state.result_path
    if steps is None:
        output = data
    elif not steps:
        output = result
    else:
        try:
            output = set_path(data, steps, result)
        except ValueError as err:
            raise StatesFailure(
                RESULT_PATH_MATCH_FAILURE,
                f"Unable to apply ResultPath "
                f"'{bracket_notation(steps)}' to input {dumps(data)}: {err}",
            ) from err
    if state.output_path_null:
        return {}
    if state.output_path is not None:
        return _select(state.output_path, state.output_path_text, output)
    return output


def _output(state: State, value: Any) -> Any:
    """OutputPath alone, for the states without a result (Choice, Wait, Succeed)."""
    if state.output_path_null:
        return {}
    if state.output_path is not None:
        return _select(state.output_path, state.output_path_text, value)
    return value


def _select(getter: Callable[[Any], Any], text: str, data: Any) -> Any:
    try:
        return getter(data)
    except PathNotFound as err:
        steps = parse_reference_path(text)
        where = bracket_notation(steps) if steps is not None else text
        raise StatesFailure(
            RUNTIME, f"Invalid path '{text}' : No results for path: {where}"
        ) from err


# --- Retry and Catch (spec: "Error Handling") ---------------------------------------------


def error_matches(names: tuple[str, ...], error: str | None) -> bool:
    """Whether an ErrorEquals list matches an error name, with AWS's wildcard rules.

    States.ALL matches everything but the terminal States.Runtime and
    States.DataLimitExceeded; States.TaskFailed matches the same minus States.Timeout.
    """
    for name in names:
        if name == error:
            return True
        wildcard = name in (ALL, TASK_FAILED) and error not in (RUNTIME, DATA_LIMIT_EXCEEDED)
        if wildcard and (name == ALL or error != TIMEOUT):
            return True
    return False


def retry_delay(retrier: Retrier, attempt: int, rng: random.Random) -> float:
    """Seconds before retry number `attempt + 1`: IntervalSeconds * BackoffRate**attempt,
    capped by MaxDelaySeconds, and drawn uniformly below that with JitterStrategy FULL."""
    delay = retrier.interval * retrier.backoff**attempt
    if retrier.max_delay is not None:
        delay = min(delay, retrier.max_delay)
    if retrier.jitter == "FULL":
        delay = rng.uniform(0, delay)
    return delay


def _guarded(
    run: Run, state: State, data: Any, frame: Frame, attempt: Callable[[int], Any]
) -> tuple[Any, str | None]:
    """Run `attempt(retry_count)` under the state's Retry and Catch; returns (output, next)."""
    counts = [0] * len(state.retry)
    retries = 0
    while True:
        try:
            return attempt(retries), state.next
        except StatesFailure as failure:
            if failure.error == RUNTIME:
                raise  # never retried nor caught (AWS)
            # Only the first retrier whose ErrorEquals matches applies (spec: "Retry").
            matching = (
                k for k, r in enumerate(state.retry) if error_matches(r.errors, failure.error)
            )
            i = next(matching, -1)
            if i >= 0 and counts[i] < state.retry[i].max_attempts:
                run.sleep(retry_delay(state.retry[i], counts[i], run.rng))
                counts[i] += 1
                retries += 1
                continue
            for catcher in state.catch:
                if error_matches(catcher.errors, failure.error):
                    error_output = {"Error": failure.error, "Cause": failure.cause}
                    if catcher.result_path is None:
                        output = data
                    else:
                        try:
                            output = set_path(data, catcher.result_path, error_output)
                        except ValueError as err:
                            raise StatesFailure(RESULT_PATH_MATCH_FAILURE, str(err)) from err
                    return output, catcher.next
            raise


# --- the states ----------------------------------------------------------------------------


def _run_pass(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Pass (spec: "Pass State"): Result, or the effective input, goes to ResultPath."""
    _enter(run, state, data, frame)
    ctx = run.state_context(state)
    effective = _effective_input(state, data, ctx)
    result = state.result if state.has_result else effective
    output = _finish(state, data, result, ctx)
    _exit(run, state, output, frame)
    return output, state.next


def _run_task(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Task (spec: "Task State") for Lambda resources, under Retry/Catch."""
    _enter(run, state, data, frame)

    def attempt(retry_count: int) -> Any:
        ctx = run.state_context(state, retry_count)
        effective = _effective_input(state, data, ctx)
        result = invoke(run, state, effective, frame, _task_timeout(state, data))
        output = _finish(state, data, result, ctx)
        return output

    output, nxt = _guarded(run, state, data, frame, attempt)
    _exit(run, state, output, frame)
    return output, nxt


def _task_timeout(state: State, data: Any) -> int | None:
    """TimeoutSeconds, or TimeoutSecondsPath read from the raw state input."""
    if state.timeout_path is None:
        return state.timeout_seconds
    timeout = _select(state.timeout_path, "TimeoutSecondsPath", data)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise StatesFailure(
            RUNTIME, f"TimeoutSecondsPath must select a positive integer, got {dumps(timeout)}"
        )
    return timeout


def _run_choice(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Choice (spec: "Choice State"): the first matching rule's Next, else Default."""
    _enter(run, state, data, frame)
    ctx = run.state_context(state)
    effective = _effective_input(state, data, ctx)
    for predicate, target in state.choices:
        if predicate(effective, ctx):
            nxt = target
            break
    else:
        if state.default is None:
            raise StatesFailure(NO_CHOICE_MATCHED, "No Matches!")
        nxt = state.default
    output = _output(state, effective)
    _exit(run, state, output, frame)
    return output, nxt


def _run_wait(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Wait (spec: "Wait State"): Seconds, Timestamp, or either read from the input."""
    _enter(run, state, data, frame)
    effective = _effective_input(state, data, None)
    seconds: float = 0.0
    if state.seconds is not None:
        seconds = state.seconds
    elif state.seconds_path is not None:
        value = _select(state.seconds_path, state.wait_path_text, effective)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise StatesFailure(
                RUNTIME,
                f"The SecondsPath parameter does not reference a non-negative integer: "
                f"{state.wait_path_text} = {dumps(value)}",
            )
        seconds = value
    else:
        from .choice import parse_timestamp

        stamp = state.timestamp
        if state.timestamp_path is not None:
            stamp = _select(state.timestamp_path, state.wait_path_text, effective)
        moment = parse_timestamp(stamp)
        if moment is None:
            raise StatesFailure(
                RUNTIME,
                f"The TimestampPath parameter does not reference a valid ISO-8601 "
                "extended offset date-time format string: "
                f"{state.wait_path_text} = {dumps(stamp)}",
            )
        seconds = max(0.0, (moment - run.clock.now()).total_seconds())
    run.sleep(seconds)
    output = _output(state, effective)
    _exit(run, state, output, frame)
    return output, state.next


def _run_succeed(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Succeed (spec: "Succeed State"): ends this (sub-)machine successfully."""
    _enter(run, state, data, frame)
    effective = _effective_input(state, data, None)
    output = _output(state, effective)
    _exit(run, state, output, frame)
    return output, None


def _run_fail(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Fail (spec: "Fail State"): Error/Cause, or ErrorPath/CausePath read from the input."""
    _enter(run, state, data, frame)
    ctx = run.state_context(state)
    error, cause = state.error, state.cause
    for attr, template in (("ErrorPath", state.error_path), ("CausePath", state.cause_path)):
        if template is None:
            continue
        try:
            value = template(data, ctx)
        except PathNotFound as err:
            raise StatesFailure(
                RUNTIME, f"Invalid path '{err.path}' : No results for path: {err.path}"
            ) from err
        if not isinstance(value, str):
            raise StatesFailure(
                RUNTIME, f"The {attr} field must select a string, got {dumps(value)}"
            )
        if attr == "ErrorPath":
            error = value
        else:
            cause = value
    raise StatesFailure(error, cause)


def _run_parallel(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Parallel (spec: "Parallel State"): every branch gets the effective input; the result
    is the array of branch outputs in branch order. The first failing branch fails the state."""
    _enter(run, state, data, frame)

    def attempt(retry_count: int) -> Any:
        ctx = run.state_context(state, retry_count)
        effective = _effective_input(state, data, ctx)
        run.emit(frame, "ParallelStateStarted")
        jobs = [(branch, effective) for branch in state.branches]
        outcomes = _fan_out(run, jobs, frame, limit=0)
        for outcome in outcomes:
            if isinstance(outcome, StatesFailure):
                run.emit(frame, "ParallelStateFailed")
                raise outcome
        run.emit(frame, "ParallelStateSucceeded")
        return _finish(state, data, outcomes, ctx)

    output, nxt = _guarded(run, state, data, frame, attempt)
    _exit(run, state, output, frame)
    return output, nxt


def _run_map(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Map (spec: "Map State"): run the ItemProcessor on each item of ItemsPath; the result
    is the array of outputs in item order. ToleratedFailureCount/Percentage let some
    iterations fail (their entries hold the error); past that, the state fails."""
    _enter(run, state, data, frame)
    assert state.iterator is not None  # machine.py sets it for every Map
    iterator = state.iterator

    def attempt(retry_count: int) -> Any:
        ctx = run.state_context(state, retry_count)
        effective = _effective_input(state, data, ctx)
        items = (
            effective
            if state.items_path is None
            else _select(state.items_path, state.items_path_text, effective)
        )
        if not isinstance(items, list):
            raise StatesFailure(
                RUNTIME,
                f"Map state input must be an array but was: {json_type(items)} "
                f"(ItemsPath '{state.items_path_text}')",
            )
        run.emit(frame, "MapStateStarted", "mapStateStartedEventDetails", {"length": len(items)})
        inputs = []
        for index, item in enumerate(items):
            if state.item_selector is None:
                inputs.append(item)
            else:
                item_ctx = dict(ctx or run.context)
                item_ctx["Map"] = {"Item": {"Index": index, "Value": item}}
                inputs.append(state.item_selector(effective, item_ctx))
        tolerant = state.tolerated_count is not None or state.tolerated_percentage is not None
        jobs = [(iterator, value) for value in inputs]
        outcomes = _fan_out(
            run,
            jobs,
            frame,
            limit=state.max_concurrency,
            map_name=state.name,
            stop_on_failure=not tolerant,
        )
        failures = [o for o in outcomes if isinstance(o, StatesFailure) and o.error != _ABORTED]
        if failures and not tolerant:
            run.emit(frame, "MapStateFailed")
            raise failures[0]
        if failures and _exceeds_tolerance(state, len(failures), len(items)):
            run.emit(frame, "MapStateFailed")
            raise StatesFailure(
                EXCEED_TOLERATED_FAILURE_THRESHOLD,
                "The specified tolerated failure threshold was exceeded",
            )
        run.emit(frame, "MapStateSucceeded")
        results = [
            {"Error": o.error, "Cause": o.cause} if isinstance(o, StatesFailure) else o
            for o in outcomes
        ]
        return _finish(state, data, results, ctx)

    output, nxt = _guarded(run, state, data, frame, attempt)
    _exit(run, state, output, frame)
    return output, nxt


def _exceeds_tolerance(state: State, failed: int, total: int) -> bool:
    if state.tolerated_count is not None and failed > state.tolerated_count:
        return True
    return (
        state.tolerated_percentage is not None and failed * 100 > state.tolerated_percentage * total
    )


def _fan_out(
    run: Run,
    jobs: list[tuple[StateMachine, Any]],
    frame: Frame,
    *,
    limit: int,
    map_name: str | None = None,
    stop_on_failure: bool = True,
) -> list[Any]:
    """Run sub-machines (branches or Map iterations); each outcome: an output or a StatesFailure."""
    stop = threading.Event()

    def one(index: int) -> Any:
        machine, value = jobs[index]
        sub = Frame(frame.last)
        if map_name is not None:
            if stop.is_set():
                run.emit(
                    sub,
                    "MapIterationAborted",
                    "mapIterationAbortedEventDetails",
                    {"name": map_name, "index": index},
                )
                return StatesFailure(_ABORTED)
            run.emit(
                sub,
                "MapIterationStarted",
                "mapIterationStartedEventDetails",
                {"name": map_name, "index": index},
            )
        try:
            output = _run_states(run, machine, value, sub)
        except StatesFailure as failure:
            if map_name is not None:
                run.emit(
                    sub,
                    "MapIterationFailed",
                    "mapIterationFailedEventDetails",
                    {"name": map_name, "index": index},
                )
            if stop_on_failure:
                stop.set()
            return failure
        if map_name is not None:
            run.emit(
                sub,
                "MapIterationSucceeded",
                "mapIterationSucceededEventDetails",
                {"name": map_name, "index": index},
            )
        return output

    workers = min(run.max_workers, limit or len(jobs), len(jobs))
    if workers <= 1:
        outcomes = []
        for i in range(len(jobs)):
            outcome = one(i)
            outcomes.append(outcome)
            if isinstance(outcome, StatesFailure) and stop_on_failure:
                break
        return outcomes
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(jobs))))


_RUNNERS: dict[str, Callable[[Run, State, Any, Frame], tuple[Any, str | None]]] = {
    "Pass": _run_pass,
    "Task": _run_task,
    "Choice": _run_choice,
    "Wait": _run_wait,
    "Succeed": _run_succeed,
    "Fail": _run_fail,
    "Parallel": _run_parallel,
    "Map": _run_map,
}
