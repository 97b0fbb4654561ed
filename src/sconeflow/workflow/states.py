"""The states without sub-machines: Pass, Task, Choice, Wait, Succeed, Fail. Each takes
(run, state, raw input, frame) and returns (output, next state name or None), in either
query language: a JSONata state (`state.jsonata`) reads `$states` and its fields' expressions
instead of the JSONPath pipeline (dataflow.py)."""

from __future__ import annotations

from typing import Any

from .choice import parse_timestamp
from .data import dumps
from .dataflow import (
    apply_assign,
    effective_input,
    enter,
    evaluate,
    exit_state,
    finish,
    jsonata_output,
    jsonpath_assign,
    missing_path_cause,
    output_of,
    select,
    states_of,
)
from .errors import NO_CHOICE_MATCHED, RUNTIME, StatesFailure
from .jsonata import QUERY_EVALUATION_ERROR
from .machine import State
from .mapspec import PathValue
from .paths import PathNotFound
from .recovery import guarded
from .run import Frame, Run
from .tasks import invoke


def run_pass(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Pass (spec: "Pass State"): Result, or the effective input, goes to ResultPath.
    JSONata: Output (default: the input)."""
    enter(run, state, data, frame)
    ctx = run.state_context(state)
    if state.jsonata:
        output, pending = jsonata_output(run, state, frame, states_of(data, ctx), data)
    else:
        effective = effective_input(state, data, ctx)
        result = state.result if state.has_result else effective
        pending = jsonpath_assign(state.assign, result, ctx)
        output = finish(state, data, result, ctx)
    exit_state(run, state, output, frame, apply_assign(state, pending, frame))
    return output, state.next


def run_task(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Task (spec: "Task State") for Lambda resources, under Retry/Catch."""
    enter(run, state, data, frame)

    def attempt(retry_count: int) -> tuple[Any, Any]:
        ctx = run.state_context(state, retry_count)
        if state.jsonata:
            states = states_of(data, ctx)
            arguments = data
            if state.arguments is not None:
                arguments = evaluate(run, state, frame, state.arguments, states)
            timeout = _jsonata_seconds(run, state, frame, states, "TimeoutSeconds")
            heartbeat = _jsonata_seconds(run, state, frame, states, "HeartbeatSeconds")
            result = invoke(run, state, arguments, frame, timeout, heartbeat)
            states["result"] = result
            return jsonata_output(run, state, frame, states, result)
        effective = effective_input(state, data, ctx)
        timeout = _path_seconds(state.timeout_seconds, state.timeout_path, "Timeout", data, ctx)
        heartbeat = _path_seconds(
            state.heartbeat_seconds, state.heartbeat_path, "Heartbeat", data, ctx
        )
        result = invoke(run, state, effective, frame, timeout, heartbeat)
        pending = jsonpath_assign(state.assign, result, ctx)
        return finish(state, data, result, ctx), pending

    output, nxt, pending = guarded(run, state, data, frame, attempt)
    exit_state(run, state, output, frame, apply_assign(state, pending, frame))
    return output, nxt


def _path_seconds(
    literal: int | None, path: PathValue | None, kind: str, data: Any, ctx: Any
) -> int | None:
    """{kind}Seconds (JSONPath, kind Timeout or Heartbeat): the literal, or {kind}SecondsPath
    read from the raw state input, which must select a positive integer (spec: "Task
    State"); anything else fails the state with States.Runtime."""
    if path is None:
        return literal
    field = f"{kind}SecondsPath"
    value = select(path.getter, path.text, data, ctx, field)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise StatesFailure(RUNTIME, f"{field} must select a positive integer, got {dumps(value)}")
    return value


def _jsonata_seconds(
    run: Run, state: State, frame: Frame, states: dict[str, Any], field: str
) -> int | None:
    """TimeoutSeconds or HeartbeatSeconds (JSONata): a constant or an expression, which must
    come out as a positive integer (else States.QueryEvaluationError)."""
    template = state.fields.get(field)
    if template is None:
        return None
    value = evaluate(run, state, frame, template, states)
    return _whole_number(state, frame, field, value, minimum=1)


MAX_WAIT_SECONDS = 99_999_999  # AWS, "Wait workflow state": Seconds is 0 to 99999999


def _whole_number(
    state: State, frame: Frame, field: str, value: Any, *, minimum: int, maximum: int | None = None
) -> int:
    """A JSONata field that must come out as an integer (TimeoutSeconds, Seconds...)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    wrong = not isinstance(value, int) or isinstance(value, bool) or value < minimum
    if wrong or (maximum is not None and value > maximum):
        bound = f"an integer >= {minimum}" if maximum is None else (
            f"an integer from {minimum} to {maximum}"
        )  # fmt: skip
        raise StatesFailure(
            QUERY_EVALUATION_ERROR,
            f"An error occurred while executing the state '{state.name}' (entered at the "
            f"event id #{frame.entered}). The value of the field '{field}' must be {bound}, "
            f"got {dumps(value)}",
        )
    return int(value)


def run_choice(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Choice (spec: "Choice State"): the first matching rule's Next, else Default.

    A matched rule's own Assign (and, in JSONata, Output) apply; the state's own Assign and
    Output apply when Default is taken."""
    enter(run, state, data, frame)
    ctx = run.state_context(state)
    if state.jsonata:
        states = states_of(data, ctx)
        for i, rule in enumerate(state.choices):
            matched = evaluate(run, state, frame, rule.predicate, states)
            if not isinstance(matched, bool):
                raise StatesFailure(
                    QUERY_EVALUATION_ERROR,
                    f"An error occurred while executing the state '{state.name}' (entered at "
                    f"the event id #{frame.entered}). The Condition of Choices[{i}] must "
                    f"evaluate to true or false, got {dumps(matched)}",
                )
            if matched:
                output, pending = data, None
                if rule.output is not None:
                    output = evaluate(run, state, frame, rule.output, states)
                if rule.assign is not None:
                    pending = evaluate(run, state, frame, rule.assign, states)
                nxt = rule.next
                break
        else:
            nxt = _default(state)
            output, pending = jsonata_output(run, state, frame, states, data)
    else:
        effective = effective_input(state, data, ctx)
        for rule in state.choices:
            if rule.predicate(effective, ctx):
                nxt, pending = rule.next, jsonpath_assign(rule.assign, effective, ctx)
                break
        else:
            nxt, pending = _default(state), jsonpath_assign(state.assign, effective, ctx)
        output = output_of(state, effective, ctx)
    exit_state(run, state, output, frame, apply_assign(state, pending, frame))
    return output, nxt


def _default(state: State) -> str:
    if state.default is None:
        raise StatesFailure(NO_CHOICE_MATCHED, "No Matches!")
    return state.default


def run_wait(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Wait (spec: "Wait State"): Seconds, Timestamp, or either read from the input.

    The causes of a bad SecondsPath/TimestampPath value are AWS's words, which print the
    path and the raw value (`$.s == x`)."""
    enter(run, state, data, frame)
    pending = None
    if state.jsonata:
        states = states_of(data, run.state_context(state))
        seconds = _jsonata_wait(run, state, frame, states)
        run.sleep(seconds)
        output, pending = jsonata_output(run, state, frame, states, data)
        exit_state(run, state, output, frame, apply_assign(state, pending, frame))
        return output, state.next
    ctx = run.state_context(state)
    effective = effective_input(state, data, ctx)
    seconds = 0.0
    path = state.wait_path_text
    if state.seconds is not None:
        seconds = state.seconds
    elif state.seconds_path is not None:
        value = _wait_value(state.seconds_path, path, effective, ctx, "SecondsPath")
        if not isinstance(value, int) or isinstance(value, bool):
            raise StatesFailure(
                RUNTIME,
                "The SecondsPath parameter cannot be parsed as a long value: "
                f"{path} == {_raw(value)}",
            )
        if value < 0:
            raise StatesFailure(
                RUNTIME,
                f"The SecondsPath parameter references a negative value: {path} == {value}",
            )
        seconds = value
    else:
        stamp = state.timestamp
        if state.timestamp_path is not None:
            stamp = _wait_value(state.timestamp_path, path, effective, ctx, "TimestampPath")
        moment = parse_timestamp(stamp)
        if moment is None:
            raise StatesFailure(
                RUNTIME,
                f"The TimestampPath parameter does not reference a valid ISO-8601 "
                f"extended offset date-time format string: {path} == {_raw(stamp)}",
            )
        seconds = max(0.0, (moment - run.clock.now()).total_seconds())
    if state.assign is not None:
        pending = jsonpath_assign(state.assign, effective, ctx)
    run.sleep(seconds)
    output = output_of(state, effective, ctx)
    exit_state(run, state, output, frame, apply_assign(state, pending, frame))
    return output, state.next


def _jsonata_wait(run: Run, state: State, frame: Frame, states: dict[str, Any]) -> float:
    if "Seconds" in state.fields:
        value = evaluate(run, state, frame, state.fields["Seconds"], states)
        return _whole_number(state, frame, "Seconds", value, minimum=0, maximum=MAX_WAIT_SECONDS)
    stamp = evaluate(run, state, frame, state.fields["Timestamp"], states)
    moment = parse_timestamp(stamp)
    if moment is None:
        raise StatesFailure(
            QUERY_EVALUATION_ERROR,
            f"An error occurred while executing the state '{state.name}' (entered at the "
            f"event id #{frame.entered}). The value of the field 'Timestamp' must be an "
            f"ISO-8601 extended offset date-time string, got {dumps(stamp)}",
        )
    return max(0.0, (moment - run.clock.now()).total_seconds())


def _wait_value(getter: Any, path: str, data: Any, ctx: Any, field: str) -> Any:
    source = ctx if path.startswith("$$") else data
    try:
        return getter(source)
    except PathNotFound as err:
        if field == "SecondsPath":
            cause = f"The SecondsPath parameter does not reference an input value: {path}"
        else:
            cause = missing_path_cause(path, field, source)
        raise StatesFailure(RUNTIME, cause) from err


def _raw(value: Any) -> str:
    """A value as AWS prints it in Wait causes: strings bare, anything else as JSON."""
    return value if isinstance(value, str) else dumps(value)


def run_succeed(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Succeed (spec: "Succeed State"): ends this (sub-)machine successfully."""
    enter(run, state, data, frame)
    if state.jsonata:
        states = states_of(data, run.state_context(state))
        output, _ = jsonata_output(run, state, frame, states, data)
    else:
        ctx = run.state_context(state)
        output = output_of(state, effective_input(state, data, ctx), ctx)
    exit_state(run, state, output, frame)
    return output, None


def run_fail(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Fail (spec: "Fail State"): Error/Cause, or ErrorPath/CausePath read from the input
    (JSONata: Error and Cause may be expressions)."""
    enter(run, state, data, frame)
    ctx = run.state_context(state)
    if state.jsonata:
        states = states_of(data, ctx)
        found: dict[str, Any] = {}
        for field in ("Error", "Cause"):
            if field in state.fields:
                value = evaluate(run, state, frame, state.fields[field], states)
                if not isinstance(value, str):
                    raise StatesFailure(
                        QUERY_EVALUATION_ERROR,
                        f"An error occurred while executing the state '{state.name}' "
                        f"(entered at the event id #{frame.entered}). The field '{field}' "
                        f"must evaluate to a string, got {dumps(value)}",
                    )
                found[field] = value
        raise StatesFailure(found.get("Error"), found.get("Cause"))
    error, cause = state.error, state.cause
    for attr, template in (("ErrorPath", state.error_path), ("CausePath", state.cause_path)):
        if template is None:
            continue
        try:
            value = template(data, ctx)
        except PathNotFound as err:  # machine._dynamic reports the path as written
            raise StatesFailure(RUNTIME, missing_path_cause(err.path, attr, err.data)) from err
        if not isinstance(value, str):
            raise StatesFailure(
                RUNTIME, f"The {attr} field must select a string, got {dumps(value)}"
            )
        if attr == "ErrorPath":
            error = value
        else:
            cause = value
    raise StatesFailure(error, cause)
