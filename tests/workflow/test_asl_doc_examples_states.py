"""The AWS Step Functions developer guide's examples on the Choice, Task, Pass, Wait and
Fail states, the state machine structure, the Context object and error handling, run as
documented (PAGES in doc_examples.py has their URLs). Each id is "<page>: <section>".
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from doc_examples import (
    ECHO,
    FN,
    GET_CURRENT_PRICE,
    INVOKE,
    PAGES,
    QEE,
    Example,
    check_example,
    count,
    machine,
    scheduled_timeout,
    with_variables,
)

from sconeflow.workflow import ExecutionResult

# --- "Choice workflow state" -------------------------------------------------------------


def _choice(
    rule: dict[str, Any], *, jsonata: bool = True, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Choice with one rule (going to Matched) and a Default (NoMatch)."""
    states: dict[str, Any] = {
        "Choice": {
            "Type": "Choice",
            "Choices": [{**rule, "Next": "Matched"}],
            "Default": "NoMatch",
        },
        "Matched": {"Type": "Pass", "Result": "matched"}
        if not jsonata
        else {"Type": "Pass", "Output": "matched"},
        "NoMatch": {"Type": "Pass", "Result": "no match"}
        if not jsonata
        else {"Type": "Pass", "Output": "no match"},
    }
    if values:
        return with_variables(values, states)
    return machine(states, jsonata=jsonata)


def _rule(condition: str) -> dict[str, Any]:
    return {"Condition": condition}


CHOICE = [
    *[
        Example(
            f"state-choice: Choice Rules (JSONata) - {name}",
            _choice(_rule(cond), values=values),
            output=want,
        )
        for name, cond, values, want in (
            ("$foo = 1", "{% $foo = 1 %}", {"foo": 1}, "matched"),
            ("$foo = 1, not 1", "{% $foo = 1 %}", {"foo": 2}, "no match"),
            ("$type = 'local'", "{% $type = 'local' %}", {"type": "local"}, "matched"),
            ("$type = 'local', not local", "{% $type = 'local' %}", {"type": "remote"}, "no match"),
            (
                "$foo > 'MyStringABC'",
                "{% $foo > 'MyStringABC' %}",
                {"foo": "MyStringABD"},
                "matched",
            ),
            (
                "$foo > 'MyStringABC', smaller",
                "{% $foo > 'MyStringABC' %}",
                {"foo": "MyStringAB"},
                "no match",
            ),
            (
                "not null and 42",
                "{% $possiblyNullValue != null and $possiblyNullValue = 42 %}",
                {"possiblyNullValue": 42},
                "matched",
            ),
            (
                "not null and 42, null",
                "{% $possiblyNullValue != null and $possiblyNullValue = 42 %}",
                {"possiblyNullValue": None},
                "no match",
            ),
        )
    ],
    *[
        Example(
            f"state-choice: Choice Rules (JSONPath) - {name}",
            _choice(rule, jsonata=False),
            data,
            want,
        )
        for name, rule, data, want in (
            ("NumericEquals 1", {"Variable": "$.foo", "NumericEquals": 1}, {"foo": 1}, "matched"),
            (
                "StringEquals MyString",
                {"Variable": "$.foo", "StringEquals": "MyString"},
                {"foo": "MyString"},
                "matched",
            ),
            (
                "StringGreaterThan MyStringABC",
                {"Variable": "$.foo", "StringGreaterThan": "MyStringABC"},
                {"foo": "MyStringABD"},
                "matched",
            ),
            (
                "IsNull",
                {"Variable": "$.possiblyNullValue", "IsNull": True},
                {"possiblyNullValue": None},
                "matched",
            ),
            (
                "IsPresent then StringEquals, absent",
                {
                    "And": [
                        {"Variable": "$.keyThatMightNotExist", "IsPresent": True},
                        {"Variable": "$.keyThatMightNotExist", "StringEquals": "foo"},
                    ]
                },
                {},
                "no match",
            ),
            (
                "IsPresent then StringEquals, foo",
                {
                    "And": [
                        {"Variable": "$.keyThatMightNotExist", "IsPresent": True},
                        {"Variable": "$.keyThatMightNotExist", "StringEquals": "foo"},
                    ]
                },
                {"keyThatMightNotExist": "foo"},
                "matched",
            ),
            (
                "StringMatches log-*.txt",
                {"Variable": "$.foo", "StringMatches": "log-*.txt"},
                {"foo": "log-2024.txt"},
                "matched",
            ),
            (
                "StringMatches escaped wildcard",
                {"Variable": "$.foo", "StringMatches": "log-\\*.txt"},
                {"foo": "log-2024.txt"},
                "no match",
            ),
            (
                "TimestampEquals",
                {"Variable": "$.foo", "TimestampEquals": "2001-01-01T12:00:00Z"},
                {"foo": "2001-01-01T12:00:00Z"},
                "matched",
            ),
            (
                "StringEqualsPath",
                {"Variable": "$.foo", "StringEqualsPath": "$.bar"},
                {"foo": "x", "bar": "x"},
                "matched",
            ),
            (
                "no numeric match on a string",
                {"Variable": "$.foo", "NumericEquals": 1},
                {"foo": "1"},
                "no match",
            ),
            (
                "a timestamp is a string",
                {"Variable": "$.foo", "StringEquals": "2016-08-18T17:33:00Z"},
                {"foo": "2016-08-18T17:33:00Z"},
                "matched",
            ),
        )
    ],
    Example(
        # "If no Choices evaluate to true when the workflow runs, and no Default is provided,
        # the state machine will throw an error"
        "state-choice: Choice Rules - no match and no Default",
        machine(
            {
                "C": {"Type": "Choice", "Choices": [{"Condition": "{% false %}", "Next": "E"}]},
                "E": {"Type": "Succeed"},
            }
        ),
        error="States.NoChoiceMatched",
    ),
    Example(
        # Timestamps "must conform to RFC3339 profile ISO 8601, with further restrictions: An
        # uppercase T must separate the date and time portions" - else not a timestamp.
        "state-choice: Choice Rules (JSONPath) - lowercase t is not a timestamp",
        _choice({"Variable": "$.foo", "IsTimestamp": True}, jsonata=False),
        {"foo": "2016-08-18t17:33:00Z"},
        "no match",
    ),
]


