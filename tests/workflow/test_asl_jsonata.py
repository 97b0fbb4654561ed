"""JSONata mode, differentially against moto's interpreter with jsonata-python plugged in
(jsonata_cases.py), one case per field and rule; then the definition-time refusals, AWS's
added functions and the bounds on hostile expressions."""

from __future__ import annotations

import time
from typing import Any

import pytest
from jsonata_cases import Case, compare, jsonata, jsonpath, ours, task

from sconeflow.workflow import DefinitionError, parse_definition, run_execution

DATA = {"x": 2, "name": "Ada", "items": [1, 2, 3], "obj": {"a": {"b": 5}}, "flag": True}
QEE = "States.QueryEvaluationError"
_CONTEXT_ITEM = (
    "AWS refuses `$` and `$$` only at the top level of an expression (AWS developer guide, "
    "'Transforming data with JSONata': no `$` or `$$` at the top level); inside a path step or "
    "a predicate `$` is the context item, as in every JSONata program. moto's pattern refuses "
    "any `$` not followed by a name (IllegalJSONataVariableReference)"
)


def _failed(error: str, cause: str) -> dict[str, Any]:
    return {"status": "FAILED", "output": None, "error": error, "cause": cause}


def _pass_output(output: Any) -> dict[str, Any]:
    return jsonata({"P": {"Type": "Pass", "Output": output}})


# The guide's conversion sample ("Transforming data with JSONata in Step Functions": the
# "Original sample using JSONPath" and the "Sample after conversion to JSONata"): given the
# input {"title": "Doctor"} and the variable customerName = "María", both states produce
# {"static": "Hello", "title": "Doctor", "name": "María", "not-evaluated": "$customerName"}.
_FN_ECHO = "arn:aws:lambda:us-east-1:123456789012:function:echo"
_CUSTOMER = {"Type": "Pass", "Assign": {"customerName": "María"}, "Next": "T"}
_CONVERTED = {
    "static": "Hello",
    "title": "Doctor",
    "name": "María",
    "not-evaluated": "$customerName",
}
DOC_CONVERSION = [
    Case(
        "doc_example_original_sample_using_jsonpath",
        jsonpath(
            {
                "S": _CUSTOMER,
                "T": {
                    "QueryLanguage": "JSONPath",
                    "Type": "Task",
                    "Resource": _FN_ECHO,
                    "Parameters": {
                        "static": "Hello",
                        "title.$": "$.title",
                        "name.$": "$customerName",
                        "not-evaluated": "$customerName",
                    },
                },
            }
        ),
        {"title": "Doctor"},
    ),
    Case(
        "doc_example_sample_after_conversion_to_jsonata",
        jsonpath(
            {
                "S": _CUSTOMER,
                "T": {
                    "QueryLanguage": "JSONata",
                    "Type": "Task",
                    "Resource": _FN_ECHO,
                    "Arguments": {
                        "static": "Hello",
                        "title": "{% $states.input.title %}",
                        "name": "{% $customerName %}",
                        "not-evaluated": "$customerName",
                    },
                },
            }
        ),
        {"title": "Doctor"},
    ),
]


def test_doc_conversion_sample_outputs_what_the_guide_says() -> None:
    for case in DOC_CONVERSION:
        assert ours(case)["output"] == _CONVERTED, case.id


