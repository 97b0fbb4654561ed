"""Workflow variables (`Assign`, `$name`) in both query languages, differentially against
moto's interpreter (jsonata_cases.py): where a variable can be assigned and read, the order
of evaluation, and the scope rules of Map and Parallel; then AWS's limits and names."""

from __future__ import annotations

from typing import Any

import pytest
from asl_moto_harness import MotoMachine
from jsonata_cases import Case, compare, handlers, jsonata, jsonpath, task

from sconeflow.workflow import DefinitionError, FakeClock, parse_definition, run_execution
from sconeflow.workflow.variables import MAX_VARIABLE_BYTES

FN = "arn:aws:lambda:us-east-1:123456789012:function:{}"
DATA = {"x": 2, "name": "Ada", "items": [1, 2, 3], "obj": {"a": {"b": 5}}}


def _set(assign: dict[str, Any], nxt: str = "R") -> dict[str, Any]:
    return {"Type": "Pass", "Assign": assign, "Next": nxt}


def _read(**template: Any) -> dict[str, Any]:
    """A JSONPath Pass whose Parameters read variables."""
    return {"Type": "Pass", "Parameters": template}


def _inner(state: dict[str, Any], name: str = "I") -> dict[str, Any]:
    return {"StartAt": name, "States": {name: {**state, "End": True}}}


def _ok(output: Any) -> dict[str, Any]:
    return {"status": "SUCCEEDED", "output": output, "error": None, "cause": None}


_AFTER_OUTPUT = (
    "AWS applies a state's assignments after its output: values assigned in a state are "
    "available to the states that follow, and every expression of the state itself (its "
    "OutputPath or Output, its other Assign values) reads the values from state entry (AWS "
    "developer guide, 'Passing data between states with variables'). moto binds the new "
    "values before it evaluates the output"
)


