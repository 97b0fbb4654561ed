"""The data pipeline every state shares (spec: "Input and Output Processing"):
raw input -> InputPath -> Parameters -> the state's work -> ResultSelector -> ResultPath
(against the raw input) -> OutputPath, and the Entered/Exited history events around it.
`effective_input` and `finish` are that pipeline; the states do only the work in between."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .data import TRUNCATED, dumps, within_quota
from .errors import DATA_LIMIT_EXCEEDED, RESULT_PATH_MATCH_FAILURE, RUNTIME, StatesFailure
from .machine import State
from .paths import PathNotFound, bracket_notation, parse_reference_path, set_path
from .run import Frame, Run


def enter(run: Run, state: State, data: Any, frame: Frame) -> None:
    frame.entered = run.emit(
        frame,
        state.type + "StateEntered",
        "stateEnteredEventDetails",
        {"name": state.name, "input": frame.json_of(data), "inputDetails": TRUNCATED},
    )


def exit_state(run: Run, state: State, output: Any, frame: Frame) -> None:
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


def effective_input(state: State, data: Any, ctx: Any) -> Any:
    """InputPath then Parameters (spec: "InputPath, Parameters...")."""
    if state.input_path_null:
        value: Any = {}
    elif state.input_path is None:
        value = data
    else:
        value = select(state.input_path, state.input_path_text, data)
    if state.parameters is not None:
        value = state.parameters(value, ctx)
    return value


def finish(state: State, data: Any, result: Any, ctx: Any) -> Any:
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
        return select(state.output_path, state.output_path_text, output)
    return output


def output_of(state: State, value: Any) -> Any:
    """OutputPath alone, for the states without a result (Choice, Wait, Succeed)."""
    if state.output_path_null:
        return {}
    if state.output_path is not None:
        return select(state.output_path, state.output_path_text, value)
    return value


def select(getter: Callable[[Any], Any], text: str, data: Any) -> Any:
    try:
        return getter(data)
    except PathNotFound as err:
        steps = parse_reference_path(text)
        where = bracket_notation(steps) if steps is not None else text
        raise StatesFailure(
            RUNTIME, f"Invalid path '{text}' : No results for path: {where}"
        ) from err