# --- the Task, Pass, Wait, Fail pages and "State machine structure" -----------------------

STATES = [
    Example(
        "state-task: Invoke a function with JSONata Arguments",
        machine(
            {
                # The state sets "QueryLanguage": "JSONata" itself: the machine is JSONPath.
                "Get Current Price": {**GET_CURRENT_PRICE, "Next": "Check Price"},
                "Check Price": {"Type": "Pass", "Parameters": {"price.$": "$currentPrice"}},
            },
            jsonata=False,
        ),
        {"product": "scone"},
        {"price": 9.99},
    ),
    Example(
        "state-task: Invoke a function with JSONPath Parameters",
        machine(
            {
                "Lambda Invoke": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Parameters": {
                        "Payload.$": "$",
                        "FunctionName": FN.format("HelloFunction:$LATEST"),
                    },
                    "OutputPath": "$.Payload",
                }
            },
            jsonata=False,
        ),
        {"who": "AWS"},
        "Hello, AWS Step Functions!",
    ),
    Example(
        "state-task: Optimized call to Lambda function (JSONata)",
        machine(
            {
                "Optimized call to Lambda function (JSONata)": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Output": "{% $states.result.Payload %}",
                    "Arguments": {
                        "FunctionName": FN.format("HelloWorld:$LATEST"),
                        "Payload": {"key": "{% $states.input.myKey %}"},
                    },
                }
            }
        ),
        {"myKey": "v"},
        {"hello": {"key": "v"}},
    ),
    Example(
        # The page's task is an activity (arn:aws:states:region:123456789012:activity:
        # HelloWorld), here a Lambda function of that name: activities are not run here.
        "state-task: Static timeout and heartbeat notification example",
        machine(
            {
                "ActivityState": {
                    "Type": "Task",
                    "Resource": FN.format("HelloWorld"),
                    "TimeoutSeconds": 300,
                    "HeartbeatSeconds": 60,
                }
            },
            jsonata=False,
        ),
        output={"hello": {}},
        check=lambda result, store, children: scheduled_timeout(result, 300),
    ),
    Example(
        # The page's task is an AWS Glue job (glue:startJobRun.sync), here a Lambda function:
        # what the example shows is TimeoutSecondsPath read from the input.
        "state-task: Dynamic task timeout and heartbeat notification example",
        machine(
            {
                "Task": {
                    "Type": "Task",
                    "Resource": FN.format("HelloWorld"),
                    "TimeoutSecondsPath": "$.params.maxTime",
                }
            },
            jsonata=False,
        ),
        {"params": {"maxTime": 30}},
        {"hello": {"params": {"maxTime": 30}}},
        check=lambda result, store, children: scheduled_timeout(result, 30),
    ),
    Example(
        "state-task: HeartbeatSeconds must be less than TimeoutSeconds",
        machine(
            {
                "Task": {
                    "Type": "Task",
                    "Resource": FN.format("HelloWorld"),
                    "TimeoutSeconds": 60,
                    "HeartbeatSeconds": 60,
                }
            },
            jsonata=False,
        ),
        refused="HeartbeatSeconds",
    ),
    Example(
        "state-pass: Pass State Example (JSONPath)",
        machine(
            {
                "No-op": {
                    "Type": "Pass",
                    "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355},
                    "ResultPath": "$.coords",
                    "End": True,
                }
            },
            jsonata=False,
        ),
        {"georefOf": "Home"},
        {"georefOf": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}},
    ),
    Example(
        "state-wait: Wait State Examples - 10 seconds",
        machine(
            {
                "wait_ten_seconds": {"Type": "Wait", "Seconds": 10, "Next": "NextState"},
                "NextState": {"Type": "Succeed"},
            },
            jsonata=False,
        ),
        {"a": 1},
        {"a": 1},
        check=lambda result, store, children: _waited(result, 10),
    ),
    Example(
        "state-wait: Wait State Examples - until a timestamp",
        machine(
            {
                "wait_until": {
                    "Type": "Wait",
                    "Timestamp": "2024-03-14T01:59:00Z",
                    "Next": "NextState",
                },
                "NextState": {"Type": "Succeed"},
            },
            jsonata=False,
        ),
        {"a": 1},
        {"a": 1},
    ),
    Example(
        "state-wait: Wait State Examples - TimestampPath",
        machine(
            {
                "wait_until": {
                    "Type": "Wait",
                    "TimestampPath": "$.expirydate",
                    "Next": "NextState",
                },
                "NextState": {"Type": "Succeed"},
            },
            jsonata=False,
        ),
        {"expirydate": "2024-03-14T01:59:00Z"},
        {"expirydate": "2024-03-14T01:59:00Z"},
    ),
    Example(
        # "In JSONata states, you can alternatively specify a JSONata expression which must
        # evaluate to an integer in the stated range."
        "state-wait: Seconds - a JSONata expression",
        machine({"W": {"Type": "Wait", "Seconds": "{% $states.input.s %}"}}),
        {"s": 10},
        {"s": 10},
        check=lambda result, store, children: _waited(result, 10),
    ),
    Example(
        "state-wait: Seconds - out of range",
        machine({"W": {"Type": "Wait", "Seconds": "{% $states.input.s %}"}}),
        {"s": 100000000},
        error=QEE,
    ),
    Example(
        "state-wait: Timestamp - a JSONata expression",
        machine({"W": {"Type": "Wait", "Timestamp": "{% $states.input.expirydate %}"}}),
        {"expirydate": "2024-03-14T01:59:00Z"},
        {"expirydate": "2024-03-14T01:59:00Z"},
    ),
    Example(
        "state-wait: You must specify exactly one of "
        "Seconds, Timestamp, SecondsPath, or TimestampPath",
        machine({"W": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s"}}, jsonata=False),
        refused="exactly one",
    ),
    Example(
        "state-fail: Fail state definition examples - static",
        machine(
            {"FailState": {"Type": "Fail", "Cause": "Invalid response.", "Error": "ErrorA"}},
            jsonata=False,
        ),
        error="ErrorA",
        cause="Invalid response.",
    ),
    Example(
        "state-fail: Fail state definition examples - reference paths",
        machine(
            {"FailState": {"Type": "Fail", "CausePath": "$.Cause", "ErrorPath": "$.Error"}},
            jsonata=False,
        ),
        {"Error": "Oops", "Cause": "the cause"},
        error="Oops",
        cause="the cause",
    ),
    Example(
        "state-fail: Fail state definition examples - States.Format",
        machine(
            {
                "FailState": {
                    "Type": "Fail",
                    "CausePath": "States.Format('This is a custom error message for {}, "
                    "caused by {}.', $.Error, $.Cause)",
                    "ErrorPath": "States.Format('{}', $.Error)",
                }
            },
            jsonata=False,
        ),
        {"Error": "Oops", "Cause": "the cause"},
        error="Oops",
        cause="This is a custom error message for Oops, caused by the cause.",
    ),
    Example(
        "state-fail: Error and Cause - JSONata expressions",
        machine(
            {
                "FailState": {
                    "Type": "Fail",
                    "Error": "{% $states.input.Error %}",
                    "Cause": "{% 'caused by ' & $states.input.Cause %}",
                }
            }
        ),
        {"Error": "Oops", "Cause": "x"},
        error="Oops",
        cause="caused by x",
    ),
    Example(
        "state-fail: You can specify either Cause or CausePath, but not both",
        machine({"FailState": {"Type": "Fail", "Cause": "a", "CausePath": "$.c"}}, jsonata=False),
        refused="Cause",
    ),
    Example(
        "statemachine-structure: Hello World example",
        {
            "Comment": "A Hello World example of the Amazon States Language using a Pass state",
            "StartAt": "HelloWorld",
            "States": {"HelloWorld": {"Type": "Pass", "Result": "Hello World!", "End": True}},
        },
        output="Hello World!",
    ),
    Example(
        "statemachine-structure: QueryLanguage - a JSONata machine cannot revert to JSONPath",
        machine({"P": {"Type": "Pass", "QueryLanguage": "JSONPath"}}),
        refused="can not be 'JSONPath'",
    ),
    Example(
        "statemachine-structure: QueryLanguage - incremental conversion, one state at a time",
        machine(
            {
                "A": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "Next": "B"},
                "B": {
                    "Type": "Pass",
                    "QueryLanguage": "JSONata",
                    "Output": {"n": "{% $states.input.n + 1 %}"},
                    "Next": "C",
                },
                "C": {"Type": "Pass", "OutputPath": "$.n"},
            },
            jsonata=False,
        ),
        {"n": 1},
        2,
    ),
    Example(
        "statemachine-structure: TimeoutSeconds",
        machine(
            {"W": {"Type": "Wait", "Seconds": 10}},
            jsonata=False,
            TimeoutSeconds=5,
        ),
        error="States.Timeout",
        status="TIMED_OUT",
    ),
]