CASES = [
    # --- JSONPath: assigning ---
    Case(
        # The guide's example of setting variables: "Assign": {"productName": "product1",
        # "count": 42, "available": true}.
        "doc_example_assign_literals",
        jsonpath(
            {
                "S": _set({"productName": "product1", "count": 42, "available": True}),
                "R": _read(**{"p.$": "$productName", "c.$": "$count", "a.$": "$available"}),
            }
        ),
    ),
    Case(
        "assign_from_input",
        jsonpath({"S": _set({"v.$": "$.x"}), "R": _read(**{"v.$": "$v"})}),
        DATA,
    ),
    Case(
        "assign_from_pass_result",
        jsonpath(
            {
                "S": {"Type": "Pass", "Result": {"r": 9}, "Assign": {"v.$": "$.r"}, "Next": "R"},
                "R": _read(**{"v.$": "$v"}),
            }
        ),
        DATA,
    ),
    Case(
        "assign_from_pass_parameters",
        jsonpath(
            {
                "S": {
                    "Type": "Pass",
                    "Parameters": {"p.$": "$.name"},
                    "Assign": {"v.$": "$.p"},
                    "Next": "R",
                },
                "R": _read(**{"v.$": "$v"}),
            }
        ),
        DATA,
    ),
    Case(
        "assign_from_context",
        jsonpath({"S": _set({"v.$": "$$.Execution.Name"}), "R": _read(**{"v.$": "$v"})}),
        DATA,
    ),
    Case(
        "assign_from_intrinsic",
        jsonpath({"S": _set({"v.$": "States.Format('{}!', $.name)"}), "R": _read(**{"v.$": "$v"})}),
        DATA,
    ),
    Case(
        "assign_object_and_array_values",
        jsonpath(
            {
                "S": _set({"o": {"k": [1, {"z": None}]}, "arr.$": "$.items"}),
                "R": _read(**{"o.$": "$o", "a.$": "$arr"}),
            }
        ),
        DATA,
    ),
    Case(
        "assign_overwrites",
        jsonpath({"S": _set({"v": 1}, "T"), "T": _set({"v": 2}), "R": _read(**{"v.$": "$v"})}),
    ),
    Case(
        "assign_reads_values_from_state_entry",
        jsonpath(
            {
                "S": _set({"v": 1}, "T"),
                "T": _set({"v": 2, "old.$": "$v"}),
                "R": _read(**{"old.$": "$old", "v.$": "$v"}),
            }
        ),
    ),
    Case(
        # LocalStack's recorded AWS run BASE_EVALUATION_ORDER_PASS_STATE: OutputPath reads the
        # variable's value from before the state's own Assign.
        "assign_takes_effect_after_output_path",
        jsonpath(
            {
                "S": {
                    "Type": "Pass",
                    "Result": {"q": "why"},
                    "Assign": {"question.$": "$.q", "answer": 42},
                    "Next": "T",
                },
                "T": {
                    "Type": "Pass",
                    "InputPath": "$answer",
                    "ResultPath": "$.theAnswer",
                    "OutputPath": "$answer",
                    "Assign": {"answer": "later"},
                    "Next": "R",
                },
                "R": _read(**{"a.$": "$answer", "q.$": "$question", "in.$": "$"}),
            }
        ),
        {},
        _ok({"a": "later", "q": "why", "in": 42}),
        _AFTER_OUTPUT,
    ),
    # --- JSONPath: reading ---
    Case(
        "read_nested_path",
        jsonpath({"S": _set({"o.$": "$.obj"}), "R": _read(**{"b.$": "$o.a.b"})}),
        DATA,
    ),
    Case(
        "read_array_index",
        jsonpath({"S": _set({"l.$": "$.items"}), "R": _read(**{"b.$": "$l[1]"})}),
        DATA,
    ),
    Case(
        "read_in_input_path",
        jsonpath({"S": _set({"o.$": "$.obj"}), "R": {"Type": "Pass", "InputPath": "$o.a"}}),
        DATA,
    ),
    Case(
        "read_in_output_path",
        jsonpath({"S": _set({"o.$": "$.obj"}), "R": {"Type": "Pass", "OutputPath": "$o"}}),
        DATA,
    ),
    Case(
        "read_in_intrinsic",
        jsonpath(
            {
                "S": _set({"who": "World"}),
                "R": _read(**{"g.$": "States.Format('Hello {} and {}', $who, $.name)"}),
            }
        ),
        DATA,
    ),
    Case(
        "read_in_result_selector",
        jsonpath(
            {
                "S": _set({"k": "kept"}),
                "R": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": FN.format("echo"), "Payload.$": "$"},
                    "ResultSelector": {"p.$": "$.Payload", "k.$": "$k"},
                },
            }
        ),
        DATA,
    ),
    *[
        Case(
            f"read_in_choice_{name}",
            jsonpath(
                {
                    "S": _set({"v.$": "$.x", "limit": 2}, "C"),
                    "C": {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"},
                    "Yes": {"Type": "Pass", "Result": "yes"},
                    "No": {"Type": "Pass", "Result": "no"},
                }
            ),
            DATA,
        )
        for name, rule in (
            ("variable", {"Variable": "$v", "NumericEquals": 2}),
            ("variable_false", {"Variable": "$v", "NumericGreaterThan": 2}),
            ("path_operand", {"Variable": "$.x", "NumericEqualsPath": "$limit"}),
            ("is_present", {"Variable": "$v", "IsPresent": True}),
        )
    ],
    Case(
        "read_in_wait_seconds_path",
        jsonpath({"S": _set({"s": 0}), "R": {"Type": "Wait", "SecondsPath": "$s"}}),
        DATA,
    ),
    Case(
        # LocalStack's recorded AWS run BASE_REFERENCE_IN_FAIL.
        "read_in_fail_error_and_cause_path",
        jsonpath(
            {
                "S": _set({"errorVar": "Exception", "causeVar": "An Exception was encountered"}),
                "R": {"Type": "Fail", "ErrorPath": "$errorVar", "CausePath": "$causeVar"},
            }
        ),
    ),
    # --- JSONPath: Assign in Task, Catch, Choice and Wait ---
    Case(
        "task_assign_reads_raw_result",
        jsonpath(
            {
                "T": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": FN.format("add_one"), "Payload.$": "$"},
                    "ResultSelector": {"n.$": "$.Payload.n"},
                    "Assign": {"code.$": "$.StatusCode", "n.$": "$.Payload.n"},
                    "Next": "R",
                },
                "R": _read(**{"code.$": "$code", "n.$": "$n", "in.$": "$"}),
            }
        ),
        {"n": 1},
    ),
    Case(
        "catch_assign_reads_error_output",
        jsonpath(
            {
                "T": {
                    "Type": "Task",
                    "Resource": FN.format("boom"),
                    "Assign": {"never": 1},
                    "Catch": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Assign": {"err.$": "$.Error"},
                            "ResultPath": None,
                            "Next": "R",
                        }
                    ],
                },
                "R": _read(**{"err.$": "$err", "in.$": "$"}),
            }
        ),
        {"n": 1},
    ),
    Case(
        "choice_rule_assign",
        jsonpath(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Variable": "$.x",
                            "NumericEquals": 2,
                            "Assign": {"picked": "rule"},
                            "Next": "R",
                        }
                    ],
                    "Default": "R",
                },
                "R": _read(**{"p.$": "$picked"}),
            }
        ),
        DATA,
        _ok({"p": "rule"}),
        "A Choice rule's own Assign applies when the rule matches, in JSONPath states as in "
        "JSONata ones (AWS developer guide, 'Passing data between states with variables': "
        "Choice supports Assign on each rule and on the state); moto ignores a JSONPath rule's "
        "Assign, so the variable is never bound",
    ),
    Case(
        "wait_assign",
        jsonpath(
            {
                "W": {"Type": "Wait", "Seconds": 0, "Assign": {"w.$": "$.name"}, "Next": "R"},
                "R": _read(**{"w.$": "$w"}),
            }
        ),
        DATA,
    ),
    # --- scopes: Map and Parallel ---
    Case(
        # LocalStack's recorded AWS run BASE_SCOPE_MAP: ItemsPath and the iterations read the
        # outer scope.
        "map_reads_outer_scope",
        jsonpath(
            {
                "S": _set({"x": 42, "items": [1, 2, 3]}, "M"),
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$items",
                    "MaxConcurrency": 1,
                    "ItemProcessor": _inner(
                        {
                            "Type": "Pass",
                            "Assign": {"innerX.$": "$x"},
                            "Parameters": {"x.$": "$x", "i.$": "$"},
                        }
                    ),
                    "Next": "R",
                },
                "R": _read(**{"final.$": "$x", "in.$": "$"}),
            }
        ),
    ),
    Case(
        "map_item_selector_reads_variable",
        jsonpath(
            {
                "S": _set({"tag": "t"}, "M"),
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemSelector": {"v.$": "$$.Map.Item.Value", "tag.$": "$tag"},
                    "ItemProcessor": _inner({"Type": "Pass"}),
                },
            }
        ),
        DATA,
    ),
    Case(
        "map_inner_variables_vanish",
        jsonpath(
            {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemProcessor": _inner({"Type": "Pass", "Assign": {"inner.$": "$"}}),
                    "Next": "R",
                },
                "R": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.[0]", "IsPresent": True, "Next": "Done"}],
                    "Default": "Done",
                },
                "Done": {
                    "Type": "Pass",
                    "QueryLanguage": "JSONata",
                    "Output": "{% $exists($inner) %}",
                },
            }
        ),
        DATA,
    ),
    Case(
        "map_nested_reads_two_scopes_up",
        jsonpath(
            {
                "S": _set({"top": "T"}, "M"),
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.rows",
                    "ItemProcessor": {
                        "StartAt": "A",
                        "States": {
                            "A": {"Type": "Pass", "Assign": {"row.$": "$"}, "Next": "N"},
                            "N": {
                                "Type": "Map",
                                "ItemsPath": "$row",
                                "ItemProcessor": _inner(
                                    {"Type": "Pass", "Parameters": {"top.$": "$top", "v.$": "$"}}
                                ),
                                "End": True,
                            },
                        },
                    },
                },
            }
        ),
        {"rows": [[1, 2], [3]]},
    ),
    Case(
        # LocalStack's recorded AWS run BASE_SCOPE_PARALLEL: each branch reads the outer scope.
        "parallel_branches_read_outer_scope",
        jsonpath(
            {
                "S": _set({"x": 42}, "P"),
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        _inner(
                            {
                                "Type": "Pass",
                                "Assign": {"innerX.$": "$x", "value.$": "$"},
                                "Parameters": {"b": 1, "x.$": "$x"},
                            }
                        ),
                        _inner(
                            {
                                "Type": "Pass",
                                "Assign": {"innerX.$": "$x"},
                                "Parameters": {"b": 2, "x.$": "$x"},
                            },
                            "J",
                        ),
                    ],
                },
            }
        ),
    ),
    Case(
        "parallel_branch_variables_do_not_leak",
        jsonpath(
            {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "A",
                            "States": {
                                "A": {"Type": "Pass", "Assign": {"only_a": 1}, "Next": "A2"},
                                "A2": {
                                    "Type": "Pass",
                                    "QueryLanguage": "JSONata",
                                    "Output": "{% $exists($only_a) %}",
                                    "End": True,
                                },
                            },
                        },
                        _inner(
                            {
                                "Type": "Pass",
                                "QueryLanguage": "JSONata",
                                "Output": "{% $exists($only_a) %}",
                            }
                        ),
                    ],
                    "Next": "R",
                },
                "R": {
                    "Type": "Pass",
                    "QueryLanguage": "JSONata",
                    "Output": {
                        "branches": "{% $states.input %}",
                        "after": "{% $exists($only_a) %}",
                    },
                },
            }
        ),
    ),
    # --- JSONata ---
    Case(
        "jsonata_assign_and_read",
        jsonata(
            {
                "S": _set({"v": "{% $states.input.x * 3 %}", "n": "{% $states.input.name %}"}),
                "R": {"Type": "Pass", "Output": "{% $n & ':' & $v %}"},
            }
        ),
        DATA,
    ),
    Case(
        "jsonata_output_sees_old_value",
        jsonata(
            {
                "S": _set({"v": 1}, "T"),
                "T": {
                    "Type": "Pass",
                    "Assign": {"v": 2},
                    "Output": {"seen": "{% $v %}"},
                    "Next": "R",
                },
                "R": {"Type": "Pass", "Output": {"now": "{% $v %}", "in": "{% $states.input %}"}},
            }
        ),
        {},
        _ok({"now": 2, "in": {"seen": 1}}),
        _AFTER_OUTPUT,
    ),
    Case(
        "jsonata_assign_reads_old_value",
        jsonata(
            {
                "S": _set({"x": 1}, "T"),
                "T": _set({"x": 5, "y": "{% $x %}"}),
                "R": {"Type": "Pass", "Output": ["{% $x %}", "{% $y %}"]},
            }
        ),
    ),
    Case(
        "jsonata_assign_whole_object_expression",
        jsonata(
            {
                "S": _set(
                    {
                        "o": "{% {'sum': $sum($states.input.items), 'first': $states.input.items[0]} %}"  # noqa: E501
                    }
                ),
                "R": {"Type": "Pass", "Output": "{% $o %}"},
            }
        ),
        DATA,
    ),
    Case(
        "jsonata_task_assign_from_result",
        jsonata(
            {
                "T": task(
                    "add_one",
                    Assign={"n": "{% $states.result.Payload.n %}"},
                    Output="{% $states.input %}",
                    Next="R",
                ),
                "R": {"Type": "Pass", "Output": {"n": "{% $n %}", "in": "{% $states.input %}"}},
            }
        ),
        {"n": 1},
    ),
    Case(
        "jsonata_catch_assign_from_error_output",
        jsonata(
            {
                "T": task(
                    "boom",
                    Catch=[
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Assign": {"e": "{% $states.errorOutput.Error %}"},
                            "Output": "{% $states.input %}",
                            "Next": "R",
                        }
                    ],
                ),
                "R": {"Type": "Pass", "Output": {"e": "{% $e %}", "in": "{% $states.input %}"}},
            }
        ),
        {"n": 1},
    ),
    Case(
        "jsonata_choice_rule_assign_and_condition_reads_variable",
        jsonata(
            {
                "S": _set({"limit": 1}, "C"),
                "C": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Condition": "{% $states.input.x > $limit %}",
                            "Assign": {"r": "over"},
                            "Next": "R",
                        }
                    ],
                    "Default": "R",
                    "Assign": {"r": "under"},
                },
                "R": {"Type": "Pass", "Output": "{% $r %}"},
            }
        ),
        DATA,
        _ok("over"),
        "A matched rule's Assign applies, and the state's own Assign only when no rule matches "
        "and Default is taken; moto decides that Default was taken by comparing the next "
        "state's name with Default's, so a rule that leads where Default does gets the "
        "state-level Assign on top of its own",
    ),
    Case(
        "jsonata_choice_default_assign",
        jsonata(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Condition": "{% false %}", "Assign": {"r": "rule"}, "Next": "R"}],
                    "Default": "R",
                    "Assign": {"r": "default"},
                },
                "R": {"Type": "Pass", "Output": "{% $r %}"},
            }
        ),
        DATA,
    ),
    Case(
        "jsonata_map_items_from_variable_and_outer_read",
        jsonata(
            {
                "S": _set({"list": "{% $states.input.items %}", "k": 10}, "M"),
                "M": {
                    "Type": "Map",
                    "Items": "{% $list %}",
                    "ItemProcessor": _inner({"Type": "Pass", "Output": "{% $states.input * $k %}"}),
                },
            }
        ),
        DATA,
    ),
    Case(
        "jsonata_parallel_reads_outer",
        jsonata(
            {
                "S": _set({"k": 3}, "P"),
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        _inner({"Type": "Pass", "Output": "{% $k %}"}),
                        _inner({"Type": "Pass", "Output": "{% $k * 2 %}"}, "J"),
                    ],
                },
            }
        ),
    ),
    Case(
        "jsonata_map_iteration_assigns_its_own",
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "Items": "{% $states.input.items %}",
                    "ItemProcessor": {
                        "StartAt": "A",
                        "States": {
                            "A": {
                                "Type": "Pass",
                                "Assign": {"me": "{% $states.input %}"},
                                "Next": "B",
                            },
                            "B": {"Type": "Pass", "Output": "{% $me + 100 %}", "End": True},
                        },
                    },
                }
            }
        ),
        DATA,
    ),
    Case(
        "jsonata_wait_seconds_from_variable",
        jsonata(
            {
                "S": _set({"s": 0}, "W"),
                "W": {
                    "Type": "Wait",
                    "Seconds": "{% $s %}",
                    "Assign": {"waited": True},
                    "Next": "R",
                },
                "R": {"Type": "Pass", "Output": "{% $waited %}"},
            }
        ),
    ),
    Case(
        "jsonata_undefined_variable",
        jsonata({"R": {"Type": "Pass", "Output": {"v": "{% $nothing %}"}}}),
    ),
    Case(
        "mixed_jsonpath_assigns_jsonata_reads",
        jsonpath(
            {
                "S": _set({"v.$": "$.name"}),
                "R": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $v %}"},
            }
        ),
        DATA,
    ),
    Case(
        "mixed_jsonata_assigns_jsonpath_reads",
        jsonpath(
            {
                "S": {
                    "Type": "Pass",
                    "QueryLanguage": "JSONata",
                    "Assign": {"v": "{% $states.input.x + 1 %}"},
                    "Next": "R",
                },
                "R": _read(**{"v.$": "$v"}),
            }
        ),
        DATA,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_result_as_moto(case: Case) -> None:
    compare(case)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def _assigned(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    return [
        (e["stateExitedEventDetails"]["name"], e["stateExitedEventDetails"]["assignedVariables"])
        for e in events
        if "assignedVariables" in e.get("stateExitedEventDetails", {})
    ]


@pytest.mark.parametrize(
    "case_id",
    [
        "doc_example_assign_literals",
        "assign_reads_values_from_state_entry",
        "map_reads_outer_scope",
    ],
)
def test_history_lists_assigned_variables_as_moto_does(case_id: str) -> None:
    """StateExited events carry `assignedVariables` (name -> JSON text), as AWS records them."""
    case = next(c for c in CASES if c.id == case_id)
    ours = run_execution(
        parse_definition(case.definition), case.input, handlers(), clock=FakeClock()
    )
    theirs = MotoMachine(case.definition).run(case.input, handlers())["events"]
    moto = [
        (e["stateExitedEventDetails"]["name"], e["stateExitedEventDetails"]["assignedVariables"])
        for e in theirs
        if "assignedVariables" in (e.get("stateExitedEventDetails") or {})
    ]
    assert _assigned(ours.events) == moto and moto


def test_an_inner_scope_cannot_assign_an_outer_variable() -> None:
    machine = jsonpath(
        {
            "S": _set({"x": 1}, "M"),
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": _inner({"Type": "Pass", "Assign": {"x": 2}}),
            },
        }
    )
    result = run_execution(parse_definition(machine), DATA)
    assert result.status == "FAILED" and result.error == "States.Runtime"
    assert "belongs to an outer scope" in (result.cause or "")


def test_a_variable_over_256_kib_fails_with_data_limit_exceeded() -> None:
    machine = jsonata({"S": {"Type": "Pass", "Assign": {"big": "{% $pad('', 270000, 'x') %}"}}})
    result = run_execution(parse_definition(machine), {})
    assert result.status == "FAILED" and result.error == "States.DataLimitExceeded", result.cause
    assert str(MAX_VARIABLE_BYTES) in (result.cause or "")


def test_an_assign_field_over_256_kib_in_all_fails() -> None:
    values = {f"v{i}": "{% $pad('', 100000, 'x') %}" for i in range(3)}
    result = run_execution(parse_definition(jsonata({"S": {"Type": "Pass", "Assign": values}})), {})
    assert result.error == "States.DataLimitExceeded" and "one Assign field" in (result.cause or "")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("states", "reserved"), ("1x", "not a valid variable name"), ("a-b", "not a valid")],
)
def test_bad_variable_names_are_refused(name: str, expected: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(jsonata({"S": {"Type": "Pass", "Assign": {name: 1}}}))
    assert any(expected in p for p in info.value.problems), info.value.problems