CASES = [
    *DOC_CONVERSION,
    # --- Output on Pass: literals, expressions at any depth, the operators ---
    Case("output_absent_is_input", jsonata({"P": {"Type": "Pass"}}), DATA),
    Case("output_literal", _pass_output({"k": [1, "two", None, True]}), DATA),
    Case("output_whole_input", _pass_output("{% $states.input %}"), DATA),
    Case("output_field", _pass_output("{% $states.input.name %}"), DATA),
    Case("output_nested_field", _pass_output("{% $states.input.obj.a.b %}"), DATA),
    Case("output_arithmetic", _pass_output({"v": "{% $states.input.x * 10 + 1 %}"}), DATA),
    Case("output_string_concat", _pass_output("{% 'Hi ' & $states.input.name %}"), DATA),
    Case("output_nested_template", _pass_output({"a": {"b": ["{% $states.input.x %}", 7]}}), DATA),
    Case(
        "output_array_map",
        _pass_output("{% $states.input.items.($ * 2) %}"),
        DATA,
        {"status": "SUCCEEDED", "output": [2, 4, 6], "error": None, "cause": None},
        _CONTEXT_ITEM,
    ),
    Case(
        "output_filter",
        _pass_output("{% $states.input.items[$ > 1] %}"),
        DATA,
        {"status": "SUCCEEDED", "output": [2, 3], "error": None, "cause": None},
        _CONTEXT_ITEM,
    ),
    Case("output_sum", _pass_output("{% $sum($states.input.items) %}"), DATA),
    Case("output_count", _pass_output("{% $count($states.input.items) %}"), DATA),
    Case("output_conditional", _pass_output("{% $states.input.x > 1 ? 'big' : 'small' %}"), DATA),
    Case("output_object_constructor", _pass_output("{% {'n': $states.input.name} %}"), DATA),
    Case("output_string_functions", _pass_output("{% $uppercase($states.input.name) %}"), DATA),
    Case("output_block_local", _pass_output("{% ($a := 3; $a * $states.input.x) %}"), DATA),
    Case(
        "output_lambda", _pass_output("{% $map($states.input.items, function($v){$v+1}) %}"), DATA
    ),
    Case("output_null_value", _pass_output({"v": "{% null %}"}), DATA),
    Case("output_boolean", _pass_output("{% $states.input.flag and true %}"), DATA),
    Case("output_keys", _pass_output("{% $keys($states.input.obj) %}"), DATA),
    Case("output_merge", _pass_output("{% $merge([{'a': 1}, {'b': 2}]) %}"), DATA),
    Case("output_string_literal_not_expression", _pass_output("$states.input.name"), DATA),
    Case("output_context_execution", _pass_output("{% $states.context.Execution.Name %}"), DATA),
    Case("output_context_state", _pass_output("{% $states.context.State.Name %}"), DATA),
    Case("output_array_input", _pass_output("{% $states.input[1] %}"), [5, 6, 7]),
    Case("output_number_input", _pass_output("{% $states.input + 1 %}"), 41),
    # --- run-time errors ------------------------------------------------------------------------
    Case("undefined_output", _pass_output("{% $states.input.nope %}"), DATA),
    Case("undefined_output_field", _pass_output({"v": "{% $states.input.nope %}"}), DATA),
    Case(
        "type_error",
        _pass_output("{% $states.input.name + 1 %}"),
        DATA,
        _failed(
            QEE,
            "An error occurred while executing the state 'P' (entered at the event id #2). "
            "The JSONata expression '$states.input.name + 1' specified for the field 'Output' "
            "threw an error during evaluation. T2001: The left side of the + operator must "
            "evaluate to a number",
        ),
        "AWS reports a throwing expression as States.QueryEvaluationError ('The JSONata "
        "expression ... specified for the field ... threw an error during evaluation', AWS "
        "developer guide, 'Handling errors'); moto reports it as States.Runtime with the "
        "evaluator's exception text",
    ),
    # --- Arguments and Output on Task, with $states.result ---
    Case(
        "task_arguments_output",
        jsonata({"T": task("add_one", Output="{% $states.result.Payload %}")}),
        {"n": 1},
    ),
    Case(
        "task_arguments_computed",
        jsonata(
            {
                "T": {
                    **task("echo"),
                    "Arguments": {
                        "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:echo",
                        "Payload": {"double": "{% $states.input.x * 2 %}", "k": "v"},
                    },
                    "Output": "{% $states.result.Payload %}",
                }
            }
        ),
        DATA,
    ),
    Case(
        "task_output_absent_is_result",
        jsonata({"T": task("echo", Output="{% $states.result.Payload %}")}),
        {"a": 1},
    ),
    Case(
        "task_output_combines_input_and_result",
        jsonata(
            {
                "T": task(
                    "add_one",
                    Output={
                        "before": "{% $states.input.n %}",
                        "after": "{% $states.result.Payload.n %}",
                    },
                )
            }
        ),
        {"n": 1},
    ),
    Case(
        "task_timeout_expression",
        jsonata(
            {
                "T": task(
                    "add_one",
                    TimeoutSeconds="{% $states.input.t %}",
                    Output="{% $states.result.Payload %}",
                )
            }
        ),
        {"n": 1, "t": 30},
    ),
    Case(
        "task_chain",
        jsonata(
            {
                "A": task("add_one", Output="{% $states.result.Payload %}", Next="B"),
                "B": task("add_one", Output="{% $states.result.Payload %}"),
            }
        ),
        {"n": 0},
    ),
    # --- Retry and Catch in JSONata mode ---
    Case(
        "catch_output_error_output",
        jsonata(
            {
                "T": task(
                    "boom",
                    Catch=[
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Next": "H",
                            "Output": {
                                "caught": "{% $states.errorOutput.Error %}",
                                "in": "{% $states.input %}",
                            },
                        }
                    ],
                ),
                "H": {"Type": "Pass"},
            }
        ),
        {"n": 1},
    ),
    Case(
        "catch_without_output_is_error_output",
        jsonata(
            {
                "T": task("boom", Catch=[{"ErrorEquals": ["CustomError"], "Next": "H"}]),
                "H": {"Type": "Pass", "Output": "{% $states.input.Error %}"},
            }
        ),
        {"n": 1},
    ),
    Case(
        "catch_query_evaluation_error",
        jsonata(
            {
                "P": {"Type": "Pass", "Output": "{% $states.input.nope %}", "Next": "Z"},
                "Z": {"Type": "Succeed"},
            }
        ),
        {},
    ),
    Case(
        "retry_then_catch",
        jsonata(
            {
                "T": task(
                    "boom",
                    Retry=[
                        {"ErrorEquals": ["CustomError"], "MaxAttempts": 1, "IntervalSeconds": 1}
                    ],
                    Catch=[
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Next": "H",
                            "Output": "{% $states.errorOutput.Error %}",
                        }
                    ],
                ),
                "H": {"Type": "Pass"},
            }
        ),
        {"n": 1},
    ),
    # --- Choice Condition ---
    *[
        Case(
            f"choice_condition_{name}",
            jsonata(
                {
                    "C": {
                        "Type": "Choice",
                        "Choices": [{"Condition": condition, "Next": "Yes"}],
                        "Default": "No",
                    },
                    "Yes": {"Type": "Pass", "Output": "yes"},
                    "No": {"Type": "Pass", "Output": "no"},
                }
            ),
            DATA,
        )
        for name, condition in (
            ("true", "{% $states.input.x = 2 %}"),
            ("false", "{% $states.input.x > 5 %}"),
            ("string", "{% $states.input.name = 'Ada' %}"),
            ("and", "{% $states.input.flag and $count($states.input.items) = 3 %}"),
            ("in", "{% 2 in $states.input.items %}"),
            ("exists", "{% $exists($states.input.nope) %}"),
            ("literal_true", "{% true %}"),
        )
    ],
    Case(
        "choice_rule_output",
        jsonata(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Condition": "{% true %}",
                            "Next": "E",
                            "Output": {"r": "{% $states.input.x %}"},
                        }
                    ],
                },
                "E": {"Type": "Pass"},
            }
        ),
        DATA,
    ),
    Case(
        "choice_default_state_output",
        jsonata(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Condition": "{% false %}", "Next": "E"}],
                    "Default": "E",
                    "Output": {"d": 1},
                },
                "E": {"Type": "Pass"},
            }
        ),
        DATA,
    ),
    Case(
        "choice_no_match",
        jsonata(
            {
                "C": {"Type": "Choice", "Choices": [{"Condition": "{% false %}", "Next": "E"}]},
                "E": {"Type": "Pass"},
            }
        ),
        DATA,
        _failed("States.NoChoiceMatched", "No Matches!"),
        "A Choice with no matching rule and no Default fails with States.NoChoiceMatched (AWS "
        "developer guide, 'Error names'), in JSONata mode as in JSONPath; moto raises a "
        "Python RuntimeError and reports States.Runtime",
    ),
    # --- Wait with expressions, Succeed and Fail ---
    Case(
        "wait_seconds_expression",
        jsonata(
            {
                "W": {
                    "Type": "Wait",
                    "Seconds": "{% $states.input.x - 2 %}",
                    "Output": "{% $states.input.name %}",
                }
            }
        ),
        DATA,
    ),
    Case(
        "wait_timestamp_expression",
        jsonata({"W": {"Type": "Wait", "Timestamp": "{% '2020-01-01T00:00:00Z' %}"}}),
        DATA,
    ),
    Case(
        "succeed_output",
        jsonata({"S": {"Type": "Succeed", "Output": {"done": "{% $states.input.x %}"}}}),
        DATA,
    ),
    Case(
        "fail_error_cause_expressions",
        jsonata(
            {
                "F": {
                    "Type": "Fail",
                    "Error": "{% 'Err' & $states.input.x %}",
                    "Cause": "{% $states.input.name %}",
                }
            }
        ),
        DATA,
    ),
    Case(
        "fail_literal", jsonata({"F": {"Type": "Fail", "Error": "Bad", "Cause": "because"}}), DATA
    ),
    # --- Map: Items, ItemSelector, MaxConcurrency, Output ---
    Case(
        "map_items_expression",
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "Items": "{% $states.input.items %}",
                    "ItemProcessor": {
                        "StartAt": "I",
                        "States": {
                            "I": {"Type": "Pass", "Output": "{% $states.input * 10 %}", "End": True}
                        },
                    },
                }
            }
        ),
        DATA,
    ),
    Case(
        "map_items_literal_array",
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "Items": [1, "{% $states.input.x %}"],
                    "ItemProcessor": {
                        "StartAt": "I",
                        "States": {"I": {"Type": "Pass", "End": True}},
                    },
                }
            }
        ),
        DATA,
    ),
    Case(
        "map_input_array_default",
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "StartAt": "I",
                        "States": {"I": {"Type": "Pass", "End": True}},
                    },
                }
            }
        ),
        [1, 2],
    ),
    Case(
        "map_item_selector_context",
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "Items": "{% $states.input.items %}",
                    "ItemSelector": {
                        "i": "{% $states.context.Map.Item.Index %}",
                        "v": "{% $states.context.Map.Item.Value %}",
                        "name": "{% $states.input.name %}",
                    },
                    "ItemProcessor": {
                        "StartAt": "I",
                        "States": {"I": {"Type": "Pass", "End": True}},
                    },
                }
            }
        ),
        DATA,
    ),
    Case(
        "map_max_concurrency_expression_and_output",
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "Items": "{% $states.input.items %}",
                    "MaxConcurrency": "{% 1 %}",
                    "ItemProcessor": {
                        "StartAt": "I",
                        "States": {"I": {"Type": "Pass", "End": True}},
                    },
                    "Output": {"total": "{% $sum($states.result) %}"},
                }
            }
        ),
        DATA,
    ),
    Case(
        "map_inner_jsonpath_states_in_jsonata_machine",
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "Items": "{% $states.input.items %}",
                    "ItemProcessor": {
                        "StartAt": "I",
                        "States": {
                            "I": {
                                "Type": "Pass",
                                "Output": {"v": "{% $states.input %}"},
                                "End": True,
                            }
                        },
                    },
                }
            }
        ),
        DATA,
    ),
    # --- Parallel: Arguments and Output ---
    Case(
        "parallel_arguments_output",
        jsonata(
            {
                "P": {
                    "Type": "Parallel",
                    "Arguments": {"x": "{% $states.input.x %}"},
                    "Branches": [
                        {
                            "StartAt": "A",
                            "States": {
                                "A": {
                                    "Type": "Pass",
                                    "Output": "{% $states.input.x + 1 %}",
                                    "End": True,
                                }
                            },
                        },
                        {
                            "StartAt": "B",
                            "States": {
                                "B": {
                                    "Type": "Pass",
                                    "Output": "{% $states.input.x + 2 %}",
                                    "End": True,
                                }
                            },
                        },
                    ],
                    "Output": {"sum": "{% $sum($states.result) %}"},
                }
            }
        ),
        DATA,
    ),
    # --- mixing query languages ---
    Case(
        "jsonpath_machine_with_jsonata_state",
        jsonpath(
            {
                "A": {"Type": "Pass", "Parameters": {"v.$": "$.x"}, "Next": "B"},
                "B": {
                    "Type": "Pass",
                    "QueryLanguage": "JSONata",
                    "Output": "{% $states.input.v * 3 %}",
                },
            }
        ),
        DATA,
    ),
    Case(
        "jsonata_then_jsonpath_state_in_jsonpath_machine",
        jsonpath(
            {
                "A": {
                    "Type": "Pass",
                    "QueryLanguage": "JSONata",
                    "Output": {"w": "{% $states.input.x %}"},
                    "Next": "B",
                },
                "B": {"Type": "Pass", "OutputPath": "$.w"},
            }
        ),
        DATA,
    ),
    Case(
        "jsonata_task_in_jsonpath_machine",
        jsonpath(
            {
                "T": {
                    **task("add_one", Output="{% $states.result.Payload.n %}"),
                    "QueryLanguage": "JSONata",
                }
            }
        ),
        {"n": 4},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_result_as_moto(case: Case) -> None:
    compare(case)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


# --- definition-time rules: what CreateStateMachine refuses -------------------------------------


def _problems(definition: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_definition(definition)
    return info.value.problems


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("{% phone %}", "Reference to 'phone' at the top level is not supported"),
        ("{% {'v': phone} %}", "Reference to 'phone' at the top level is not supported"),
        ("{% $$.Execution.Id %}", "Reference to '$$' is not supported"),
        ("{% $ %}", "Reference to '$' is not supported"),
        ("{% a[1,2) %}", "INVALID_JSONATA_EXPRESSION"),
        ("{% $states.errorOutput %}", "$states.errorOutput exists only in a Catch"),
    ],
)
def test_unsupported_expressions_are_refused_when_parsed(output: str, expected: str) -> None:
    problems = _problems(_pass_output(output))
    assert any(expected in p and "State 'P'" in p for p in problems), problems