def _waited(result: ExecutionResult, seconds: int) -> None:
    entered = next(e for e in result.events if e["type"] == "WaitStateEntered")
    exited = next(e for e in result.events if e["type"] == "WaitStateExited")
    assert (exited["timestamp"] - entered["timestamp"]).total_seconds() == seconds


# --- "Parallel workflow state" -------------------------------------------------------------


def _branch(name: str, resource: str) -> dict[str, Any]:
    return {"StartAt": name, "States": {name: {"Type": "Task", "Resource": resource, "End": True}}}


PARALLEL = [
    Example(
        "state-parallel: Parallel State Example",
        {
            "Comment": "Parallel Example.",
            "StartAt": "LookupCustomerInfo",
            "States": {
                "LookupCustomerInfo": {
                    "Type": "Parallel",
                    "End": True,
                    "Branches": [
                        _branch(
                            "LookupAddress",
                            "arn:aws:lambda:us-east-1:123456789012:function:AddressFinder",
                        ),
                        _branch(
                            "LookupPhone",
                            "arn:aws:lambda:us-east-1:123456789012:function:PhoneFinder",
                        ),
                    ],
                }
            },
        },
        {"customer": "c1"},
        [{"address": "1 Main St"}, {"phone": "555-0100"}],
    ),
    Example(
        # "If the FunWithMath state was given the array [3, 2] as input, then both the Add and
        # Subtract states receive that array as input. The output of Add would be 5, that of
        # Subtract would be 1, and the output of the Parallel state would be an array." The
        # page's tasks are activities (arn:aws:swf:...:task:Add); here they are Lambda
        # functions of the same names, which this engine runs.
        "state-parallel: Parallel State Input and Output Processing",
        {
            "Comment": "Parallel Example.",
            "StartAt": "FunWithMath",
            "States": {
                "FunWithMath": {
                    "Type": "Parallel",
                    "End": True,
                    "Branches": [
                        _branch("Add", FN.format("Add")),
                        _branch("Subtract", FN.format("Subtract")),
                    ],
                }
            },
        },
        [3, 2],
        [5, 1],
    ),
    Example(
        # "If any branch fails, because of an unhandled error or by transitioning to a Fail
        # state, the entire Parallel state is considered to have failed"
        "state-parallel: Error Handling",
        machine(
            {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        _branch("Fine", FN.format("HelloWorld")),
                        {
                            "StartAt": "Stop",
                            "States": {"Stop": {"Type": "Fail", "Error": "BranchFailed"}},
                        },
                    ],
                }
            },
            jsonata=False,
        ),
        error="BranchFailed",
    ),
    Example(
        "state-parallel: Arguments, Output and Assign (JSONata)",
        machine(
            {
                "P": {
                    "Type": "Parallel",
                    "Arguments": {"n": "{% $states.input.n * 2 %}"},
                    "Branches": [
                        {
                            "StartAt": "B",
                            "States": {
                                "B": {
                                    "Type": "Pass",
                                    "Output": "{% $states.input.n + 1 %}",
                                    "End": True,
                                }
                            },
                        }
                    ],
                    "Output": {"results": "{% $states.result %}"},
                    "Assign": {"first": "{% $states.result[0] %}"},
                    "Next": "R",
                },
                "R": {
                    "Type": "Pass",
                    "Output": {"out": "{% $states.input %}", "first": "{% $first %}"},
                },
            }
        ),
        {"n": 5},
        {"out": {"results": [11]}, "first": 11},
    ),
]


