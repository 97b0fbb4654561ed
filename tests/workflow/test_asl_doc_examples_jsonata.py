"""The AWS Step Functions developer guide's examples on JSONata and variables, run as
documented: every definition, field and expression with a documented input and result on
"Transforming data with JSONata in Step Functions" and "Passing data between states with
variables" (PAGES in doc_examples.py has their URLs). Each id is "<page>: <section>".
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from doc_examples import (
    DISTRIBUTED,
    ECHO,
    FN,
    GET_CURRENT_PRICE,
    INVOKE,
    NOT_COVERED,
    PAGES,
    QEE,
    Example,
    assigning,
    check_example,
    count,
    machine,
    run_example,
    scheduled_timeout,
    with_variables,
)

from sconeflow.workflow import ExecutionResult

# --- "Transforming data with JSONata in Step Functions" --------------------------------------

_CONVERTED = {
    "static": "Hello",
    "title": "Doctor",
    "name": "María",
    "not-evaluated": "$customerName",
}
_CUSTOMER = {"Type": "Pass", "Assign": {"customerName": "María"}, "Next": "Task"}
_PRODUCTS = [
    {"calories": 140, "flavour": "Cola", "name": "Product-1"},
    {"calories": 0, "flavour": "Cola", "name": "Product-2"},
    {"calories": 160, "flavour": "Orange", "name": "Product-3"},
    {"calories": 100, "flavour": "Orange", "name": "Product-4"},
    {"calories": 0, "flavour": "Lime", "name": "Product-5"},
]
_PRICE_JSONPATH = {
    "Type": "Choice",
    "Default": "Pause",
    "Choices": [
        {
            "Variable": "$.current_price.current_price",
            "NumericLessThanEqualsPath": "$.desired_price",
            "Next": "Send Notification",
        }
    ],
}
# The page's converted Choice reads `$states.input.desired_priced` and lacks a comma after
# "Default": "Pause" (so it is not JSON as printed); it evidently means desired_price.
_PRICE_JSONATA = {
    "Type": "Choice",
    "Default": "Pause",
    "Choices": [
        {
            "Condition": "{% $current_price <= $states.input.desired_price %}",
            "Next": "Send Notification",
        }
    ],
}
_PRICE_END = {
    "Pause": {"Type": "Succeed"},
    "Send Notification": {"Type": "Pass", "Result": "notified", "End": True},
}
_PRICE_END_JSONATA = {
    "Pause": {"Type": "Succeed"},
    "Send Notification": {"Type": "Pass", "Output": "notified", "End": True},
}


_PASS_ONE = {"StartAt": "One", "States": {"One": {"Type": "Pass", "End": True}}}


def _timeout_task(timeout: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": INVOKE,
        "Arguments": {"FunctionName": FN.format("HelloWorld"), "Payload": {}},
        "TimeoutSeconds": timeout,
        "Output": "{% $states.result.Payload %}",
    }


TRANSFORMING_DATA = [
    Example(
        "transforming-data: Original sample using JSONPath",
        machine(
            {
                "Declare": _CUSTOMER,
                "Task": {
                    "QueryLanguage": "JSONPath",
                    "Type": "Task",
                    "Resource": ECHO,
                    "Parameters": {
                        "static": "Hello",
                        "title.$": "$.title",
                        "name.$": "$customerName",
                        "not-evaluated": "$customerName",
                    },
                },
            },
            jsonata=False,
        ),
        {"title": "Doctor"},
        _CONVERTED,
    ),
    Example(
        "transforming-data: Sample after conversion to JSONata",
        machine(
            {
                "Declare": _CUSTOMER,
                "Task": {
                    "QueryLanguage": "JSONata",
                    "Type": "Task",
                    "Resource": ECHO,
                    "Arguments": {
                        "static": "Hello",
                        "title": "{% $states.input.title %}",
                        "name": "{% $customerName %}",
                        "not-evaluated": "$customerName",
                    },
                },
            },
            jsonata=False,
        ),
        {"title": "Doctor"},
        _CONVERTED,
    ),
    Example(
        # "Note: Assign and Output steps occur in parallel. If you choose to transform data
        # during variable assignment, that transformed data will not be available in the
        # Output step."
        "transforming-data: Assign and Output steps occur in parallel",
        machine(
            {
                "Given": {"Type": "Pass", "Assign": {"v": "old"}, "Next": "Both"},
                "Both": {
                    "Type": "Pass",
                    "Assign": {"v": "{% $uppercase($states.input.word) %}"},
                    "Output": {"v": "{% $v %}"},
                    "Next": "After",
                },
                "After": {
                    "Type": "Pass",
                    "Output": {"before": "{% $states.input.v %}", "v": "{% $v %}"},
                },
            }
        ),
        {"word": "new"},
        {"before": "old", "v": "NEW"},
    ),
    Example(
        # "If the top-level QueryLanguage field is omitted, it defaults to "JSONPath". If a
        # state contains a state-level QueryLanguage field, Step Functions will use [it]."
        "transforming-data: QueryLanguage field",
        machine(
            {
                "Path": {"Type": "Pass", "Parameters": {"x.$": "$.x"}, "Next": "Nata"},
                "Nata": {
                    "Type": "Pass",
                    "QueryLanguage": "JSONata",
                    "Output": "{% $states.input.x * 2 %}",
                },
            },
            jsonata=False,
        ),
        {"x": 21},
        42,
    ),
    Example(
        "transforming-data: Writing JSONata expressions in JSON strings - TimeoutSeconds",
        with_variables({"timeout": 5}, {"Task": _timeout_task("{% $timeout %}")}),
        output={"hello": {}},
        check=lambda result, store, children: scheduled_timeout(result, 5),
    ),
    Example(
        "transforming-data: Writing JSONata expressions in JSON strings - Arguments",
        with_variables(
            {"name": "Ada"},
            {"Task": {"Type": "Task", "Resource": ECHO, "Arguments": {"field1": "{% $name %}"}}},
        ),
        output={"field1": "Ada"},
    ),
    Example(
        "transforming-data: Writing JSONata expressions in JSON strings - Items",
        with_variables(
            {"two": 2},
            {
                "Map": {
                    "Type": "Map",
                    "Items": [1, "{% $two %}", 3],
                    "ItemProcessor": {
                        "StartAt": "P",
                        "States": {"P": {"Type": "Pass", "End": True}},
                    },
                }
            },
        ),
        output=[1, 2, 3],
    ),
    Example(
        # "the string must start with {% with no leading spaces, and must end with %} with no
        # trailing spaces. Improperly opening or closing the expression will result in a
        # validation error."
        "transforming-data: Writing JSONata expressions in JSON strings - leading space",
        machine({"P": {"Type": "Pass", "Output": {"a": " {% 1 + 1 %}"}}}),
        refused="is not a JSONata expression",
    ),
    *[
        Example(
            f"transforming-data: Writing JSONata expressions in JSON strings - {name}",
            machine({"P": {"Type": "Pass", "Output": {"a": text}}}),
            refused="(at Output/a) is not a JSONata expression",
        )
        for name, text in (
            ("trailing space", "{% 1 + 1 %} "),
            ("not closed", "{% 1 + 1"),
            ("not opened", "1 + 1 %}"),
            ("text around it", "x {% 1 + 1 %} y"),
        )
    ],
    Example(
        "transforming-data: Writing JSONata expressions in JSON strings - a plain string",
        machine({"P": {"Type": "Pass", "Output": {"a": "100% {plain}", "b": "$states.input"}}}),
        output={"a": "100% {plain}", "b": "$states.input"},
    ),
    Example(
        "transforming-data: Reserved variable $states - input, result, context",
        machine(
            {
                "Task": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Arguments": {
                        "FunctionName": FN.format("HelloWorld"),
                        "Payload": "{% $states.input %}",
                    },
                    "Output": {
                        "input": "{% $states.input %}",
                        "result": "{% $states.result.Payload %}",
                        "execution": "{% $states.context.Execution.Name %}",
                    },
                }
            }
        ),
        {"a": 1},
        {"input": {"a": 1}, "result": {"hello": {"a": 1}}, "execution": "exec"},
    ),
    Example(
        "transforming-data: Reserved variable $states - errorOutput in a Catch",
        machine(
            {
                "Task": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Arguments": {"FunctionName": FN.format("FailFunction"), "Payload": {}},
                    "Catch": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Assign": {"error": "{% $states.errorOutput.Error %}"},
                            "Output": "{% $states.errorOutput %}",
                            "Next": "Handled",
                        }
                    ],
                },
                "Handled": {
                    "Type": "Pass",
                    "Output": {"error": "{% $error %}", "out": "{% $states.input.Error %}"},
                },
            }
        ),
        output={"error": "HandledError", "out": "HandledError"},
    ),
    Example(
        # "Attempting to access $states.result or $states.errorOutput in fields and states
        # where they are not accessible will be caught at creation ... of the state machine."
        "transforming-data: Reserved variable $states - errorOutput outside a Catch",
        machine({"P": {"Type": "Pass", "Output": "{% $states.errorOutput %}"}}),
        refused="$states.errorOutput",
    ),
    *[
        Example(
            f"transforming-data: Reserved variable $states - result {where}",
            definition,
            refused="$states.result exists only in the Output and Assign",
        )
        for where, definition in (
            ("in a Pass", machine({"P": {"Type": "Pass", "Output": "{% $states.result %}"}})),
            (
                "in a Choice",
                machine(
                    {
                        "C": {
                            "Type": "Choice",
                            "Choices": [{"Condition": "{% $states.result > 1 %}", "Next": "E"}],
                            "Default": "E",
                        },
                        "E": {"Type": "Succeed"},
                    }
                ),
            ),
            ("in a Wait", machine({"W": {"Type": "Wait", "Seconds": "{% $states.result %}"}})),
            (
                "in a Task's Arguments",
                machine(
                    {"T": {"Type": "Task", "Resource": ECHO, "Arguments": "{% $states.result %}"}}
                ),
            ),
            (
                "in a Catch",
                machine(
                    {
                        "T": {
                            "Type": "Task",
                            "Resource": ECHO,
                            "Catch": [
                                {
                                    "ErrorEquals": ["States.ALL"],
                                    "Output": "{% $states.result %}",
                                    "Next": "E",
                                }
                            ],
                        },
                        "E": {"Type": "Succeed"},
                    }
                ),
            ),
        )
    ],
    Example(
        "transforming-data: Reserved variable $states - errorOutput in a state's Assign",
        machine(
            {
                "M": {
                    "Type": "Map",
                    "Assign": {"e": "{% $states.errorOutput %}"},
                    "ItemProcessor": _PASS_ONE,
                }
            }
        ),
        refused="$states.errorOutput",
    ),
    Example(
        "transforming-data: Handling expression errors - Type error",
        with_variables({"x": "one", "y": 2}, {"P": {"Type": "Pass", "Output": "{% $x + $y %}"}}),
        error=QEE,
        cause="must evaluate to a number",
    ),
    Example(
        "transforming-data: Handling expression errors - Type incompatibility",
        with_variables({"timeout": "ten"}, {"Task": _timeout_task("{% $timeout %}")}),
        error=QEE,
        cause="TimeoutSeconds",
    ),
    Example(
        "transforming-data: Handling expression errors - Value out of range",
        with_variables(
            {"evaluatesToNegativeNumber": -5},
            {"Task": _timeout_task("{% $evaluatesToNegativeNumber %}")},
        ),
        error=QEE,
        cause="TimeoutSeconds",
    ),
    Example(
        "transforming-data: Handling expression errors - Failure to return a result",
        with_variables(
            {"data": {"there": 1}},
            {"P": {"Type": "Pass", "Output": "{% $data.thisFieldDoesNotExist %}"}},
        ),
        error=QEE,
        cause="returned nothing (undefined)",
    ),
    Example(
        # "Your Task, Map, and Parallel states can provide a Catch field to catch the error,
        # and a Retry field to retry on the error."
        "transforming-data: Handling expression errors - Retry and Catch",
        machine(
            {
                "Task": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Arguments": {
                        "FunctionName": FN.format("HelloWorld"),
                        "Payload": "{% $states.input.missing %}",
                    },
                    "Retry": [{"ErrorEquals": ["States.QueryEvaluationError"], "MaxAttempts": 1}],
                    "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Caught"}],
                },
                "Caught": {"Type": "Pass", "Output": "{% $states.input.Error %}"},
            }
        ),
        output=QEE,
        check=lambda result, store, children: count(result, "TaskStateEntered", 1),
    ),
    Example(
        "transforming-data: No more path fields - JSONPath legacy example",
        machine(
            {
                "Given": {"Type": "Pass", "Assign": {"timeout": 7}, "Next": "Task"},
                "Task": {
                    "Type": "Task",
                    "Resource": FN.format("HelloWorld"),
                    "TimeoutSecondsPath": "$timeout",
                },
            },
            jsonata=False,
        ),
        output={"hello": {}},
        check=lambda result, store, children: scheduled_timeout(result, 7),
    ),
    Example(
        "transforming-data: No more path fields - JSONata",
        with_variables({"timeout": 7}, {"Task": _timeout_task("{% $timeout %}")}),
        output={"hello": {}},
        check=lambda result, store, children: scheduled_timeout(result, 7),
    ),
    Example(
        "transforming-data: Arguments and Output Fields - Arguments object",
        machine(
            {
                "Task": {
                    "Type": "Task",
                    "Resource": ECHO,
                    "Arguments": {"field1": 42, "field2": "{% $states.input.name %}"},
                }
            }
        ),
        {"name": "Ada"},
        {"field1": 42, "field2": "Ada"},
    ),
    Example(
        "transforming-data: Arguments and Output Fields - Output expression",
        machine({"P": {"Type": "Pass", "Output": "{% $states.input.name %}"}}),
        {"name": "Ada"},
        "Ada",
    ),
    Example(
        "transforming-data: Arguments and Output Fields - Output true",
        machine({"P": {"Type": "Pass", "Output": True}}),
        output=True,
    ),
    Example(
        "transforming-data: Arguments and Output Fields - Output 42",
        machine({"P": {"Type": "Pass", "Output": 42}}),
        output=42,
    ),
    Example(
        "transforming-data: Arguments and Output Fields - Arguments in a JSONPath state",
        machine(
            {"Task": {"Type": "Task", "Resource": ECHO, "Arguments": {"field1": 42}}},
            jsonata=False,
        ),
        refused="'Arguments' is only supported for the 'JSONata' QueryLanguage",
    ),
    Example(
        "transforming-data: Arguments and Output Fields - Parameters in a JSONata state",
        machine({"Task": {"Type": "Task", "Resource": ECHO, "Parameters": {"field1": 42}}}),
        refused="'Parameters' is only supported for the 'JSONPath' QueryLanguage",
    ),
    Example(
        "transforming-data: Pass state - Result is JSONPath only",
        machine({"P": {"Type": "Pass", "Result": 1}}),
        refused="'Result' is only supported for the 'JSONPath' QueryLanguage",
    ),
    Example(
        "transforming-data: Choice state - JSONPath choice state sample (price low)",
        machine({"Check Price": _PRICE_JSONPATH, **_PRICE_END}, jsonata=False),
        {"current_price": {"current_price": 8}, "desired_price": 10},
        "notified",
    ),
    Example(
        "transforming-data: Choice state - JSONPath choice state sample (price high)",
        machine({"Check Price": _PRICE_JSONPATH, **_PRICE_END}, jsonata=False),
        {"current_price": {"current_price": 12}, "desired_price": 10},
        {"current_price": {"current_price": 12}, "desired_price": 10},
    ),
    Example(
        "transforming-data: Choice state - Choice state after JSONata conversion (price low)",
        with_variables({"current_price": 8}, {"Check Price": _PRICE_JSONATA, **_PRICE_END_JSONATA}),
        {"desired_price": 10},
        "notified",
    ),
    Example(
        "transforming-data: Choice state - Choice state after JSONata conversion (price high)",
        with_variables(
            {"current_price": 12}, {"Check Price": _PRICE_JSONATA, **_PRICE_END_JSONATA}
        ),
        {"desired_price": 10},
        {"desired_price": 10},
    ),
    Example(
        "transforming-data: Choice state - Condition is only available for JSONata",
        machine(
            {
                "Check": {"Type": "Choice", "Choices": [{"Condition": True, "Next": "E"}]},
                "E": {"Type": "Succeed"},
            },
            jsonata=False,
        ),
        refused="Condition",
    ),
    Example(
        "transforming-data: Example: Input and Output",
        {
            "Comment": "Input and Output example using JSONata",
            "QueryLanguage": "JSONata",
            "StartAt": "Basic Input and Output",
            "States": {
                "Basic Input and Output": {
                    "QueryLanguage": "JSONata",
                    "Type": "Succeed",
                    "Output": {
                        "lastName": "{% 'Last=>' & $states.input.customer.lastName %}",
                        "orderValue": "{% $states.input.order.total %}",
                    },
                }
            },
        },
        {
            "customer": {"firstName": "Martha", "lastName": "Rivera"},
            "order": {"items": 7, "total": 27.91},
        },
        {"lastName": "Last=>Rivera", "orderValue": 27.91},
    ),
    Example(
        "transforming-data: Example: Filtering with JSONata",
        {
            "Comment": "Filter products using JSONata",
            "QueryLanguage": "JSONata",
            "StartAt": "FilterDietProducts",
            "States": {
                "FilterDietProducts": {
                    "Type": "Pass",
                    "Output": {"dietProducts": "{% $states.input.products[calories=0] %}"},
                    "End": True,
                }
            },
        },
        {"products": _PRODUCTS},
        {"dietProducts": [_PRODUCTS[1], _PRODUCTS[4]]},
    ),
    Example(
        "transforming-data: JSONata functions - $partition",
        assigning({"arrayPartition": "{% $partition([1,2,3,4], $states.input.chunkSize) %}"}),
        {"chunkSize": 3},
        {"arrayPartition": [[1, 2, 3], [4]]},  # "the last array chunk may be less"
    ),
    Example(
        "transforming-data: JSONata functions - $range",
        assigning({"arrayRange": "{% $range(0, 10, 2) %}"}),
        output={"arrayRange": [0, 2, 4, 6, 8, 10]},
    ),
    Example(
        "transforming-data: JSONata functions - $range with a negative delta",
        assigning({"arrayRange": "{% $range(10, 0, -5) %}"}),
        output={"arrayRange": [10, 5, 0]},  # "The delta value can be positive or negative"
    ),
    Example(
        "transforming-data: JSONata functions - $hash",
        with_variables(
            {"hashAlgorithmName": "SHA-256"},
            {
                "Hash": {
                    "Type": "Pass",
                    "Assign": {"myHash": "{% $hash($states.input.content, $hashAlgorithmName) %}"},
                    "Next": "Read",
                },
                "Read": {"Type": "Pass", "Output": "{% $myHash %}"},
            },
        ),
        {"content": "abc"},
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ),
    Example(
        "transforming-data: JSONata functions - $hash algorithms",
        machine(
            {
                "P": {
                    "Type": "Pass",
                    "Output": {
                        a: "{% $hash('abc', '" + a + "') %}"
                        for a in ("MD5", "SHA-1", "SHA-256", "SHA-384", "SHA-512")
                    },
                }
            }
        ),
        check=lambda result, store, children: _hashes(result),
    ),
    Example(
        "transforming-data: JSONata functions - $random",
        assigning(
            {"randNoSeed": "{% $random() %}", "randSeeded": "{% $random($states.input.seed) %}"}
        ),
        {"seed": 42},
        check=lambda result, store, children: _randoms(result),
    ),
    Example(
        "transforming-data: JSONata functions - $uuid",
        assigning({"uniqueId": "{% $uuid() %}"}),
        check=lambda result, store, children: _uuid4(result.output["uniqueId"]),
    ),
    Example(
        "transforming-data: JSONata functions - $parse",
        assigning({"deserializedPayload": "{% $parse($states.input.json_string) %}"}),
        {"json_string": '{"order": {"items": [1, 2]}, "ok": true}'},
        {"deserializedPayload": {"order": {"items": [1, 2]}, "ok": True}},
    ),
    Example(
        "transforming-data: JSONata functions - $eval is not supported",
        machine({"P": {"Type": "Pass", "Output": "{% $eval('1 + 1') %}"}}),
        error=QEE,
    ),
    Example(
        # "Built-in JSONata functions that require integer values as parameters will
        # automatically round down any non-integer numbers provided."
        "transforming-data: JSONata functions - integer parameters round down",
        machine(
            {
                "P": {
                    "Type": "Pass",
                    "Output": {
                        "partition": "{% $partition([1,2,3,4,5], 2.9) %}",
                        "range": "{% $range(0.5, 6.9, 2.9) %}",
                        "random": "{% $random(7.9) = $random(7) %}",
                        "substring": "{% $substring('abcdef', 1.7, 2.2) %}",
                    },
                }
            }
        ),
        output={
            "partition": [[1, 2], [3, 4], [5]],
            "range": [0, 2, 4, 6],
            "random": True,
            "substring": "bc",
        },
    ),
]


def _hashes(result: ExecutionResult) -> None:
    import hashlib

    names = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384"}
    names["SHA-512"] = "sha512"
    assert result.output == {a: hashlib.new(n, b"abc").hexdigest() for a, n in names.items()}


def _randoms(result: ExecutionResult) -> None:
    # "If you use this function with the same seed value, it returns an identical number."
    again = run_example(
        assigning({"randSeeded": "{% $random($states.input.seed) %}"}), {"seed": 42}
    )[0].output
    out = result.output
    assert 0 <= out["randNoSeed"] < 1 and 0 <= out["randSeeded"] < 1
    assert again["randSeeded"] == out["randSeeded"]


def _uuid4(value: str) -> None:
    import uuid

    assert uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value


# --- "Passing data between states with variables" --------------------------------------------

_STORE_INPUTS = {
    "Type": "Pass",
    "Next": "Get Current Price",
    "Comment": "Store the input desired price into a variable: $desiredPrice",
    "Assign": {
        "desiredPrice": "{% $states.input.desired_price %}",
        "maximumWait": "{% $states.input.max_days %}",
    },
}
_READ_PRICES = {
    "Check Price": {
        "Type": "Pass",
        "Output": {
            "desired": "{% $desiredPrice %}",
            "wait": "{% $maximumWait %}",
            "current": "{% $currentPrice %}",
        },
    }
}
_INNER = {"StartAt": "Inner", "States": {"Inner": {"Type": "Pass", "End": True}}}


def _inner(state: dict[str, Any], name: str = "Inner") -> dict[str, Any]:
    """A one-state sub-machine (state names are unique across a whole definition)."""
    return {"StartAt": name, "States": {name: {**state, "End": True}}}


WORKFLOW_VARIABLES = [
    Example(
        "workflow-variables: States that support variables",
        assigning({"productName": "product1", "count": 42, "available": True}),
        output={"productName": "product1", "count": 42, "available": True},
    ),
    Example(
        "workflow-variables: States that support variables (JSONPath)",
        assigning({"productName": "product1", "count": 42, "available": True}, jsonata=False),
        output={"productName": "product1", "count": 42, "available": True},
    ),
    *[
        Example(
            f"workflow-variables: States that support variables - {kind}",
            machine({"S": state, "Read": {"Type": "Pass", "Output": "{% $v %}"}}),
            {"items": [1]},
            "set",
        )
        for kind, state in (
            ("Pass", {"Type": "Pass", "Assign": {"v": "set"}, "Next": "Read"}),
            ("Task", {"Type": "Task", "Resource": ECHO, "Assign": {"v": "set"}, "Next": "Read"}),
            (
                "Map",
                {
                    "Type": "Map",
                    "Items": "{% $states.input.items %}",
                    "ItemProcessor": _INNER,
                    "Assign": {"v": "set"},
                    "Next": "Read",
                },
            ),
            (
                "Parallel",
                {"Type": "Parallel", "Branches": [_INNER], "Assign": {"v": "set"}, "Next": "Read"},
            ),
            (
                "Choice",
                {
                    "Type": "Choice",
                    "Choices": [
                        {"Condition": "{% true %}", "Assign": {"v": "set"}, "Next": "Read"}
                    ],
                },
            ),
            ("Wait", {"Type": "Wait", "Seconds": 0, "Assign": {"v": "set"}, "Next": "Read"}),
        )
    ],
    *[
        Example(
            f"workflow-variables: Assign field in ASL - not in {kind}",
            machine({"S": {"Type": kind, "Assign": {"v": 1}}}),
            refused="'Assign' is not allowed",
        )
        for kind in ("Succeed", "Fail")
    ],
    Example(
        "workflow-variables: Reserved variable $states - states cannot be assigned",
        assigning({"states": 1}),
        refused="reserved",
    ),
    Example(
        # "Variable names follow the rules for Unicode Identifiers ... The first character of
        # a variable name must be a Unicode ID_Start character, and the second and subsequent
        # characters must be Unicode ID_Continue characters."
        "workflow-variables: Variable name syntax - Unicode identifiers",
        assigning({"niño": 1, "größe": 2, "π": 3.14, "año2024": 4, "e\u0301t\u00e9": 5}),
        output={"niño": 1, "größe": 2, "π": 3.14, "año2024": 4, "e\u0301t\u00e9": 5},
    ),
    Example(
        "workflow-variables: Variable name syntax - Unicode identifiers (JSONPath)",
        assigning({"niño": 1, "größe": 2}, jsonata=False),
        output={"niño": 1, "größe": 2},
    ),
    Example(
        "workflow-variables: Variable name syntax - the first character",
        assigning({"2x": 1}),
        refused="is not a valid variable name",
    ),
    Example(
        "workflow-variables: Variable name syntax - 80 characters",
        assigning({"v" * 80: 1}),
        output={"v" * 80: 1},
    ),
    Example(
        "workflow-variables: Variable name syntax - 81 characters",
        assigning({"v" * 81: 1}),
        refused="is not a valid variable name",
    ),
    Example(
        # "States inside Parallel or Map states can refer to outer scope variables"
        "workflow-variables: Variable scope - inner scopes read outer variables",
        with_variables(
            {"tag": "T"},
            {
                "Map": {
                    "Type": "Map",
                    "Items": [1, 2],
                    "ItemProcessor": _inner(
                        {"Type": "Pass", "Output": "{% $tag & $string($states.input) %}"}
                    ),
                    "Next": "Par",
                },
                "Par": {
                    "Type": "Parallel",
                    "Branches": [_inner({"Type": "Pass", "Output": "{% $tag %}"}, "Branch")],
                    "Output": {"map": "{% $states.input %}", "parallel": "{% $states.result %}"},
                },
            },
        ),
        output={"map": ["T1", "T2"], "parallel": ["T"]},
    ),
    Example(
        # "they do not have access to variable values from other concurrent branches or
        # iterations"
        "workflow-variables: Variable scope - iterations do not share variables",
        machine(
            {
                "Map": {
                    "Type": "Map",
                    "Items": [1, 2, 3],
                    "MaxConcurrency": 1,
                    "ItemProcessor": {
                        "StartAt": "Look",
                        "States": {
                            "Look": {
                                "Type": "Pass",
                                "Output": "{% $exists($mine) %}",
                                "Assign": {"mine": "{% $states.input %}"},
                                "End": True,
                            }
                        },
                    },
                }
            }
        ),
        output=[False, False, False],
    ),
    Example(
        # "When handling errors, the Assign field in a Catch can assign values to variables
        # in the outer scope, that is, the scope in which the Parallel/Map state exists."
        "workflow-variables: Variable scope - Assign in a Catch sets the outer scope",
        machine(
            {
                "Par": {
                    "Type": "Parallel",
                    "Branches": [
                        _inner(
                            {
                                "Type": "Task",
                                "Resource": INVOKE,
                                "Arguments": {
                                    "FunctionName": FN.format("FailFunction"),
                                    "Payload": {},
                                },
                            }
                        )
                    ],
                    "Catch": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Assign": {"failure": "{% $states.errorOutput.Error %}"},
                            "Next": "After",
                        }
                    ],
                },
                "After": {"Type": "Pass", "Output": "{% $failure %}"},
            }
        ),
        output="HandledError",
    ),
    Example(
        # "Exception: Distributed Map states cannot currently reference variables in outer
        # scopes."
        "workflow-variables: Variable scope - Distributed Map cannot read outer variables",
        with_variables(
            {"tag": "T"},
            {
                "Map": {
                    "Type": "Map",
                    "Items": [1],
                    "ItemProcessor": {
                        "ProcessorConfig": DISTRIBUTED,
                        **_inner({"Type": "Pass", "Output": "{% $tag %}"}),
                    },
                }
            },
        ),
        error="States.ExceedToleratedFailureThreshold",
        check=lambda result, store, children: _child_failed_with(children, QEE),
    ),
    Example(
        # "a variable assigned in an inner scope cannot have the same name as one assigned in
        # an outer scope"
        "workflow-variables: Variable scope - an inner scope cannot assign an outer name",
        with_variables(
            {"myVariable": 1},
            {
                "Map": {
                    "Type": "Map",
                    "Items": [1],
                    "ItemProcessor": _inner({"Type": "Pass", "Assign": {"myVariable": 2}}),
                }
            },
        ),
        error="States.Runtime",
        cause="myVariable",
    ),
    Example(
        # "When a Parallel or Map state completes, all of their variables will go out of scope
        # and stop being accessible."
        "workflow-variables: Variable scope - inner variables go out of scope",
        machine(
            {
                "Map": {
                    "Type": "Map",
                    "Items": [1],
                    "ItemProcessor": _inner({"Type": "Pass", "Assign": {"innerVar": 1}}),
                    "Next": "After",
                },
                "After": {"Type": "Pass", "Output": "{% $innerVar %}"},
            }
        ),
        error=QEE,
        cause="returned nothing (undefined)",
    ),
    Example(
        "workflow-variables: Assign field in ASL - Example of Assign with JSONata",
        machine(
            {"Store inputs": _STORE_INPUTS, "Get Current Price": GET_CURRENT_PRICE, **_READ_PRICES}
        ),
        {"product": "scone", "desired_price": 10, "max_days": 3},
        {"desired": 10, "wait": 3, "current": 9.99},
    ),
    Example(
        "workflow-variables: Assign field in ASL - "
        "Example of Task with JSONata assignment from result",
        machine(
            {
                "Task": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Arguments": {"FunctionName": FN.format("priceWatcher"), "Payload": {}},
                    "Assign": {
                        "product": "{% $states.input.order.product %}",
                        "currentPrice": "{% $states.result.Payload.current_price %}",
                    },
                    "Next": "the next state",
                },
                "the next state": {
                    "Type": "Pass",
                    "Output": {"product": "{% $product %}", "currentPrice": "{% $currentPrice %}"},
                },
            }
        ),
        {"order": {"product": "scone"}},
        {"product": "scone", "currentPrice": 9.99},
    ),
    *[
        Example(
            f"workflow-variables: Assign field in ASL - cannot assign {name}",
            assigning({name: 42}),
            refused="is not a valid variable name",
        )
        for name in ("x.y", "x[2]")
    ],
    Example(
        "workflow-variables: Evaluation order in an assign field",
        with_variables(
            {"x": 3, "a": 6},
            {
                "Assign": {
                    "Type": "Pass",
                    "Assign": {"x": "{% $a %}", "nextX": "{% $x %}"},
                    "Next": "Read",
                },
                "Read": {"Type": "Pass", "Output": {"x": "{% $x %}", "nextX": "{% $nextX %}"}},
            },
        ),
        output={"x": 6, "nextX": 3},  # "# Ending values: $x=6, $nextX=3"
    ),
    Example(
        # "Note: If $x had not been previously assigned, the example would fail because $x
        # would be undefined."
        "workflow-variables: Evaluation order in an assign field - $x not assigned",
        with_variables(
            {"a": 6},
            {"Assign": {"Type": "Pass", "Assign": {"x": "{% $a %}", "nextX": "{% $x %}"}}},
        ),
        error=QEE,
        cause="'Assign/nextX' returned nothing",
    ),
    Example(
        "workflow-variables: Evaluation order in an assign field - order does not matter",
        with_variables(
            {"x": 3, "a": 6},
            {
                "Assign": {
                    "Type": "Pass",
                    "Assign": {"nextX": "{% $x %}", "x": "{% $a %}"},
                    "Next": "Read",
                },
                "Read": {"Type": "Pass", "Output": {"x": "{% $x %}", "nextX": "{% $nextX %}"}},
            },
        ),
        output={"x": 6, "nextX": 3},
    ),
    Example(
        # "The maximum size of a single variable is 256Kib"
        "workflow-variables: Limits - a single variable",
        assigning({"x": "{% $pad('', 262200, 'x') %}"}),
        error="States.DataLimitExceeded",
    ),
    Example(
        # "you could assign X and Y to 128KiB, but you could not assign both X and Y to 256KiB
        # in the same Assign field" (each value's JSON text is 2 bytes of quotes longer)
        "workflow-variables: Limits - X and Y at 128 KiB",
        machine(
            {
                "Set": {
                    "Type": "Pass",
                    "Assign": {
                        "X": "{% $pad('', 131070, 'x') %}",
                        "Y": "{% $pad('', 131070, 'y') %}",
                    },
                    "Next": "Read",
                },
                "Read": {"Type": "Pass", "Output": "{% $length($X) + $length($Y) %}"},
            }
        ),
        output=262140,
    ),
    Example(
        "workflow-variables: Limits - X and Y at 256 KiB",
        machine(
            {
                "Set": {
                    "Type": "Pass",
                    "Assign": {
                        "X": "{% $pad('', 262140, 'x') %}",
                        "Y": "{% $pad('', 262140, 'y') %}",
                    },
                }
            }
        ),
        error="States.DataLimitExceeded",
    ),
    Example(
        # "The total size of all stored variables cannot exceed 10MiB per execution." Forty
        # variables of 250 KiB make 10,000 KiB; a forty-first passes 10 MiB.
        "workflow-variables: Limits - 10 MiB per execution",
        machine(
            {
                **{
                    f"Set{i}": {
                        "Type": "Pass",
                        "Assign": {f"v{i}": "{% $pad('', 256000, 'v') %}"},
                        "Next": f"Set{i + 1}",
                    }
                    for i in range(40)
                },
                "Set40": {"Type": "Pass", "Assign": {"v40": "{% $pad('', 256000, 'v') %}"}},
            }
        ),
        error="States.DataLimitExceeded",
        check=lambda result, store, children: count(result, "PassStateExited", 40),
    ),
    Example(
        # "You can reference a variable in any field that accepts a JSONpath expression ...
        # with the exception of ResultPath"; `$x` or `$order.numItems`.
        "workflow-variables: Using variables in JSONPath states - paths",
        machine(
            {
                "Set": {
                    "Type": "Pass",
                    "Assign": {
                        "order": {"number": 7, "numItems": 2, "list": ["a", "b"]},
                        "wait": 1,
                    },
                    "Next": "In",
                },
                "In": {"Type": "Pass", "InputPath": "$order", "Next": "Out"},
                "Out": {"Type": "Pass", "OutputPath": "$order.numItems", "Next": "Wait"},
                "Wait": {"Type": "Wait", "SecondsPath": "$wait", "Next": "Choice"},
                "Choice": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$order.numItems", "NumericEqualsPath": "$", "Next": "Map"}
                    ],
                },
                "Map": {
                    "Type": "Map",
                    "ItemsPath": "$order.list",
                    "ItemProcessor": _INNER,
                    "Next": "Format",
                },
                "Format": {
                    "Type": "Pass",
                    "Parameters": {
                        "items.$": "$",
                        "message.$": "States.Format('The order number is {}', $order.number)",
                    },
                },
            },
            jsonata=False,
        ),
        output={"items": ["a", "b"], "message": "The order number is 7"},
    ),
    Example(
        "workflow-variables: Using variables in JSONPath states - not in ResultPath",
        machine({"P": {"Type": "Pass", "ResultPath": "$x"}}, jsonata=False),
        refused="ResultPath",
    ),
    Example(
        # "In Task, Map, Parallel states, the $ refers to the API/sub-workflow result", and the
        # diagram: "the assign step in a JSONPath task occurs at the same time as the
        # ResultSelector" (so $ is the result before ResultSelector).
        "workflow-variables: Assigning variables in JSONPath - Example of Assign with JSONPath",
        machine(
            {
                "Task": {
                    "Type": "Task",
                    "Resource": ECHO,
                    "Assign": {"products.$": "$.order..product", "orderTotal.$": "$.order.total"},
                    "ResultSelector": {"total.$": "$.order.total"},
                    "ResultPath": "$.selected",
                    "Next": "the next state",
                },
                "the next state": {
                    "Type": "Pass",
                    "Parameters": {
                        "products.$": "$products",
                        "orderTotal.$": "$orderTotal",
                        "selected.$": "$.selected",
                    },
                },
            },
            jsonata=False,
        ),
        {"order": {"items": [{"product": "scone"}, {"product": "tea"}], "total": 12.5}},
        {"products": ["scone", "tea"], "orderTotal": 12.5, "selected": {"total": 12.5}},
    ),
    Example(
        "workflow-variables: Assigning variables in JSONPath - "
        "details, resultCode, message, startTime",
        machine(
            {
                "Customer": {
                    "Type": "Pass",
                    "Assign": {"customer": {"name": "Ada"}},
                    "Next": "Task",
                },
                "Task": {
                    "Type": "Task",
                    "Resource": ECHO,
                    "Assign": {
                        "details": {"status": "SUCCESS", "lineItems.$": "$.order.items"},
                        "resultCode.$": "$.result.code",
                        "message.$": "States.Format('Hello {}', $customer.name)",
                        "startTime.$": "$$.Execution.StartTime",
                    },
                    "Next": "Read",
                },
                "Read": {
                    "Type": "Pass",
                    "Parameters": {
                        "d.$": "$details",
                        "r.$": "$resultCode",
                        "m.$": "$message",
                        "s.$": "$startTime",
                        "now.$": "$$.Execution.StartTime",
                    },
                },
            },
            jsonata=False,
        ),
        {"order": {"items": [1, 2]}, "result": {"code": 200}},
        check=lambda result, store, children: _details(result.output),
    ),
    Example(
        # "In Choice and Wait state, $ refers to the effective input, which is the value after
        # InputPath has been applied to the state input."
        "workflow-variables: Assigning variables in JSONPath - $ in Choice and Wait",
        machine(
            {
                "Wait": {
                    "Type": "Wait",
                    "Seconds": 0,
                    "InputPath": "$.inner",
                    "Assign": {"w.$": "$"},
                    "Next": "Choice",
                },
                "Choice": {
                    "Type": "Choice",
                    "InputPath": "$.deeper",
                    "Choices": [
                        {
                            "Variable": "$.k",
                            "IsPresent": True,
                            "Assign": {"c.$": "$"},
                            "Next": "Read",
                        }
                    ],
                },
                "Read": {"Type": "Pass", "Parameters": {"w.$": "$w", "c.$": "$c"}},
            },
            jsonata=False,
        ),
        {"inner": {"deeper": {"k": 1}}},
        {"w": {"deeper": {"k": 1}}, "c": {"k": 1}},
    ),
    Example(
        # "For Pass, $ refers to the result, whether generated by the Result field or the
        # InputPath/Parameters fields."
        "workflow-variables: Assigning variables in JSONPath - $ in Pass",
        machine(
            {
                "Result": {
                    "Type": "Pass",
                    "Result": {"r": 1},
                    "ResultPath": "$.placed",
                    "Assign": {"fromResult.$": "$"},
                    "Next": "Params",
                },
                "Params": {
                    "Type": "Pass",
                    "InputPath": "$.in",
                    "Parameters": {"p.$": "$.q"},
                    "Assign": {"fromParameters.$": "$"},
                    "Next": "Read",
                },
                "Read": {
                    "Type": "Pass",
                    "Parameters": {"a.$": "$fromResult", "b.$": "$fromParameters"},
                },
            },
            jsonata=False,
        ),
        {"in": {"q": 5}},
        {"a": {"r": 1}, "b": {"p": 5}},
    ),
]


def _details(output: Any) -> None:
    assert output["d"] == {"status": "SUCCESS", "lineItems": [1, 2]}
    assert output["r"] == 200 and output["m"] == "Hello Ada"
    assert output["s"] == output["now"]


def _child_failed_with(children: list[Any], error: str) -> None:
    """A Distributed Map child runs as an execution of its own: its last event says how."""
    (child,) = children
    last = child["events"][-1]
    assert last["type"] == "ExecutionFailed", last
    assert last["executionFailedEventDetails"]["error"] == error, last


EXAMPLES = [*TRANSFORMING_DATA, *WORKFLOW_VARIABLES]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_runs_as_documented(example: Example) -> None:
    check_example(example)


def test_every_example_has_a_unique_id_naming_its_page() -> None:
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)
    assert {e.page for e in EXAMPLES} <= set(PAGES)
    for example in EXAMPLES:  # what the pages print is JSON; so is what runs here
        json.dumps(example.definition)


def test_what_is_not_covered_names_its_page() -> None:
    assert {key.split(":", 1)[0] for key in NOT_COVERED} <= set(PAGES)
