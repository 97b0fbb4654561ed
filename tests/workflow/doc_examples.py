"""The machinery of the tests that run the AWS Step Functions developer guide's examples
(test_asl_doc_examples_*.py): an `Example` is one definition (or a field of one, inside the
smallest state machine that holds it) from one page, with the input and the result the
page documents; `check_example` runs it on this engine and holds it to that result.

An example's id is "<page>: <section heading or example name>", and PAGES maps each page
to its URL, so a reader can check an example against the page. The pages were read whole,
in a copy taken after the guide's September 11, 2025 ItemReader update. Where a page's own
text disagrees with itself (a typo in a definition, an output that does not match its
input), the example's comment says so and the example runs what the page evidently means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sconeflow.workflow import (
    ChildExecution,
    DefinitionError,
    ExecutionResult,
    FakeClock,
    MemoryObjectStore,
    parse_definition,
    run_execution,
)

GUIDE = "https://docs.aws.amazon.com/step-functions/latest/dg/"
PAGES = {
    "transforming-data": GUIDE + "transforming-data.html",
    "workflow-variables": GUIDE + "workflow-variables.html",
    "state-choice": GUIDE + "state-choice.html",
    "state-task": GUIDE + "state-task.html",
    "state-pass": GUIDE + "state-pass.html",
    "state-wait": GUIDE + "state-wait.html",
    "state-fail": GUIDE + "state-fail.html",
    # Read in part (the current page's beginning); its examples as the guide's GitHub copy
    # (awsdocs/aws-step-functions-developer-guide, amazon-states-language-parallel-state.md)
    # has them.
    "state-parallel": GUIDE + "state-parallel.html",
    "statemachine-structure": GUIDE + "statemachine-structure.html",
    "input-output-contextobject": GUIDE + "input-output-contextobject.html",
    "concepts-error-handling": GUIDE + "concepts-error-handling.html",
    "state-map-inline": GUIDE + "state-map-inline.html",
    "input-output-itemspath": GUIDE + "input-output-itemspath.html",
    "input-output-itemselector": GUIDE + "input-output-itemselector.html",
    "state-map-distributed": GUIDE + "state-map-distributed.html",
    "input-output-itemreader": GUIDE + "input-output-itemreader.html",
    "input-output-itembatcher": GUIDE + "input-output-itembatcher.html",
    "input-output-resultwriter": GUIDE + "input-output-resultwriter.html",
    "example-csv-parse-dist-map": GUIDE + "example-csv-parse-dist-map.html",
}
QEE = "States.QueryEvaluationError"
INVOKE = "arn:aws:states:::lambda:invoke"
FN = "arn:aws:lambda:us-east-2:123456789012:function:{}"
BUCKET = "amzn-s3-demo-bucket"
DEST = "amzn-s3-demo-destination-bucket"
DISTRIBUTED = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
ECHO = FN.format("processCSVData")  # returns its event: the Task's result is its input
GET_CURRENT_PRICE = {  # the Task state page's "Invoke a function with JSONata Arguments"
    "Type": "Task",
    "QueryLanguage": "JSONata",
    "Resource": INVOKE,
    "Next": "Check Price",
    "Arguments": {
        "Payload": {"product": "{% $states.context.Execution.Input.product %}"},
        "FunctionName": FN.format("priceWatcher:$LATEST"),
    },
    "Assign": {"currentPrice": "{% $states.result.Payload.current_price %}"},
}


@dataclass
class Example:
    id: str  # "<page>: <section heading>"; the page's URL is PAGES[page]
    definition: dict[str, Any]
    input: Any = field(default_factory=dict)
    output: Any = None  # the documented output, when `error` and `refused` are None
    error: str | None = None  # the documented error name of a failed execution
    status: str = "FAILED"  # how an execution with `error` ends (TIMED_OUT for States.Timeout)
    cause: str | None = None  # a part of its cause
    refused: str | None = None  # a part of the problem CreateStateMachine reports
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)  # the S3 dataset
    # More the page documents: called with the result, the store and the children's inputs.
    check: Callable[[ExecutionResult, MemoryObjectStore, list[Any]], None] | None = None

    @property
    def page(self) -> str:
        return self.id.split(":", 1)[0]


def machine(states: dict[str, Any], *, jsonata: bool = True, **top: Any) -> dict[str, Any]:
    """A state machine of `states` (the first starts); states with no way on get End."""
    for state in states.values():
        if state["Type"] not in ("Succeed", "Fail", "Choice") and "Next" not in state:
            state.setdefault("End", True)
    definition: dict[str, Any] = {"StartAt": next(iter(states)), "States": states, **top}
    if jsonata:
        definition = {"QueryLanguage": "JSONata", **definition}
    return definition


def assigning(assign: dict[str, Any], *, jsonata: bool = True, **first: Any) -> dict[str, Any]:
    """A Pass state setting `assign`, then a Pass whose output is every variable it set."""
    if jsonata:
        read = {"Type": "Pass", "Output": {name: "{% $" + name + " %}" for name in assign}}
    else:
        read = {"Type": "Pass", "Parameters": {f"{name}.$": f"${name}" for name in assign}}
    return machine(
        {"Set": {"Type": "Pass", "Assign": assign, "Next": "Read", **first}, "Read": read},
        jsonata=jsonata,
    )


def with_variables(values: dict[str, Any], states: dict[str, Any]) -> dict[str, Any]:
    """A JSONata machine that first assigns `values`, then runs `states`."""
    first = next(iter(states))
    return machine({"Given": {"Type": "Pass", "Assign": values, "Next": first}, **states})


# --- the Lambda functions the pages' examples invoke -----------------------------------------


class HandledError(Exception):
    """The error name the guide's FailFunction reports in its Retry examples."""