# --- "Accessing execution data from the Context object" --------------------------------------

_WHO = [{"who": "bob"}, {"who": "meg"}, {"who": "joe"}]
_WHO_CONTEXT = [
    {"ContextIndex": i, "ContextValue": who, "ContextSource": "STATE_DATA"}
    for i, who in enumerate(_WHO)
]


def _context_map(selector: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "ExampleMapState",
        "States": {
            "ExampleMapState": {
                "Type": "Map",
                "ItemSelector": selector,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "TestPass",
                    "States": {"TestPass": {"Type": "Pass", "End": True}},
                },
                "End": True,
            }
        },
    }


CONTEXT = [
    Example(
        "input-output-contextobject: To access the Context object in JSONata",
        machine(
            {"P": {"Type": "Pass", "Output": {"ExecutionID": "{% $states.context.Execution.Id %}"}}}
        ),
        output={"ExecutionID": "arn:aws:states:us-east-1:123456789012:execution:machine:exec"},
    ),
    Example(
        "input-output-contextobject: To access the Context object in JSONPath",
        machine(
            {"P": {"Type": "Pass", "Parameters": {"ExecutionID.$": "$$.Execution.Id"}}},
            jsonata=False,
        ),
        output={"ExecutionID": "arn:aws:states:us-east-1:123456789012:execution:machine:exec"},
    ),
    Example(
        # The fields the page lists, in a STANDARD execution that has not been redriven (so
        # no RedriveTime) and outside a Task (so no Task.Token).
        "input-output-contextobject: Context object fields",
        # A Task, because only the states that can retry have State.RetryCount (run.py).
        machine({"Test": {"Type": "Task", "Resource": ECHO, "Output": "{% $states.context %}"}}),
        {"key": "value"},
        check=lambda result, store, children: _context_fields(result.output),
    ),
    Example(
        "input-output-contextobject: Context object data for Map states (JSONPath)",
        _context_map(
            {
                "ContextIndex.$": "$$.Map.Item.Index",
                "ContextValue.$": "$$.Map.Item.Value",
                "ContextSource.$": "$$.Map.Item.Source",
            }
        ),
        _WHO,
        _WHO_CONTEXT,
    ),
    Example(
        "input-output-contextobject: Context object data for Map states (JSONata)",
        {
            "QueryLanguage": "JSONata",
            **_context_map(
                {
                    "ContextIndex": "{% $states.context.Map.Item.Index %}",
                    "ContextValue": "{% $states.context.Map.Item.Value %}",
                    "ContextSource": "{% $states.context.Map.Item.Source %}",
                }
            ),
        },
        _WHO,
        _WHO_CONTEXT,
    ),
]


