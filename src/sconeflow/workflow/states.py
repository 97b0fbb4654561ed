"""The states without sub-machines: Pass, Task, Choice, Wait, Succeed, Fail. Each takes
(run, state, raw input, frame) and returns (output, next state name or None)."""

from __future__ import annotations

from typing import Any

from .choice import parse_timestamp
from .data import dumps
from .dataflow import effective_input, enter, exit_state, finish, output_of, select
from .errors import NO_CHOICE_MATCHED, RUNTIME, StatesFailure
from .machine import State
from .paths import PathNotFound
from .recovery import guarded
from .run import Frame, Run
from .tasks import invoke


def run_pass(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Pass (spec: "Pass State"): Result, or the effective input, goes to ResultPath."""
    enter(run, state, data, frame)
    ctx = run.state_context(state)
    effective = effective_input(state, data, ctx)
    result = state.result if state.has_result else effective
    output = finish(state, data, result, ctx)
    exit_state(run, state, output, frame)
    return output, state.next


def run_task(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Task (spec: "Task State") for Lambda resources, under Retry/Catch."""
    enter(run, state, data, frame)

    def attempt(retry_count: int) -> Any:
        ctx = run.state_context(state, retry_count)
        effective = effective_input(state, data, ctx)
        result = invoke(run, state, effective, frame, _task_timeout(state, data))
        output = finish(state, data, result, ctx)
        return output

    output, nxt = guarded(run, state, data, frame, attempt)
    exit_state(run, state, output, frame)
    return output, nxt


def _task_timeout(state: State, data: Any) -> int | None:
    """TimeoutSeconds, or TimeoutSecondsPath read from the raw state input."""
    if state.timeout_path is None:
        return state.timeout_seconds
    timeout = select(state.timeout_path, "TimeoutSecondsPath", data)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise StatesFailure(
            RUNTIME, f"TimeoutSecondsPath must select a positive integer, got {dumps(timeout)}"
        )
    return timeout


def run_choice(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Choice (spec: "Choice State"): the first matching rule's Next, else Default."""
    enter(run, state, data, frame)
    ctx = run.state_context(state)
    effective = effective_input(state, data, ctx)
    for predicate, target in state.choices:
        if predicate(effective, ctx):
            nxt = target
            break
    else:
        if state.default is None:
            raise StatesFailure(NO_CHOICE_MATCHED, "No Matches!")
        nxt = state.default
    output = output_of(state, effective)
    exit_state(run, state, output, frame)
    return output, nxt


def run_wait(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Wait (spec: "Wait State"): Seconds, Timestamp, or either read from the input."""
    enter(run, state, data, frame)
    effective = effective_input(state, data, None)
    seconds: float = 0.0
    if state.seconds is not None:
        seconds = state.seconds
    elif state.seconds_path is not None:
        value = select(state.seconds_path, state.wait_path_text, effective)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise StatesFailure(
                RUNTIME,
                f"The SecondsPath parameter does not reference a non-negative integer: "
                f"{state.wait_path_text} = {dumps(value)}",
            )
        seconds = value
    else:
        stamp = state.timestamp
        if state.timestamp_path is not None:
            stamp = select(state.timestamp_path, state.wait_path_text, effective)
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
    output = output_of(state, effective)
    exit_state(run, state, output, frame)
    return output, state.next


def run_succeed(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Succeed (spec: "Succeed State"): ends this (sub-)machine successfully."""
    enter(run, state, data, frame)
    effective = effective_input(state, data, None)
    output = output_of(state, effective)
    exit_state(run, state, output, frame)
    return output, None


def run_fail(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Fail (spec: "Fail State"): Error/Cause, or ErrorPath/CausePath read from the input."""
    enter(run, state, data, frame)
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