class ErrorA(Exception):
    pass


class ErrorB(Exception):
    pass


class ErrorC(Exception):
    pass


def handlers(clock: FakeClock) -> dict[str, Callable[[Any, Any], Any]]:
    complex_errors = [ErrorA, ErrorB, ErrorC, ErrorB]  # "Complex retry scenario"

    def fail_function(event: Any, context: Any) -> Any:
        raise HandledError("error")

    def sleep10(event: Any, context: Any) -> Any:
        clock.advance(11)  # the guide's function sleeps 11 s, past a TimeoutSeconds of 2
        return {}

    def x_task(event: Any, context: Any) -> Any:
        raise complex_errors.pop(0)("failed")

    return {
        "priceWatcher": lambda event, context: {"current_price": 9.99, **event},
        "HelloWorld": lambda event, context: {"hello": event},
        "HelloFunction": lambda event, context: "Hello, AWS Step Functions!",
        "ship-val": lambda event, context: {"validated": event},
        "processCSVData": lambda event, context: event,
        "FailFunction": fail_function,
        "sleep10": sleep10,
        "X": x_task,
        "AddressFinder": lambda event, context: {"address": "1 Main St"},
        "PhoneFinder": lambda event, context: {"phone": "555-0100"},
        "Add": lambda event, context: event[0] + event[1],
        "Subtract": lambda event, context: event[0] - event[1],
    }


def scheduled_timeout(result: ExecutionResult, seconds: int) -> None:
    """The Task's first invocation was scheduled with `seconds` of TimeoutSeconds."""
    scheduled = [
        e for e in result.events if e["type"] in ("TaskScheduled", "LambdaFunctionScheduled")
    ]
    details = next(v for k, v in scheduled[0].items() if k.endswith("EventDetails"))
    assert details["timeoutInSeconds"] == seconds, details


def count(result: ExecutionResult, event_type: str, expected: int) -> None:
    assert sum(e["type"] == event_type for e in result.events) == expected


# --- running them ------------------------------------------------------------------------