def _context_fields(context: Any) -> None:
    assert set(context) == {"Execution", "State", "StateMachine"}, context
    execution = context["Execution"]
    assert set(execution) == {"Id", "Input", "Name", "RoleArn", "StartTime", "RedriveCount"}
    assert execution["Input"] == {"key": "value"} and execution["Name"] == "exec"
    assert execution["Id"] == "arn:aws:states:us-east-1:123456789012:execution:machine:exec"
    assert execution["RedriveCount"] == 0
    assert context["State"]["Name"] == "Test" and context["State"]["RetryCount"] == 0
    assert set(context["State"]) == {"EnteredTime", "Name", "RetryCount"}
    assert context["StateMachine"] == {
        "Id": "arn:aws:states:us-east-1:123456789012:stateMachine:machine",
        "Name": "machine",
    }


# --- "Handling errors in Step Functions workflows" ------------------------------------------

_HELLO = "Hello, AWS Step Functions!"


def _hello_world(task: dict[str, Any]) -> dict[str, Any]:
    states: dict[str, Any] = {"HelloWorld": {"Type": "Task", "End": True, **task}}
    if "Catch" in task:
        states["fallback"] = {"Type": "Pass", "Result": _HELLO, "End": True}
    return {
        "Comment": "Hello World example which invokes a AWS Lambda function",
        "StartAt": "HelloWorld",
        "States": states,
    }


