"""The data pipeline every state shares, in its two query languages, and the Entered/Exited
history events around it.

* JSONPath (spec: "Input and Output Processing"): raw input -> InputPath -> Parameters ->
  the state's work -> ResultSelector -> ResultPath (against the raw input) -> OutputPath;
  `effective_input` and `finish` are that pipeline.
* JSONata (AWS: "Transforming data with JSONata"): `$states.input` -> Arguments -> the
  state's work (`$states.result`) -> Output; `evaluate` runs one JSONata field.

Either way `Assign` is computed with the output, from the values at state entry, and
applied after it (`apply_assign`); the StateExited event lists what it assigned. The states
do only the work in between."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .data import TRUNCATED, dumps, json_type, within_quota
from .errors import DATA_LIMIT_EXCEEDED, RESULT_PATH_MATCH_FAILURE, RUNTIME, StatesFailure
from .jsonata import QUERY_EVALUATION_ERROR, States, Template
from .machine import State
from .paths import PathNotFound, bracket_notation, parse_reference_path, set_path
from .run import Frame, Run

_PREFIX = "An error occurred while executing the state"


def enter(run: Run, state: State, data: Any, frame: Frame) -> None:
    frame.entered = run.emit(
        frame,
        state.type + "StateEntered",
        "stateEnteredEventDetails",
        {"name": state.name, "input": frame.json_of(data), "inputDetails": TRUNCATED},
    )


def exit_state(
    run: Run, state: State, output: Any, frame: Frame, assigned: dict[str, str] | None = None
) -> None:
    output_json = frame.json_of(output)
    if not within_quota(output_json):
        raise StatesFailure(
            DATA_LIMIT_EXCEEDED,
            f"The state/task '{state.name}' returned a result with a size "
            "exceeding the maximum number of bytes service limit.",
        )
    details: dict[str, Any] = {"name": state.name, "output": output_json}
    details["outputDetails"] = TRUNCATED
    if assigned:
        details["assignedVariables"] = assigned
        details["assignedVariablesDetails"] = TRUNCATED
    run.emit(frame, state.type + "StateExited", "stateExitedEventDetails", details)


def apply_assign(state: State, pending: dict[str, Any] | None, frame: Frame) -> dict[str, str]:
    """Bind the variables a state computed, once its output is known (variables.py)."""
    if not pending:
        return {}
    return frame.scope.assign(pending, state.name)


def jsonpath_assign(template: Any, value: Any, ctx: Any) -> Any:
    """JSONPath-mode Assign: a payload template applied to the state's result (or, for a
    Catch, the error output); `$name` inside it reads the values at state entry."""
    return None if template is None else template(value, ctx)


def evaluate(run: Run, state: State, frame: Frame, template: Template, states: States) -> Any:
    """One JSONata field of a state. A failing expression records AWS's EvaluationFailed
    event, and its cause says which state it happened in, as AWS's does."""
    try:
        return template(states, frame.scope.lookup)
    except StatesFailure as failure:
        if failure.error == QUERY_EVALUATION_ERROR and not (failure.cause or "").startswith(
            _PREFIX
        ):
            failure.cause = (
                f"{_PREFIX} '{state.name}' (entered at the event id #{frame.entered}). "
                f"{failure.cause}"
            )
            details = {"cause": failure.cause, "error": failure.error}
            location = getattr(failure, "location", None)
            if location:
                details["location"] = location
            details["state"] = state.name
            run.emit(frame, "EvaluationFailed", "evaluationFailedEventDetails", details)
        raise


STATE_DATA = "STATE_DATA"  # `Map.Item.Source` of an item taken from the state input