def test_a_name_in_a_later_path_step_or_predicate_is_accepted() -> None:
    parse_definition(_pass_output("{% $states.input.items[value > 3].name %}"))
    parse_definition(_pass_output("{% $map($states.input.a, function($v){ $v.b }) %}"))


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"Type": "Pass", "InputPath": "$.a"}, "InputPath"),
        ({"Type": "Pass", "Parameters": {"a": 1}}, "Parameters"),
        ({"Type": "Pass", "Result": 1}, "Result"),
        ({"Type": "Pass", "ResultPath": "$.a"}, "ResultPath"),
        ({"Type": "Pass", "OutputPath": "$.a"}, "OutputPath"),
        ({**task("echo"), "ResultSelector": {"a": 1}}, "ResultSelector"),
        ({"Type": "Wait", "SecondsPath": "$.s"}, "SecondsPath"),
    ],
)
def test_jsonpath_fields_are_refused_in_jsonata_states(state: dict[str, Any], field: str) -> None:
    problems = _problems(jsonata({"S": state}))
    message = (
        f"The QueryLanguage is set to 'JSONata', but field '{field}' is only supported for "
        "the 'JSONPath' QueryLanguage"
    )
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"Type": "Pass", "Output": {"a": 1}}, "Output"),
        (
            {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Arguments": {}},
            "Arguments",
        ),
    ],
)
def test_jsonata_fields_are_refused_in_jsonpath_states(state: dict[str, Any], field: str) -> None:
    problems = _problems(jsonpath({"S": state}))
    assert any(f"but field '{field}' is only supported for the 'JSONata'" in p for p in problems)