def run_example(
    example_definition: dict[str, Any],
    data: Any,
    objects: dict[tuple[str, str], bytes] | None = None,
) -> tuple[ExecutionResult, MemoryObjectStore, list[Any]]:
    clock = FakeClock()
    store = MemoryObjectStore(clock)
    for (bucket, key), body in (objects or {}).items():
        store.put(bucket, key, body)
    children: list[Any] = []

    def child_listener(child: ChildExecution) -> Callable[[Any], None]:
        record: dict[str, Any] = {"input": child.input, "events": []}
        children.append(record)
        return record["events"].append

    result = run_execution(
        parse_definition(example_definition, name="machine"),
        data,
        handlers(clock),
        name="exec",
        clock=clock,
        store=store,
        children=child_listener,
    )
    return result, store, children


def check_example(example: Example) -> None:
    """Run `example` and hold it to what its page documents."""
    assert example.page in PAGES, f"{example.page} is not one of the pages read"
    if example.refused is not None:
        with pytest.raises(DefinitionError) as info:
            parse_definition(example.definition)
        assert any(example.refused in p for p in info.value.problems), info.value.problems
        return
    result, store, children = run_example(example.definition, example.input, example.objects)
    if example.error is not None:
        assert (result.status, result.error) == (example.status, example.error), result.cause
        if example.cause is not None:
            assert example.cause in (result.cause or ""), result.cause
    else:
        assert result.status == "SUCCEEDED", (result.error, result.cause)
        if example.check is None or example.output is not None:
            assert result.output == example.output
    if example.check is not None:
        example.check(result, store, children)


# --- what the pages document that no example here runs, and why -----------------------------

NOT_COVERED = {
    "input-output-itemspath: ProcessWebServers (ItemsPath selecting a JSON object)": (
        "The 2025 pages (ItemsPath, Items, ItemReader's 'JSON data from a previous step', the "
        "Context object's Map.Item.Key) say a Map iterates over an object's key-value pairs, "
        "but no page shows what an iteration receives; moto's interpreter (LocalStack's, "
        "checked against AWS before the change) refuses a non-array, and so does this engine."
    ),
    "input-output-itemreader: Parquet file in an Amazon S3 bucket": (
        "InputType PARQUET needs a Parquet reader; refused at definition time, naming it."
    ),
    "input-output-itemreader: Athena manifest (process multiple items)": (
        "ManifestType ATHENA_DATA is not implemented; refused at definition time."
    ),
    "input-output-itemreader: Amazon S3 inventory (process multiple items)": (
        "InputType MANIFEST / ManifestType S3_INVENTORY is not implemented; refused."
    ),
    "input-output-itemreader: external compression GZIP and ZSTD": (
        "Compressed objects are not decompressed (a .gz object fails as not UTF-8 text)."
    ),
    "input-output-itemreader: 8 MB items, 10 GB files, 5 GB result files": (
        "AWS's size limits on datasets and exports are not exercised (no data that large)."
    ),
    "state-task: Credentials field examples": (
        "Cross-account Credentials are refused ('not supported'): one account here."
    ),
    "state-task: BATCH_JOB, activities, HTTP Task": (
        "Only Lambda tasks run here; the timeout examples run with a Lambda function instead."
    ),
    "input-output-contextobject: Task.Token and Execution.RedriveTime": (
        "Task.Token exists only for .waitForTaskToken tasks, RedriveTime after a redrive; "
        "the redrive fields are tested with the engine (test_asl_parity)."
    ),
    "transforming-data: integer parameters round down, for negative numbers": (
        "The page says non-integers are 'rounded down'; the engine truncates towards zero "
        "(the same for positive numbers, which the example uses); which one AWS does for a "
        "negative non-integer is not documented."
    ),
    "state-pass: Assign (Optional, JSONata only)": (
        "The Pass page marks Assign JSONata only; the variables page documents Assign in "
        "JSONPath states (with .$ keys) and the engine follows it."
    ),
}
