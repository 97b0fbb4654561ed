"""Definition validation and hostile input: every bad definition is rejected before any
state runs, with the state's name and the fix in the message."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sconeflow.workflow import DefinitionError, parse_definition, run_execution

FN = "arn:aws:lambda:us-east-1:123456789012:function:fn"


def problems_of(definition: Any) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_definition(definition)
    return info.value.problems


def single(state: dict[str, Any]) -> dict[str, Any]:
    return {"StartAt": "S", "States": {"S": state}}


def choice(rules: list[Any]) -> dict[str, Any]:
    return {
        "StartAt": "S",
        "States": {"S": {"Type": "Choice", "Choices": rules}, "E": {"Type": "Succeed"}},
    }


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (
            {"StartAt": "Nope", "States": {"S": {"Type": "Succeed"}}},
            "StartAt 'Nope' is not a state",
        ),
        (single({"Type": "Pass", "Next": "Ghost"}), "State 'S': Next 'Ghost' is not a state"),
        (single({"Type": "Pass"}), "State 'S': set exactly one of 'Next'"),
        (
            single({"Type": "Pass", "End": True, "Resource": "x"}),
            "field 'Resource' is not allowed in a Pass state",
        ),
        (single({"Type": "Dance", "End": True}), "Type 'Dance' is not one of"),
        (
            single({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True}),
            "Resource 'arn:aws:states:::sqs:sendMessage' is not supported",
        ),
        (
            single({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True}),
            "lambda:invoke needs Parameters with 'FunctionName'",
        ),
        (
            single(
                {
                    "Type": "Task",
                    "Resource": FN,
                    "End": True,
                    "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                }
            ),
            "must be the last",
        ),
        (
            single(
                {
                    "Type": "Task",
                    "Resource": FN,
                    "End": True,
                    "Catch": [{"ErrorEquals": ["States.ALL", "X"], "Next": "S"}],
                }
            ),
            "must be alone",
        ),
        (
            single({"Type": "Task", "Resource": FN, "End": True, "Retry": [{"ErrorEquals": []}]}),
            "'ErrorEquals' must be a non-empty array",
        ),
        (
            single(
                {
                    "Type": "Task",
                    "Resource": FN,
                    "End": True,
                    "Retry": [{"ErrorEquals": ["X"], "MaxAttempts": -1}],
                }
            ),
            "MaxAttempts must be a non-negative integer",
        ),
        (
            single(
                {
                    "Type": "Task",
                    "Resource": FN,
                    "End": True,
                    "Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "SOME"}],
                }
            ),
            "JitterStrategy must be",
        ),
        (
            single(
                {
                    "Type": "Task",
                    "Resource": FN,
                    "End": True,
                    "Retry": [{"ErrorEquals": ["X"], "Bogus": 1}],
                }
            ),
            "field 'Bogus' is not allowed",
        ),
        (
            single(
                {
                    "Type": "Task",
                    "Resource": FN,
                    "End": True,
                    "TimeoutSeconds": 5,
                    "HeartbeatSeconds": 9,
                }
            ),
            "HeartbeatSeconds must be smaller",
        ),
        (
            single({"Type": "Task", "Resource": FN, "End": True, "HeartbeatSecondsPath": "hb"}),
            "HeartbeatSecondsPath: 'hb' must be a reference path",
        ),
        (
            single(
                {
                    "Type": "Task",
                    "Resource": FN,
                    "End": True,
                    "HeartbeatSeconds": 5,
                    "HeartbeatSecondsPath": "$.hb",
                }
            ),
            "give either 'HeartbeatSeconds' or 'HeartbeatSecondsPath', not both",
        ),
        (
            {
                "QueryLanguage": "JSONata",
                "StartAt": "S",
                "States": {
                    "S": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::lambda:invoke",
                        "Arguments": {"FunctionName": FN},
                        "End": True,
                        "HeartbeatSecondsPath": "$.hb",
                    }
                },
            },
            "field 'HeartbeatSecondsPath' is only supported for the 'JSONPath' QueryLanguage",
        ),
        (
            single({"Type": "Pass", "End": True, "Parameters": {"x.$": "not a path"}}),
            "neither a path",
        ),
        (
            single({"Type": "Pass", "End": True, "Parameters": {"x.$": "$.a[?(@.b >"}}),
            "not a valid JSONPath",
        ),
        (
            single({"Type": "Pass", "End": True, "Parameters": {"x.$": "States.Nope(1)"}}),
            "unknown intrinsic",
        ),
        (
            single(
                {"Type": "Pass", "End": True, "Parameters": {"x.$": "States.ArrayLength(1, 2)"}}
            ),
            "States.ArrayLength takes 1 arguments, got 2",
        ),
        (single({"Type": "Pass", "End": True, "ResultPath": "$.a[*]"}), "must be a reference path"),
        (choice([{"Variable": "$.x", "Next": "E"}]), "exactly one operator"),
        (
            choice([{"Variable": "$.x", "NumericEquals": "1", "Next": "E"}]),
            'NumericEquals is "1" but should be numeric',
        ),
        (
            choice([{"And": [{"Variable": "$.x", "IsNull": True, "Next": "E"}], "Next": "E"}]),
            'has forbidden field "Next"',
        ),
        (
            choice([{"Variable": "$.x", "StringEquals": "a", "Next": "E", "Extra": 1}]),
            'Field "Extra" not allowed',
        ),
        (single({"Type": "Choice", "Choices": []}), "'Choices' must be a non-empty array"),
        (single({"Type": "Wait", "End": True}), "exactly one of Seconds"),
        (single({"Type": "Wait", "Timestamp": "tomorrow", "End": True}), "RFC3339 timestamp"),
        (
            single({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}),
            "either 'Error' or 'ErrorPath'",
        ),
        (
            single(
                {
                    "Type": "Map",
                    "End": True,
                    "ItemReader": {},
                    "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}},
                }
            ),
            "ItemReader needs a Distributed Map",
        ),
        (
            single(
                {
                    "Type": "Parallel",
                    "End": True,
                    "Branches": [
                        {"StartAt": "I", "States": {"I": {"Type": "Pass", "Next": "Out"}}}
                    ],
                }
            ),
            "Next 'Out' is not a state in this scope",
        ),
        (
            {"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "Orphan": {"Type": "Succeed"}}},
            "State 'Orphan' (the state machine) cannot be reached",
        ),
        ({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "A"}}}, "no terminal state"),
        (
            {
                "StartAt": "A",
                "States": {"A": {"Type": "Pass", "End": True}},
                "QueryLanguage": "jsonata",
            },
            "Value should be one of the following: [JSONPath, JSONata]",
        ),
    ],
)
def test_invalid_definitions_name_the_state_and_the_fix(
    definition: dict[str, Any], expected: str
) -> None:
    problems = problems_of(definition)
    assert any(expected in p for p in problems), problems


def test_statelint_findings_are_reported() -> None:
    problems = problems_of(single({"Type": "Pass", "End": True, "Result": 1, "Comment": 5}))
    assert any(p.startswith("statelint:") and "Comment" in p for p in problems), problems


def test_all_problems_reported_at_once() -> None:
    problems = problems_of(
        {
            "StartAt": "A",
            "States": {"A": {"Type": "Pass", "Next": "Ghost"}, "B": {"Type": "Wait", "End": True}},
        }
    )
    assert len(problems) >= 3


def test_invalid_json_text() -> None:
    assert "not valid JSON" in problems_of('{"StartAt": ')[0]


def test_json_text_definition_is_accepted() -> None:
    machine = parse_definition(
        json.dumps(single({"Type": "Pass", "Result": 1, "End": True})), name="m"
    )
    assert machine.name == "m" and run_execution(machine).output == 1


# --- hostile definitions -------------------------------------------------------------------


def test_deeply_nested_json_is_rejected_not_crashing() -> None:
    text = (
        '{"StartAt": "S", "States": {"S": {"Type": "Pass", "End": true, "Result": '
        + "[" * 100_000
        + "]" * 100_000
        + "}}}"
    )
    assert problems_of(text)


def test_deep_parallel_nesting_is_bounded() -> None:
    branch: dict[str, Any] = {"StartAt": "L", "States": {"L": {"Type": "Succeed"}}}
    for _ in range(12):
        branch = {
            "StartAt": "P",
            "States": {"P": {"Type": "Parallel", "End": True, "Branches": [branch]}},
        }
    assert any("nest deeper" in p for p in problems_of(branch))


def test_huge_definition_and_long_paths_are_rejected() -> None:
    assert "limit" in problems_of('{"x": "' + "a" * 1_100_000 + '"}')[0]
    long_path = "$" + ".a" * 2000
    assert any(
        "limit" in p
        for p in problems_of(single({"Type": "Pass", "End": True, "InputPath": long_path}))
    )


def test_deep_intrinsic_nesting_is_bounded() -> None:
    expr = "States.Array(" * 20 + ")" * 20
    assert any(
        "nest deeper" in p
        for p in problems_of(single({"Type": "Pass", "End": True, "Parameters": {"x.$": expr}}))
    )


def test_strings_that_look_like_code_are_just_data() -> None:
    machine = parse_definition(
        single(
            {
                "Type": "Pass",
                "End": True,
                "Parameters": {
                    "x.$": "States.Format('{}', '__import__(\\'os\\').system(\\'echo hi\\')')"
                },
            }
        )
    )
    assert run_execution(machine).output == {"x": "__import__('os').system('echo hi')"}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"Variable": "$.x", "NumericEquals": "1", "Next": "E"},
            "'NumericEquals' takes a numeric value",
        ),
        (
            {"And": [{"Variable": "$.x", "IsNull": True, "Next": "E"}], "Next": "E"},
            "'Next' is only allowed",
        ),
        (
            {"Variable": "$.x", "StringEquals": "a", "Next": "E", "Extra": 1},
            "unknown field(s) ['Extra']",
        ),
        ({"Variable": "$.x", "TimestampEquals": "nope", "Next": "E"}, "takes a timestamp value"),
        ({"Variable": 3, "IsNull": True, "Next": "E"}, "'Variable' must be a path string"),
        ({"Or": [], "Next": "E"}, "needs a non-empty array"),
    ],
)
def test_choice_rule_compiler_messages(rule: dict[str, Any], expected: str) -> None:
    from sconeflow.workflow.choice import compile_rule

    with pytest.raises(ValueError, match=re.escape(expected)):
        compile_rule(rule, top_level=True)
