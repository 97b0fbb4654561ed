"""Shared machinery of the JSONata and variables differential tests (test_asl_jsonata.py,
test_asl_variables.py): each case runs in sconeflow's engine and in moto's interpreter (with
jsonata-python plugged into the hook moto leaves for a JSONata evaluator, asl_moto_harness.py);
status, output, error and cause must agree, or, where moto departs from AWS, agree with
`aws_expected`, whose `why` says where AWS's behaviour is documented or recorded.

One difference is ironed out for every case rather than case by case: AWS names the field a
failing expression was written in ("The JSONata expression '$states.input.pushLocation'
specified for the field 'Arguments/Input/pushLocation' returned nothing (undefined).", as
AWS reports it) and moto leaves "specified for the field '...'" out. `compare` asserts that
our cause names the field and compares the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asl_moto_harness import MotoMachine

from sconeflow.workflow import FakeClock, parse_definition, run_execution

FN = "arn:aws:lambda:us-east-1:123456789012:function:{}"
INVOKE = "arn:aws:states:::lambda:invoke"
_FIELD = re.compile(r" specified for the field '[^']*'")


class CustomError(Exception):
    pass


def _add_one(event: Any, context: Any) -> Any:
    return {**event, "n": event.get("n", 0) + 1}


def _boom(event: Any, context: Any) -> Any:
    raise CustomError("custom failure")


def _echo(event: Any, context: Any) -> Any:
    return event


def handlers() -> dict[str, Callable[[Any, Any], Any]]:
    return {"add_one": _add_one, "boom": _boom, "echo": _echo}


@dataclass
class Case:
    id: str
    definition: dict[str, Any]
    input: Any = field(default_factory=dict)
    aws_expected: dict[str, Any] | None = None  # where moto differs from AWS; see `why`
    why: str = ""


def jsonata(states: dict[str, Any], start: str | None = None) -> dict[str, Any]:
    """A JSONata state machine; states without Next/End (and not terminal) get End."""
    for state in states.values():
        if state["Type"] not in ("Succeed", "Fail", "Choice") and "Next" not in state:
            state.setdefault("End", True)
    return {"QueryLanguage": "JSONata", "StartAt": start or next(iter(states)), "States": states}


def jsonpath(states: dict[str, Any], start: str | None = None) -> dict[str, Any]:
    machine = jsonata(states, start)
    del machine["QueryLanguage"]
    return machine


def task(fn: str, **extra: Any) -> dict[str, Any]:
    """A JSONata lambda:invoke Task."""
    return {
        "Type": "Task",
        "Resource": INVOKE,
        "Arguments": {"FunctionName": FN.format(fn) + ":$LATEST", "Payload": "{% $states.input %}"},
        **extra,
    }


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub(r'"requestId":"[0-9a-f-]+"', '"requestId":"<id>"', value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def ours(case: Case) -> dict[str, Any]:
    result = run_execution(
        parse_definition(case.definition), case.input, handlers(), name="exec", clock=FakeClock()
    )
    return {
        "status": result.status,
        "output": _normalise(result.output),
        "error": result.error,
        "cause": _normalise(result.cause),
    }


def compare(case: Case) -> None:
    got = ours(case)
    if case.aws_expected is not None:
        assert got == case.aws_expected, case.why
        return
    theirs = MotoMachine(case.definition).run(case.input, handlers())
    expected = {k: _normalise(theirs[k]) for k in ("status", "output", "error", "cause")}
    if got["error"] == "States.QueryEvaluationError" and isinstance(got["cause"], str):
        assert "specified for the field '" in got["cause"], got["cause"]
        got["cause"] = _FIELD.sub("", got["cause"])
    assert got == expected