@pytest.mark.parametrize("text", ["x {% 1 %}", " {% 1 %}", "{% 1 %} ", "{% 1", "1 %}"])
def test_an_improperly_delimited_expression_is_refused(text: str) -> None:
    # AWS developer guide, "Writing JSONata expressions in JSON strings": "the string must
    # start with {% with no leading spaces, and must end with %} with no trailing spaces.
    # Improperly opening or closing the expression will result in a validation error."
    # moto's interpreter reads "x {% 1 %}" as a plain string; the guide decides.
    problems = _problems(_pass_output({"v": text}))
    assert any("(at Output/v) is not a JSONata expression" in p for p in problems), problems


def test_a_jsonpath_state_cannot_revert_a_jsonata_machine() -> None:
    problems = _problems(jsonata({"S": {"Type": "Pass", "QueryLanguage": "JSONPath"}}))
    assert any("can not be 'JSONPath' if set to 'JSONata'" in p for p in problems), problems


def test_a_jsonata_choice_rule_needs_a_condition() -> None:
    machine = jsonata(
        {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "E"}],
            },
            "E": {"Type": "Pass"},
        }
    )
    problems = _problems(machine)
    assert any("JSONata Choice rule" in p for p in problems), problems


# --- AWS's added functions (AWS developer guide, "JSONata functions provided by Step Functions")