def _timing_out(retry: list[dict[str, Any]]) -> dict[str, Any]:
    """A Task that times out on every attempt, with `retry`."""
    return machine(
        {
            "T": {
                "Type": "Task",
                "Resource": FN.format("sleep10"),
                "TimeoutSeconds": 2,
                "Retry": retry,
            }
        },
        jsonata=False,
    )


ERROR_HANDLING = [
    Example(
        # "makes two retry attempts with the first retry taking place after waiting for
        # three seconds ... the second retry attempt starts after waiting for three seconds
        # after the first retry."
        "concepts-error-handling: Example 1 - Retry with BackoffRate",
        _timing_out(
            [
                {
                    "ErrorEquals": ["States.Timeout"],
                    "IntervalSeconds": 3,
                    "MaxAttempts": 2,
                    "BackoffRate": 1,
                }
            ]
        ),
        error="States.Timeout",
        check=lambda result, store, children: _retry_waits(result, [3, 3]),
    ),
    Example(
        # "The first retry takes place after waiting for three seconds. The second and third
        # retry attempts take place after waiting for five seconds": with JitterStrategy
        # FULL each wait is drawn below that (3, 5, 5 at most).
        "concepts-error-handling: Example 2 - Retry with MaxDelaySeconds",
        _timing_out(
            [
                {
                    "ErrorEquals": ["States.Timeout"],
                    "IntervalSeconds": 3,
                    "MaxAttempts": 3,
                    "BackoffRate": 2,
                    "MaxDelaySeconds": 5,
                    "JitterStrategy": "FULL",
                }
            ]
        ),
        error="States.Timeout",
        check=lambda result, store, children: _retry_waits_at_most(result, [3, 5, 5]),
    ),
    Example(
        "concepts-error-handling: Example 2 - without MaxDelaySeconds",
        _timing_out(
            [
                {
                    "ErrorEquals": ["States.Timeout"],
                    "IntervalSeconds": 3,
                    "MaxAttempts": 3,
                    "BackoffRate": 2,
                }
            ]
        ),
        error="States.Timeout",
        check=lambda result, store, children: _retry_waits(result, [3, 6, 12]),
    ),
    Example(
        "concepts-error-handling: Example 3 - Retry all errors except States.Timeout",
        _timing_out(
            [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0}, {"ErrorEquals": ["States.ALL"]}]
        ),
        error="States.Timeout",
        check=lambda result, store, children: count(result, "LambdaFunctionScheduled", 1),
    ),
    Example(
        "concepts-error-handling: Example 3 - other errors are retried",
        machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": FN.format("FailFunction"),
                    "Retry": [
                        {"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0},
                        {"ErrorEquals": ["States.ALL"]},
                    ],
                }
            },
            jsonata=False,
        ),
        error="HandledError",
        check=lambda result, store, children: _retry_waits(result, [1, 2, 4]),  # the defaults
    ),
    Example(
        "concepts-error-handling: Example 4 - Complex retry scenario",
        machine(
            {
                "X": {
                    "Type": "Task",
                    "Resource": FN.format("X"),
                    "Next": "Y",
                    "Retry": [
                        {
                            "ErrorEquals": ["ErrorA", "ErrorB"],
                            "IntervalSeconds": 1,
                            "BackoffRate": 2.0,
                            "MaxAttempts": 2,
                        },
                        {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5},
                    ],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Z"}],
                },
                "Y": {"Type": "Pass", "Result": "Y"},
                "Z": {"Type": "Pass", "OutputPath": "$.Error"},
            },
            jsonata=False,
        ),
        output="ErrorB",
        # "The first two errors match the first retrier and cause waits of one and two
        # seconds. The third error matches the second retrier and causes a wait of five
        # seconds. The fourth error also matches the first retrier [which has] already
        # reached its maximum of two retries"
        check=lambda result, store, children: _retry_waits(result, [1, 2, 5]),
    ),
    Example(
        "concepts-error-handling: Handling a failure using Retry",
        _hello_world(
            {
                "Resource": FN.format("FailFunction"),
                "Retry": [
                    {
                        "ErrorEquals": ["HandledError"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 2.0,
                    }
                ],
            }
        ),
        error="HandledError",
        check=lambda result, store, children: _retry_waits(result, [1, 2]),
    ),
    Example(
        "concepts-error-handling: Handling a failure using Retry - States.TaskFailed",
        _hello_world(
            {
                "Resource": FN.format("FailFunction"),
                "Retry": [
                    {
                        "ErrorEquals": ["States.TaskFailed"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 2.0,
                    }
                ],
            }
        ),
        error="HandledError",
        check=lambda result, store, children: _retry_waits(result, [1, 2]),
    ),
    *[
        Example(
            f"concepts-error-handling: Handling a failure using Catch - {errors}",
            _hello_world(
                {
                    "Resource": FN.format("FailFunction"),
                    "Catch": [{"ErrorEquals": [errors], "Next": "fallback"}],
                }
            ),
            output=_HELLO,
        )
        for errors in ("HandledError", "States.TaskFailed")
    ],
    Example(
        "concepts-error-handling: Handling a timeout using Retry",
        _hello_world(
            {
                "Resource": FN.format("sleep10"),
                "TimeoutSeconds": 2,
                "Retry": [
                    {
                        "ErrorEquals": ["States.Timeout"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 2,
                        "BackoffRate": 2.0,
                    }
                ],
            }
        ),
        error="States.Timeout",
        check=lambda result, store, children: _retry_waits(result, [1, 2]),
    ),
    Example(
        "concepts-error-handling: Handling a timeout using Catch",
        _hello_world(
            {
                "Resource": FN.format("sleep10"),
                "TimeoutSeconds": 2,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "fallback"}],
            }
        ),
        output=_HELLO,
    ),
    Example(
        # "the catcher adds the error output to the input as a field named error-info ...
        # For the second catcher, the error output overwrites the input"
        "concepts-error-handling: Fallback states - ResultPath in a catcher",
        machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": FN.format("FailFunction"),
                    "Catch": [
                        {
                            "ErrorEquals": ["java.lang.Exception"],
                            "ResultPath": "$.error-info",
                            "Next": "RecoveryState",
                        },
                        {"ErrorEquals": ["States.ALL"], "Next": "EndState"},
                    ],
                },
                "RecoveryState": {"Type": "Pass", "Result": "recovered"},
                "EndState": {"Type": "Pass"},
            },
            jsonata=False,
        ),
        {"kept": True},
        check=lambda result, store, children: _error_output(result.output),
    ),
    Example(
        "concepts-error-handling: Cause payloads and service integrations",
        machine(
            {
                "Handle escaped JSON with JSONtoString": {
                    "Type": "Pass",
                    "Parameters": {"Cause.$": "States.StringToJson($.Cause)"},
                }
            },
            jsonata=False,
        ),
        {"Error": "States.TaskFailed", "Cause": '{"errorMessage": "boom", "code": 7}'},
        {"Cause": {"errorMessage": "boom", "code": 7}},
    ),
]