def item_context(ctx: dict[str, Any], index: int, item: Any, source: str = STATE_DATA) -> Any:
    """The context object one Map item's ItemSelector sees: `Map.Item` holds its Index, Value
    and Source (AWS: "Context object data for Map states": STATE_DATA for items of the state
    input, else the S3 URI the items were read from, "S3://bucket" for a listing and
    "S3://bucket/key" for an object)."""
    item_ctx = dict(ctx)
    item_ctx["Map"] = {"Item": {"Index": index, "Value": item, "Source": source}}
    return item_ctx


def states_of(data: Any, ctx: Any, **more: Any) -> States:
    """The `$states` reserved variable of a JSONata state."""
    return {"input": data, "context": ctx, **more}


def effective_input(state: State, data: Any, ctx: Any) -> Any:
    """InputPath then Parameters (spec: "InputPath, Parameters...")."""
    if state.input_path_null:
        value: Any = {}
    elif state.input_path is None:
        value = data
    else:
        value = select(state.input_path, state.input_path_text, data, ctx, "InputPath")
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
        return select(state.output_path, state.output_path_text, output, ctx, "OutputPath")
    return output



def jsonata_output(
    run: Run, state: State, frame: Frame, states: dict[str, Any], default: Any
) -> tuple[Any, Any]:
    """A JSONata state's Output (or `default`) and Assign, both from the same `$states`."""
    output = default
    if state.output is not None:
        output = evaluate(run, state, frame, state.output, states)
    pending = None
    if state.assign is not None:
        pending = evaluate(run, state, frame, state.assign, states)
    return output, pending


def finish_result(
    run: Run, state: State, frame: Frame, data: Any, result: Any, ctx: Any
) -> tuple[Any, Any]:
    """Output and pending Assign of a Parallel or Map (inline or distributed) from its
    result, in either language."""
    if not state.jsonata:
        return finish(state, data, result, ctx), jsonpath_assign(state.assign, result, ctx)
    return jsonata_output(run, state, frame, states_of(data, ctx, result=result), result)

def output_of(state: State, value: Any, ctx: Any) -> Any:
    """OutputPath alone, for the states without a result (Choice, Wait, Succeed)."""
    if state.output_path_null:
        return {}
    if state.output_path is not None:
        return select(state.output_path, state.output_path_text, value, ctx, "OutputPath")
    return value


def select(getter: Callable[[Any], Any], text: str, data: Any, ctx: Any, field: str) -> Any:
    """Apply a compiled path: to the context object `ctx` when `text` starts with `$$`
    (AWS allows it in InputPath, OutputPath and ItemsPath), else to `data`."""
    context = text.startswith("$$")
    source = ctx if context else data
    try:
        return getter(source)
    except PathNotFound as err:
        if context:
            raise StatesFailure(RUNTIME, missing_path_cause(text, field, source)) from err
        steps = parse_reference_path(text)
        where = bracket_notation(steps) if steps is not None else text
        raise StatesFailure(
            RUNTIME, f"Invalid path '{text}' : No results for path: {where}"
        ) from err


def missing_path_cause(path: str, field: str, source: Any) -> str:
    """AWS's States.Runtime cause for a path that selects nothing (compact JSON, as AWS
    prints the input)."""
    return (
        f"The JSONPath '{path}' specified for the field '{field}' "
        f"could not be found in the input '{dumps(source)}'"
    )


def map_items(state: State, effective: Any, ctx: Any) -> list[Any]:
    """A JSONPath Map's items: ItemsPath applied to the effective input (default the whole
    input), which must be an array (inline and Distributed Maps alike). AWS's 2025 ItemsPath
    page iterates an object's key-value pairs, but shows no iteration's input; until a page
    does, an object is refused (distributed.jsonata_items says the same of JSONata)."""
    items = (
        effective
        if state.items_path is None
        else select(state.items_path, state.items_path_text, effective, ctx, "ItemsPath")
    )
    if not isinstance(items, list):
        raise StatesFailure(
            RUNTIME,
            f"Map state input must be an array but was: {json_type(items)} "
            f"(ItemsPath '{state.items_path_text}')",
        )
    return items