def _run_assign(assign: dict[str, Any], data: Any = None) -> dict[str, Any]:
    machine = jsonata(
        {
            "A": {"Type": "Pass", "Assign": assign, "Next": "B"},
            "B": {"Type": "Pass", "Output": {k: "{% $" + k + " %}" for k in assign}},
        }
    )
    result = run_execution(parse_definition(machine), data or {})
    assert result.status == "SUCCEEDED", result.cause
    return result.output


def test_doc_example_partition() -> None:
    # The guide's `$partition` example: {"Assign": {"arrayPartition": ...}}.
    out = _run_assign({"arrayPartition": "{% $partition([1, 2, 3, 4, 5, 6, 7, 8, 9], 3) %}"})
    assert out == {"arrayPartition": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}
    assert _run_assign({"p": "{% $partition([1, 2, 3, 4, 5], 2) %}"}) == {
        "p": [[1, 2], [3, 4], [5]]
    }


def test_doc_example_range() -> None:
    # The guide's `$range` example: "evenNumbers": "{% $range(0, 10, 2) %}".
    assert _run_assign({"evenNumbers": "{% $range(0, 10, 2) %}"}) == {
        "evenNumbers": [0, 2, 4, 6, 8, 10]
    }
    assert _run_assign({"down": "{% $range(3, 1, -1) %}"}) == {"down": [3, 2, 1]}