def _error_output(output: Any) -> None:
    assert set(output) == {"Error", "Cause"} and output["Error"] == "HandledError", output
    assert json.loads(output["Cause"])["errorMessage"] == "error"


def _retry_waits_at_most(result: ExecutionResult, bounds: list[int]) -> None:
    waits = _waits(result)
    assert len(waits) == len(bounds) and all(
        0 <= w <= b for w, b in zip(waits, bounds, strict=True)
    )


def _waits(result: ExecutionResult) -> list[float]:
    starts = [e["timestamp"] for e in result.events if e["type"] in _SCHEDULED]
    fails = [e["timestamp"] for e in result.events if e["type"] in _ENDED_BADLY]
    return [(s - f).total_seconds() for f, s in zip(fails, starts[1:], strict=False)]


_SCHEDULED = ("TaskScheduled", "LambdaFunctionScheduled")
_ENDED_BADLY = ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut", "LambdaFunctionTimedOut")


def _retry_waits(result: ExecutionResult, waits: list[int]) -> None:
    starts = [
        e["timestamp"]
        for e in result.events
        if e["type"] in ("TaskScheduled", "LambdaFunctionScheduled")
    ]
    fails = [
        e["timestamp"]
        for e in result.events
        if e["type"]
        in ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut", "LambdaFunctionTimedOut")
    ]
    assert [
        round((s - f).total_seconds()) for f, s in zip(fails, starts[1:], strict=False)
    ] == waits


EXAMPLES = [*CHOICE, *STATES, *PARALLEL, *CONTEXT, *ERROR_HANDLING]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_runs_as_documented(example: Example) -> None:
    check_example(example)


def test_every_example_has_a_unique_id_naming_its_page() -> None:
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)
    assert {e.page for e in EXAMPLES} <= set(PAGES)
    for example in EXAMPLES:  # what the pages print is JSON; so is what runs here
        json.dumps(example.definition)
