"""TestState: run one state on its own and say what it did (API reference, "TestState").

The state runs alone: its `Next`/`Default`/Choice/Catch targets become empty Succeed
states, so the engine runs exactly the state under test and then tells where it went. As
the reference describes, a Retry is not waited out: a failure that a retrier matches is
answered RETRIABLE, one that a Catch takes is CAUGHT_ERROR (with the catcher's `Next` as
`nextState`), any other FAILED; otherwise SUCCEEDED with the output and `nextState`.
"""

from __future__ import annotations

import json
from typing import Any

from sconeflow.console.executor import Executor
from sconeflow.console.protocol import AwsError

_FAILURES = ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut", "LambdaFunctionTimedOut",
             "ExecutionFailed")  # fmt: skip


def _targets(state: dict[str, Any]) -> set[str]:
    names = {state.get("Next"), state.get("Default")}
    names |= {c.get("Next") for c in state.get("Choices", []) if isinstance(c, dict)}
    names |= {c.get("Next") for c in state.get("Catch", []) if isinstance(c, dict)}
    return {n for n in names if isinstance(n, str)}


def run_test_state(executor: Executor, definition: Any, data: Any, state_name: str | None,
                   inspection_level: str) -> dict[str, Any]:  # fmt: skip
    from sconeflow.workflow import DefinitionError, error_matches, parse_definition, run_execution

    try:
        spec = json.loads(definition) if isinstance(definition, str) else None
    except ValueError as err:
        raise AwsError("InvalidDefinition", f"Invalid State Definition: '{err}'") from err
    if isinstance(spec, dict) and "States" in spec:  # a whole machine and the state to test
        name = state_name or spec.get("StartAt")
        spec = spec["States"].get(name) if isinstance(spec["States"], dict) else None
    else:
        name = state_name or "TestState"
    if not isinstance(spec, dict) or "Type" not in spec or not isinstance(name, str):
        raise AwsError("InvalidDefinition", "Invalid State Definition: expected a state "
                       "object with a Type, e.g. {\"Type\": \"Pass\", \"End\": true}")  # fmt: skip
    state = dict(spec)
    retriers = state.pop("Retry", [])
    states: dict[str, Any] = {name: state}
    for target in _targets(state) - {name}:
        states[target] = {"Type": "Succeed"}
    try:
        machine = parse_definition({"StartAt": name, "States": states}, name="TestState")
    except DefinitionError as err:
        raise AwsError("InvalidDefinition",
                       "Invalid State Definition: '" + "; ".join(err.problems) + "'") from err
    result = run_execution(machine, data, executor.handlers_for(machine.function_names))
    out: dict[str, Any] = {"inspectionData": {"input": json.dumps(data)}}
    exited = next((e for e in result.events if e["type"].endswith("StateExited")
                   and e["stateExitedEventDetails"]["name"] == name), None)  # fmt: skip
    entered_next = next((e["stateEnteredEventDetails"]["name"] for e in result.events
                         if e["type"].endswith("StateEntered")
                         and e["stateEnteredEventDetails"]["name"] != name), None)  # fmt: skip
    failure = next((e for e in result.events if e["type"] in _FAILURES), None)
    if inspection_level in ("DEBUG", "TRACE"):
        task = next((e for e in result.events if e["type"] in ("TaskSucceeded",
                     "LambdaFunctionSucceeded")), None)  # fmt: skip
        if task is not None:
            details = next(v for k, v in task.items() if k.endswith("EventDetails"))
            out["inspectionData"]["result"] = details.get("output")
    if result.status == "SUCCEEDED" and failure is not None and exited is not None:
        details = next(v for k, v in failure.items() if k.endswith("EventDetails"))
        out.update(status="CAUGHT_ERROR", output=exited["stateExitedEventDetails"]["output"],
                   error=details.get("error"), cause=details.get("cause"))
        if entered_next:
            out["nextState"] = entered_next
    elif result.status == "SUCCEEDED":
        output = exited["stateExitedEventDetails"]["output"] if exited else json.dumps(
            result.output)  # fmt: skip
        out.update(status="SUCCEEDED", output=output)
        if entered_next:
            out["nextState"] = entered_next
    else:
        retriable = any(error_matches(tuple(r.get("ErrorEquals", [])), result.error)
                        for r in retriers if isinstance(r, dict))  # fmt: skip
        out.update(status="RETRIABLE" if retriable else "FAILED")
        out.update({k: v for k, v in (("error", result.error), ("cause", result.cause))
                    if v is not None})  # fmt: skip
    return out