def test_doc_example_hash() -> None:
    # The guide's `$hash` example: "contentHash": "{% $hash($states.input.content, 'SHA-256') %}".
    out = _run_assign(
        {"contentHash": "{% $hash($states.input.content, 'SHA-256') %}"}, {"content": "abc"}
    )
    assert out == {
        "contentHash": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    }
    assert _run_assign({"m": "{% $hash('abc', 'MD5') %}"}) == {
        "m": "900150983cd24fb0d6963f7d28e17f72"
    }


def test_doc_example_random() -> None:
    # The guide's `$random` example: "randNoSeed" and "randSeeded" (a seed repeats its number).
    out = _run_assign(
        {"randNoSeed": "{% $random() %}", "randSeeded": "{% $random($states.input.seed) %}"},
        {"seed": 7},
    )
    again = _run_assign({"randSeeded": "{% $random($states.input.seed) %}"}, {"seed": 7})
    assert 0 <= out["randNoSeed"] < 1 and 0 <= out["randSeeded"] < 1
    assert again["randSeeded"] == out["randSeeded"]


def test_doc_example_uuid() -> None:
    # The guide's `$uuid` example: "requestId": "{% $uuid() %}" (a version-4 UUID).
    out = _run_assign({"requestId": "{% $uuid() %}"})
    assert len(out["requestId"]) == 36 and out["requestId"][14] == "4"


def test_doc_example_parse() -> None:
    # The guide's `$parse` example deserialises a JSON string, the replacement for $eval.
    out = _run_assign(
        {"parsed": "{% $parse($states.input.json_string) %}"}, {"json_string": '{"a": [1, 2]}'}
    )
    assert out == {"parsed": {"a": [1, 2]}}


# --- hostile expressions: refused or stopped with a States.* error, in bounded time -------------


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("($f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000))", "Stack overflow"),
        ("$count([1..100000000])", "D2014"),
        ("$range(0, 100000000, 1)", "memory limit"),
        ("$pad('', 100000000, 'x')", "memory limit"),
        (
            "($s := 'xx'; $f := function($s, $n){ $n = 0 ? $s : $f($s & $s, $n - 1) }; $f($s, 40))",
            "memory limit",
        ),
        ("$eval('1 + 1')", "T1006"),
        ("$match($states.input.s, /(?:(?:a|a)+)+$/)", "timed out"),
    ],
)
def test_hostile_expressions_are_stopped(expression: str, reason: str) -> None:
    data = {"s": "a" * 60 + "!"}  # exponential backtracking for the pattern above
    started = time.monotonic()
    result = run_execution(parse_definition(_pass_output("{% " + expression + " %}")), data)
    assert time.monotonic() - started < 10  # generous: bounds are seconds, not minutes
    assert result.status == "FAILED"
    assert result.error == QEE
    assert reason in (result.cause or ""), result.cause


def test_an_endless_tail_call_is_stopped_by_the_time_bound() -> None:
    result = run_execution(
        parse_definition(_pass_output("{% ($f := function(){ $f() }; $f()) %}")), {}
    )
    assert result.error == QEE and "timeout" in (result.cause or "").lower(), result.cause


def test_a_failing_expression_records_evaluation_failed() -> None:
    result = run_execution(parse_definition(_pass_output({"v": "{% $states.input.nope %}"})), {})
    failed = [e for e in result.events if e["type"] == "EvaluationFailed"]
    assert failed and failed[0]["evaluationFailedEventDetails"]["location"] == "Output/v"
    assert ours(Case("x", _pass_output(1)))["output"] == 1


def test_a_map_without_items_over_an_object_input_fails_once_prefixed() -> None:
    # Without Items a JSONata Map iterates its input, which must be an array (the same
    # refusal as a JSONPath Map's; see distributed.jsonata_items). The cause names the
    # state once: it was once prefixed twice.
    body = {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}}
    machine = jsonata({"M": {"Type": "Map", "ItemProcessor": body}})
    result = run_execution(parse_definition(machine), {"a": 1})
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    assert result.cause == (
        "An error occurred while executing the state 'M' (entered at the event id #2). "
        "Map state input must be an array but was: object"
    )
