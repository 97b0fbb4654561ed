"""Distributed Map: sconeflow's engine against moto's interpreter (LocalStack's), both on
the same objects in moto's S3 server on 127.0.0.1.

Each case runs in both engines; status, output, error and cause must be equal, and so
must the parent history's event types. Where moto departs from AWS's documentation,
`aws_expected` holds what AWS documents, `why` says where, and the test also checks that
moto still differs (so a fixed moto shows up here). Checks that moto cannot answer
(the files a ResultWriter writes, the child executions' own histories) are in `check`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from asl_moto_harness import MotoMachine

from sconeflow.executions.objects import StoreObjects
from sconeflow.store import S3Store
from sconeflow.workflow import (
    ExecutionResult,
    InMemoryHistory,
    parse_definition,
    run_execution,
)
from sconeflow.workflow.errors import DefinitionError
from sconeflow.workflow.history import ChildExecution
from sconeflow.workflow.items import MemoryObjectStore

FN = "arn:aws:lambda:us-east-1:123456789012:function:{}:$LATEST"
DIST = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
LIST = "arn:aws:states:::s3:listObjectsV2"
GET = "arn:aws:states:::s3:getObject"
PUT = "arn:aws:states:::s3:putObject"
CHILD_ARN = "arn:aws:states:us-east-1:123456789012:execution:sconeflow/<uuid>:<uuid>"
CHILD_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:sconeflow/<uuid>"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class CustomError(Exception):
    pass


def _double(event: Any, context: Any) -> Any:
    return {"n": event["n"] * 2}


def _fail_odd(event: Any, context: Any) -> Any:
    if event["n"] % 2:
        raise CustomError(f"odd {event['n']}")
    return event


HANDLERS = {"double": _double, "fail_odd": _fail_odd}


def task(fn: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": FN.format(fn), "Payload.$": "$"},
        "OutputPath": "$.Payload",
        "End": True,
    }


PASS = {"P": {"Type": "Pass", "End": True}}
FAIL_ODD = {
    "C": {
        "Type": "Choice",
        "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "P"}],
        "Default": "F",
    },
    "P": {"Type": "Pass", "End": True},
    "F": {"Type": "Fail", "Error": "Odd", "Cause": "not two"},
}


def dmap(
    states: dict[str, Any] | None = None, processor: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """A machine of one Distributed Map state M whose children run `states`."""
    states = states or PASS
    body = {"ProcessorConfig": processor or DIST, "StartAt": next(iter(states)), "States": states}
    return {
        "StartAt": "M",
        "States": {"M": {"Type": "Map", "ItemProcessor": body, **fields, "End": True}},
    }


def _without_end(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "End"}


def reader(resource: str, key: str | None = None, **config: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"Bucket.$": "$.bucket"}
    if resource == LIST:
        params["Prefix"] = key or ""
    else:
        params["Key"] = key
    spec: dict[str, Any] = {"Resource": resource, "Parameters": params}
    if config:
        spec["ReaderConfig"] = config
    return spec


def writer(prefix: str = "out", **config: Any) -> dict[str, Any]:
    # A literal bucket: moto reads ResultWriter's Parameters from the Map's results, not
    # from its input (the bucket is filled in per case).
    spec: dict[str, Any] = {"Resource": PUT, "Parameters": {"Bucket": "<bucket>", "Prefix": prefix}}
    if config:
        spec["WriterConfig"] = config
    return spec


@dataclass
class Run:
    """What a check sees: our result, the bucket, our objects and each child's history."""

    result: ExecutionResult
    bucket: str
    objects: StoreObjects
    children: list[tuple[ChildExecution, InMemoryHistory]]

    def json(self, key: str) -> Any:
        return json.loads(self.objects.get(self.bucket, key))


@dataclass
class Case:
    id: str
    definition: dict[str, Any]
    input: Any = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    tasks: bool = False
    aws_expected: dict[str, Any] | None = None  # where moto differs from AWS; see `why`
    why: str = ""
    check: Callable[[Run], None] | None = None
    same_events: bool = True  # the parent's event types equal moto's


ROWS = b"id,name\n1,ada\n2,bob\n3,cy\n"
ITEMS_JSON = json.dumps([{"n": 1}, {"n": 2}, {"n": 3}]).encode()
IMAGES = {"data/test/a.png": b"aa", "data/test/b.png": b"bbb", "data/train/c.png": b"c"}


def ok(output: Any) -> dict[str, Any]:
    return {"status": "SUCCEEDED", "output": output, "error": None, "cause": None}


def failed(error: str, cause: str | None) -> dict[str, Any]:
    return {"status": "FAILED", "output": None, "error": error, "cause": cause}


THRESHOLD = failed(
    "States.ExceedToleratedFailureThreshold",
    "The specified tolerated failure threshold was exceeded",
)
MOTO_NO_TOLERANCE = (
    "moto's Distributed Map ignores failed children (its map_run_record notes tolerance is "
    "not implemented) and succeeds with null entries; AWS (developer guide, 'Setting "
    "failure thresholds for Distributed Map states') fails the Map Run with "
    "States.ExceedToleratedFailureThreshold once failures exceed the tolerated count or "
    "percentage, which default to 0"
)
MOTO_NO_BATCHER = (
    "moto 5.2's parser has no ItemBatcher; AWS ('ItemBatcher (Map)') passes each child "
    '{"BatchInput": <BatchInput>, "Items": [...]} of at most MaxItemsPerBatch items and '
    "MaxInputBytesPerBatch bytes"
)
MOTO_NO_WRITER_CONFIG = (
    "moto 5.2's parser has no ResultWriter.WriterConfig; AWS ('ResultWriter (Map)') applies "
    "its Transformation (NONE: each child's execution record, COMPACT: outputs, FLATTEN: "
    "array outputs spread) and OutputType"
)


OBJECT_ITEMS = (
    "AWS's 2025 ItemsPath page says a Map iterates over an object's key-value pairs but shows "
    "no iteration's input, so the engine still refuses an object, as LocalStack's "
    "interpreter did when it was checked against AWS; moto names the Python type "
    "(<class 'dict'>) and a JSONata error (States.QueryEvaluationError) in a JSONPath "
    "state, which AWS cannot have written; the engine keeps States.Runtime and JSON's name"
)


def failed_record(error: str, cause: str, input_json: str) -> dict[str, Any]:
    """What AWS puts for a failed child in a COMPACT result: its whole record."""
    return {
        "Cause": cause,
        "Error": error,
        "ExecutionArn": CHILD_ARN,
        "Input": input_json,
        "InputDetails": {"Included": True},
        "Name": "<uuid>",
        "RedriveCount": 0,
        "RedriveStatus": "REDRIVABLE",
        "StartDate": "<time>",
        "StateMachineArn": CHILD_MACHINE,
        "Status": "FAILED",
        "StopDate": "<time>",
    }


def _check_manifest(expect: dict[str, int]) -> Callable[[Run], None]:
    """The manifest names one file per non-empty status, each the JSON array AWS writes."""

    def check(run: Run) -> None:
        output = run.result.output
        details = (output.get("written") or output)["ResultWriterDetails"]
        manifest = run.json(details["Key"])
        run_id = details["Key"].split("/")[-2]
        assert manifest["DestinationBucket"] == run.bucket
        assert manifest["MapRunArn"].endswith(":" + run_id)
        for status in ("SUCCEEDED", "FAILED", "PENDING"):
            files = manifest["ResultFiles"][status]
            if not expect.get(status):
                assert files == [], status
                continue
            (entry,) = files
            assert entry["Key"] == details["Key"].replace("manifest.json", f"{status}_0.json")
            body = run.objects.get(run.bucket, entry["Key"])
            assert entry["Size"] == len(body)
            records = json.loads(body)
            assert len(records) == expect[status]
            assert {r["Status"] for r in records} == {status}
            for record in records:
                if status == "SUCCEEDED":
                    assert json.loads(record["Output"]) == json.loads(record["Input"])
                    assert record["RedriveStatus"] == "NOT_REDRIVABLE"
                if status == "FAILED":
                    assert record["Error"] == "Odd" and record["Cause"] == "not two"
                if status != "PENDING":
                    assert record["ExecutionArn"].split(":")[-2].startswith("sconeflow/")
                    assert STAMP.fullmatch(record["StartDate"])

    return check


def _check_children(run: Run) -> None:
    """Each child: an execution of sconeflow/<label> with its own ExecutionStarted ...
    ExecutionSucceeded history, under the parent's Map Run."""
    started = [e for e in run.result.events if e["type"] == "MapRunStarted"]
    (event,) = started
    map_run_arn = event["mapRunStartedEventDetails"]["mapRunArn"]
    assert map_run_arn.startswith("arn:aws:states:us-east-1:123456789012:mapRun:sconeflow/Lbl:")
    assert len(run.children) == 3
    for child, history in run.children:
        assert child.map_run_arn == map_run_arn
        assert child.parent_arn == run.result.execution_arn
        assert child.state_machine == "sconeflow/Lbl"
        assert (
            child.arn
            == f"arn:aws:states:us-east-1:123456789012:execution:sconeflow/Lbl:{child.name}"
        )
        kinds = [e["type"] for e in history.events]
        assert kinds == [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded",
        ]
        assert [e["id"] for e in history.events] == list(range(1, 8))
        started_input = json.loads(history.events[0]["executionStartedEventDetails"]["input"])
        assert started_input == child.input
    assert not [e for e in run.result.events if e["type"].startswith("MapIteration")]


def _check_pending(run: Run) -> None:
    """The Map Run stopped at its first failure; ResultWriter still exported what ran,
    and the items never started as PENDING."""
    (started,) = [e for e in run.result.events if e["type"] == "MapRunStarted"]
    run_id = started["mapRunStartedEventDetails"]["mapRunArn"].rsplit(":", 1)[1]
    manifest = run.json(f"pending/{run_id}/manifest.json")  # moto writes its own beside it
    counts = [len(manifest["ResultFiles"][s]) for s in ("SUCCEEDED", "FAILED", "PENDING")]
    assert counts == [0, 1, 1]
    pending = run.json(manifest["ResultFiles"]["PENDING"][0]["Key"])
    assert pending == [{"Input": "2", "InputDetails": {"Included": True}, "Status": "PENDING"}]


CASES = [
    # --- items from the state input -----------------------------------------------------------
    Case("items_from_input", dmap(), [1, 2, 3]),
    Case("items_path", dmap(ItemsPath="$.items"), {"items": [{"a": 1}, {"a": 2}], "x": 0}),
    Case(
        "items_path_selects_an_object",
        dmap(ItemsPath="$.o"),
        {"o": {"a": 1, "b": {"x": 2}}},
        aws_expected=failed(
            "States.Runtime",
            "An error occurred while executing the state 'M' (entered at the event id #2). "
            "Map state input must be an array but was: object (ItemsPath '$.o')",
        ),
        why=OBJECT_ITEMS,
    ),
    Case(
        "jsonata_items_gives_an_object",
        {"QueryLanguage": "JSONata", **dmap(Items="{% $states.input.o %}")},
        {"o": {"a": 1, "b": {"x": 2}}},
        # moto follows its EvaluationFailed with MapStateFailed; the engine, as for every
        # field it evaluates before the Map starts, does not; AWS's events are undocumented.
        same_events=False,
    ),
    Case(
        "item_selector_index_value_and_input",
        dmap(
            ItemSelector={"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value", "x.$": "$.x"},
            ItemsPath="$.items",
        ),
        {"items": ["a", "b"], "x": 7},
    ),
    Case(
        "legacy_iterator_with_processor_config",
        {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "End": True,
                    "Iterator": {"ProcessorConfig": DIST, "StartAt": "P", "States": PASS},
                }
            },
        },
        ["x", "y"],
    ),
    Case(
        "legacy_iterator_parameters_as_selector",
        {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "End": True,
                    "Parameters": {"v.$": "$$.Map.Item.Value"},
                    "Iterator": {"ProcessorConfig": DIST, "StartAt": "P", "States": PASS},
                }
            },
        },
        [1, 2],
    ),
    Case(
        "express_children",
        dmap(processor={"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}),
        [{"k": 1}],
        aws_expected=ok([{"k": 1}]),
        why="moto 5.2's grammar accepts ExecutionType STANDARD only; AWS runs a Distributed "
        "Map's children as STANDARD or EXPRESS executions ('ItemProcessor (Map)', "
        "ProcessorConfig)",
    ),
    Case("lambda_children", dmap({"T": task("double")}), [{"n": 1}, {"n": 5}], tasks=True),
    Case(
        "result_selector_result_path_output_path",
        dmap(
            ResultSelector={"all.$": "$"}, ResultPath="$.out", OutputPath="$.out", ItemsPath="$.i"
        ),
        {"i": [1, 2]},
    ),
    Case("max_concurrency", dmap(MaxConcurrency=1), [1, 2, 3]),
    Case(
        "max_concurrency_path",
        dmap(MaxConcurrencyPath="$.c", ItemsPath="$.i"),
        {"c": 2, "i": [1, 2, 3]},
    ),
    Case(
        "max_concurrency_path_string",
        dmap(MaxConcurrencyPath="$.c", ItemsPath="$.i"),
        {"c": "2", "i": [1]},
    ),
    Case(
        "max_concurrency_path_negative",
        dmap(MaxConcurrencyPath="$.c", ItemsPath="$.i"),
        {"c": -1, "i": [1]},
        same_events=False,
    ),
    Case(
        "max_concurrency_path_not_integer",
        dmap(MaxConcurrencyPath="$.c", ItemsPath="$.i"),
        {"c": {"n": 1}, "i": [1]},
        same_events=False,
    ),
    Case(
        "inline_max_concurrency_path",
        {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "End": True,
                    "MaxConcurrencyPath": "$.c",
                    "ItemsPath": "$.i",
                    "ItemProcessor": {"StartAt": "P", "States": PASS},
                }
            },
        },
        {"c": 1, "i": [4, 5]},
    ),
    Case(
        "label_in_the_map_run_arn",
        dmap(Label="Lbl", ItemsPath="$.i", ResultWriter=writer("labelled")),
        {"bucket": "<bucket>", "i": [1]},
    ),
    # --- failures and their tolerance ---------------------------------------------------------
    Case(
        "a_failed_child_fails_the_map_run",
        dmap(FAIL_ODD),
        [1, 2, 3],
        aws_expected=THRESHOLD,
        why=MOTO_NO_TOLERANCE,
    ),
    Case(
        "tolerated_failure_count_within",
        dmap(FAIL_ODD, ToleratedFailureCount=2),
        [1, 2, 3],
        aws_expected=ok(
            [failed_record("Odd", "not two", "1"), 2, failed_record("Odd", "not two", "3")]
        ),
        why=MOTO_NO_TOLERANCE + "; a failed child's entry is its execution record "
        "('ResultWriter (Map)': a failed child's result is returned unchanged, as with NONE)",
    ),
    Case(
        "tolerated_failure_count_exceeded",
        dmap(FAIL_ODD, ToleratedFailureCount=1),
        [1, 2, 3],
        aws_expected=THRESHOLD,
        why=MOTO_NO_TOLERANCE,
    ),
    Case(
        "tolerated_failure_percentage_within",
        dmap(FAIL_ODD, ToleratedFailurePercentage=50),
        [2, 2, 3],
        aws_expected=ok([2, 2, failed_record("Odd", "not two", "3")]),
        why=MOTO_NO_TOLERANCE,
    ),
    Case(
        "tolerated_failure_percentage_exceeded",
        dmap(FAIL_ODD, ToleratedFailurePercentage=30),
        [2, 2, 3],
        aws_expected=THRESHOLD,
        why=MOTO_NO_TOLERANCE,
    ),
    Case(
        "tolerated_failure_count_path",
        dmap(FAIL_ODD, ToleratedFailureCountPath="$.t", ItemsPath="$.i"),
        {"t": 1, "i": [2, 3]},
        aws_expected=ok([2, failed_record("Odd", "not two", "3")]),
        why=MOTO_NO_TOLERANCE,
    ),
    Case(
        "tolerated_failure_percentage_path",
        dmap(FAIL_ODD, ToleratedFailurePercentagePath="$.p", ItemsPath="$.i"),
        {"p": 40, "i": [2, 3, 2]},
        aws_expected=ok([2, failed_record("Odd", "not two", "3"), 2]),
        why=MOTO_NO_TOLERANCE,
    ),
    Case(
        "tolerated_failure_count_path_negative",
        dmap(ToleratedFailureCountPath="$.t", ItemsPath="$.i"),
        {"t": -1, "i": [1]},
        same_events=False,
    ),
    Case(
        "tolerated_failure_count_path_not_integer",
        dmap(ToleratedFailureCountPath="$.t", ItemsPath="$.i"),
        {"t": "many", "i": [1]},
        same_events=False,
    ),
    Case(
        "tolerated_failure_percentage_path_out_of_range",
        dmap(ToleratedFailurePercentagePath="$.p", ItemsPath="$.i"),
        {"p": 101, "i": [1]},
        same_events=False,
    ),
    Case(
        "catch_the_exceeded_threshold",
        {
            "StartAt": "M",
            "States": {
                "M": {
                    **_without_end(dmap(FAIL_ODD, ItemsPath="$.i")["States"]["M"]),
                    "Next": "Done",
                    "Catch": [
                        {
                            "ErrorEquals": ["States.ExceedToleratedFailureThreshold"],
                            "Next": "Caught",
                            "ResultPath": "$.error",
                        }
                    ],
                },
                "Caught": {"Type": "Pass", "OutputPath": "$.error.Error", "End": True},
                "Done": {"Type": "Succeed"},
            },
        },
        {"i": [3]},
        aws_expected=ok("States.ExceedToleratedFailureThreshold"),
        why=MOTO_NO_TOLERANCE,
    ),
    # --- ItemReader ---------------------------------------------------------------------------
    Case(
        "list_objects_items",
        dmap(ItemReader=reader(LIST, "data/test/")),
        {"bucket": "<bucket>"},
        objects=IMAGES,
        aws_expected=ok(
            [
                {
                    "Etag": '"4124bc0a9335c27f086f24ba207a4912"',
                    "Key": "data/test/a.png",
                    "LastModified": "<epoch>",
                    "Size": 2,
                    "StorageClass": "STANDARD",
                },
                {
                    "Etag": '"08f8e0260c64418510cefb2b06eee5cd"',
                    "Key": "data/test/b.png",
                    "LastModified": "<epoch>",
                    "Size": 3,
                    "StorageClass": "STANDARD",
                },
            ]
        ),
        why="moto hands on boto3's ListObjectsV2 entries (ETag, ChecksumAlgorithm, LastModified "
        "as a datetime); AWS's listObjectsV2 items are {Etag, Key, LastModified (epoch "
        "seconds), Size, StorageClass} ('ItemReader (Map)', Amazon S3 objects example)",
    ),
    Case(
        "list_objects_keys_and_sizes",
        dmap(
            ItemReader=reader(LIST, "data/"),
            ItemSelector={
                "key.$": "$$.Map.Item.Value.Key",
                "size.$": "$$.Map.Item.Value.Size",
                "i.$": "$$.Map.Item.Index",
            },
        ),
        {"bucket": "<bucket>"},
        objects=IMAGES,
    ),
    Case(
        "list_objects_max_items",
        dmap(
            ItemReader=reader(LIST, "data/", MaxItems=2),
            ItemSelector={"key.$": "$$.Map.Item.Value.Key"},
        ),
        {"bucket": "<bucket>"},
        objects=IMAGES,
        aws_expected=ok([{"key": "data/test/a.png"}, {"key": "data/test/b.png"}]),
        why="moto cannot parse a ReaderConfig without InputType; AWS's listObjectsV2 takes "
        "ReaderConfig.MaxItems ('ItemReader (Map)': MaxItems limits the items of any dataset)",
    ),
    Case(
        "json_object",
        dmap(ItemReader=reader(GET, "items.json", InputType="JSON")),
        {"bucket": "<bucket>"},
        objects={"items.json": ITEMS_JSON},
    ),
    Case(
        "json_max_items",
        dmap(ItemReader=reader(GET, "items.json", InputType="JSON", MaxItems=2)),
        {"bucket": "<bucket>"},
        objects={"items.json": ITEMS_JSON},
    ),
    Case(
        "json_max_items_path",
        dmap(ItemReader=reader(GET, "items.json", InputType="JSON", MaxItemsPath="$.n")),
        {"bucket": "<bucket>", "n": 1},
        objects={"items.json": ITEMS_JSON},
    ),
    Case(
        "json_max_items_path_negative",
        dmap(ItemReader=reader(GET, "items.json", InputType="JSON", MaxItemsPath="$.n")),
        {"bucket": "<bucket>", "n": -1},
        objects={"items.json": ITEMS_JSON},
    ),
    Case(
        "json_not_an_array",
        dmap(ItemReader=reader(GET, "o.json", InputType="JSON")),
        {"bucket": "<bucket>"},
        objects={"o.json": b'{"a": 1}'},
    ),
    Case(
        "json_items_through_children",
        dmap({"T": task("double")}, ItemReader=reader(GET, "items.json", InputType="JSON")),
        {"bucket": "<bucket>"},
        objects={"items.json": ITEMS_JSON},
        tasks=True,
    ),
    Case(
        "json_missing_object",
        dmap(ItemReader=reader(GET, "absent.json", InputType="JSON")),
        {"bucket": "<bucket>"},
        aws_expected=failed(
            "States.ItemReaderFailed", "ObjectNotFoundError: no object at s3://<bucket>/absent.json"
        ),
        why="moto lets boto3's NoSuchKey through as States.Runtime; AWS names a dataset the "
        "ItemReader cannot read States.ItemReaderFailed ('Error handling in Step Functions', "
        "States.ItemReaderFailed); the cause is the store's own message",
    ),
    Case(
        "list_objects_empty_prefix",
        dmap(ItemReader=reader(LIST, "nothing/here/")),
        {"bucket": "<bucket>"},
        objects=IMAGES,
        aws_expected=ok([]),
        why="moto fails with KeyError 'Contents' when ListObjectsV2 finds nothing; on AWS an "
        "empty prefix is an empty dataset and the Map Run has no children",
    ),
    Case(
        "json_max_items_path_not_integer",
        dmap(ItemReader=reader(GET, "items.json", InputType="JSON", MaxItemsPath="$.n")),
        {"bucket": "<bucket>", "n": "lots"},
        objects={"items.json": ITEMS_JSON},
        same_events=False,
    ),
    Case(
        "jsonl_object",
        dmap(ItemReader=reader(GET, "items.jsonl", InputType="JSONL")),
        {"bucket": "<bucket>"},
        objects={"items.jsonl": b'{"n": 1}\n\n[2]\n"three"\n'},
        aws_expected=ok([{"n": 1}, [2], "three"]),
        why="moto 5.2 knows InputType CSV and JSON only; AWS reads JSONL as one item per line "
        "('ItemReader (Map)', JSONL files)",
    ),
    Case(
        "csv_first_row",
        dmap(ItemReader=reader(GET, "r.csv", InputType="CSV", CSVHeaderLocation="FIRST_ROW")),
        {"bucket": "<bucket>"},
        objects={"r.csv": ROWS},
    ),
    Case(
        "csv_given_headers",
        dmap(
            ItemReader=reader(
                GET, "r.csv", InputType="CSV", CSVHeaderLocation="GIVEN", CSVHeaders=["a", "b"]
            )
        ),
        {"bucket": "<bucket>"},
        objects={"r.csv": ROWS},
    ),
    Case(
        "csv_max_items",
        dmap(
            ItemReader=reader(
                GET, "r.csv", InputType="CSV", CSVHeaderLocation="FIRST_ROW", MaxItems=2
            )
        ),
        {"bucket": "<bucket>"},
        objects={"r.csv": ROWS},
    ),
    Case(
        "csv_short_rows",
        dmap(ItemReader=reader(GET, "s.csv", InputType="CSV", CSVHeaderLocation="FIRST_ROW")),
        {"bucket": "<bucket>"},
        objects={"s.csv": b"a,b,c\n1\n2,3\n"},
    ),
    Case(
        "csv_duplicate_headers",
        dmap(ItemReader=reader(GET, "d.csv", InputType="CSV", CSVHeaderLocation="FIRST_ROW")),
        {"bucket": "<bucket>"},
        objects={"d.csv": b"a,a\n1,2\n"},
    ),
    Case(
        "csv_semicolons",
        dmap(
            ItemReader=reader(
                GET,
                "s.csv",
                InputType="CSV",
                CSVHeaderLocation="FIRST_ROW",
                CSVDelimiter="SEMICOLON",
            )
        ),
        {"bucket": "<bucket>"},
        objects={"s.csv": b"a;b\n1;x,y\n"},
        aws_expected=ok([{"a": "1", "b": "x,y"}]),
        why="moto 5.2 has no CSVDelimiter; AWS accepts COMMA, PIPE, SEMICOLON, SPACE and TAB "
        "('ItemReader (Map)', ReaderConfig)",
    ),
    # --- ItemBatcher --------------------------------------------------------------------------
    Case(
        "batch_max_items",
        dmap(ItemBatcher={"MaxItemsPerBatch": 2}),
        [1, 2, 3, 4, 5],
        aws_expected=ok([{"Items": [1, 2]}, {"Items": [3, 4]}, {"Items": [5]}]),
        why=MOTO_NO_BATCHER,
    ),
    Case(
        "batch_input",
        dmap(
            ItemBatcher={"MaxItemsPerBatch": 3, "BatchInput": {"run.$": "$.run", "k": 1}},
            ItemsPath="$.i",
        ),
        {"run": "r1", "i": ["a", "b"]},
        aws_expected=ok([{"BatchInput": {"run": "r1", "k": 1}, "Items": ["a", "b"]}]),
        why=MOTO_NO_BATCHER,
    ),
    Case(
        "batch_max_bytes",
        dmap(ItemBatcher={"MaxInputBytesPerBatch": 20}),
        ["aaaa", "bbbb", "cccc"],  # {"Items":["aaaa","bbbb"]} is 27 bytes, one item 20
        aws_expected=ok([{"Items": ["aaaa"]}, {"Items": ["bbbb"]}, {"Items": ["cccc"]}]),
        why=MOTO_NO_BATCHER,
    ),
    Case(
        "batch_both_limits",
        dmap(ItemBatcher={"MaxItemsPerBatch": 3, "MaxInputBytesPerBatch": 23}),
        [1, 2, 3, 4, 5, 6, 7],  # {"Items":[1,2,3]} is 17 bytes; 3 items fit both limits
        aws_expected=ok([{"Items": [1, 2, 3]}, {"Items": [4, 5, 6]}, {"Items": [7]}]),
        why=MOTO_NO_BATCHER,
    ),
    Case(
        "batch_paths",
        dmap(
            ItemBatcher={"MaxItemsPerBatchPath": "$.n", "MaxInputBytesPerBatchPath": "$.b"},
            ItemsPath="$.i",
        ),
        {"n": 2, "b": 1000, "i": [1, 2, 3]},
        aws_expected=ok([{"Items": [1, 2]}, {"Items": [3]}]),
        why=MOTO_NO_BATCHER,
    ),
    Case(
        "batch_of_csv_rows",
        dmap(
            ItemReader=reader(GET, "r.csv", InputType="CSV", CSVHeaderLocation="FIRST_ROW"),
            ItemBatcher={"MaxItemsPerBatch": 2},
        ),
        {"bucket": "<bucket>"},
        objects={"r.csv": ROWS},
        aws_expected=ok(
            [
                {"Items": [{"id": "1", "name": "ada"}, {"id": "2", "name": "bob"}]},
                {"Items": [{"id": "3", "name": "cy"}]},
            ]
        ),
        why=MOTO_NO_BATCHER,
    ),
    Case(
        "batch_failure_counts_its_items",
        dmap(
            {"F": {"Type": "Fail", "Error": "Odd", "Cause": "not two"}},
            ItemBatcher={"MaxItemsPerBatch": 2},
            ToleratedFailureCount=1,
        ),
        [1, 2],
        aws_expected=THRESHOLD,
        why=MOTO_NO_BATCHER + "; AWS counts a failed batch's items against the tolerance",
    ),
    # --- ResultWriter -------------------------------------------------------------------------
    Case(
        "writer_output_names_the_manifest",
        dmap(ResultWriter=writer(), ItemsPath="$.i"),
        {"bucket": "<bucket>", "i": [1, 2]},
        check=_check_manifest({"SUCCEEDED": 2}),
    ),
    Case(
        "writer_prefix_with_slash",
        dmap(ResultWriter=writer("runs/"), ItemsPath="$.i"),
        {"bucket": "<bucket>", "i": [1]},
        check=_check_manifest({"SUCCEEDED": 1}),
    ),
    Case(
        "writer_result_path",
        dmap(ResultWriter=writer(), ItemsPath="$.i", ResultPath="$.written"),
        {"bucket": "<bucket>", "i": [1]},
        check=_check_manifest({"SUCCEEDED": 1}),
    ),
    Case(
        "writer_failed_children_tolerated",
        dmap(FAIL_ODD, ResultWriter=writer(), ItemsPath="$.i", ToleratedFailureCount=5),
        {"bucket": "<bucket>", "i": [2, 3, 2]},
        check=_check_manifest({"SUCCEEDED": 2, "FAILED": 1}),
    ),
    Case(
        "writer_exports_even_when_the_map_run_fails",
        dmap(FAIL_ODD, ResultWriter=writer("pending"), ItemsPath="$.i"),
        {"bucket": "<bucket>", "i": [3, 2]},
        aws_expected=THRESHOLD,
        why=MOTO_NO_TOLERANCE,
        check=_check_pending,
    ),
    Case(
        "writer_config_compact",
        dmap(
            {"T": task("double")},
            ResultWriter={"WriterConfig": {"Transformation": "COMPACT", "OutputType": "JSON"}},
        ),
        [{"n": 1}, {"n": 2}],
        tasks=True,
        aws_expected=ok([{"n": 2}, {"n": 4}]),
        why=MOTO_NO_WRITER_CONFIG,
    ),
    Case(
        "writer_config_flatten",
        dmap(
            {
                "P": {
                    "Type": "Pass",
                    "Parameters": {"pair.$": "States.Array($, $)"},
                    "OutputPath": "$.pair",
                    "End": True,
                }
            },
            ResultWriter={"WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSON"}},
        ),
        [1, 2],
        aws_expected=ok([1, 1, 2, 2]),
        why=MOTO_NO_WRITER_CONFIG,
    ),
    Case(
        "writer_config_none",
        dmap(ResultWriter={"WriterConfig": {"Transformation": "NONE", "OutputType": "JSON"}}),
        [7],
        aws_expected=ok(
            [
                {
                    "ExecutionArn": CHILD_ARN,
                    "Input": "7",
                    "InputDetails": {"Included": True},
                    "Name": "<uuid>",
                    "Output": "7",
                    "OutputDetails": {"Included": True},
                    "RedriveCount": 0,
                    "RedriveStatus": "NOT_REDRIVABLE",
                    "RedriveStatusReason": "Execution is SUCCEEDED and cannot be redriven",
                    "StartDate": "<time>",
                    "StateMachineArn": CHILD_MACHINE,
                    "Status": "SUCCEEDED",
                    "StopDate": "<time>",
                }
            ]
        ),
        why=MOTO_NO_WRITER_CONFIG,
    ),
    # --- child executions ---------------------------------------------------------------------
    Case(
        "children_have_their_own_histories",
        dmap({"T": task("double")}, Label="Lbl"),
        [{"n": 1}, {"n": 2}, {"n": 3}],
        tasks=True,
        check=_check_children,
    ),
    Case(
        "children_see_their_own_execution",
        dmap(
            {
                "P": {
                    "Type": "Pass",
                    "Parameters": {
                        "sm.$": "$$.StateMachine.Name",
                        "input.$": "$$.Execution.Input",
                        "smid.$": "$$.StateMachine.Id",
                    },
                    "End": True,
                }
            },
            Label="Lbl",
        ),
        [{"a": 1}],
        aws_expected=ok(
            [
                {
                    "sm": "sconeflow/Lbl",
                    "input": {"a": 1},
                    "smid": "arn:aws:states:us-east-1:123456789012:stateMachine:sconeflow/Lbl",
                }
            ]
        ),
        why="moto runs children in the parent's context; on AWS each child is an execution "
        "of the state machine <machine>/<label> ('Distributed mode': child workflow "
        "executions), so $$.Execution and $$.StateMachine name the child's",
    ),
]


@pytest.fixture(scope="module")
def s3(s3_server: str) -> Iterator[Any]:
    """A boto3 S3 client on moto's server, which moto's interpreter also reaches."""
    patcher = pytest.MonkeyPatch()
    patcher.setenv("MOTO_PORT", s3_server.rsplit(":", 1)[1])  # moto's boto_client_for
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="ak",
        aws_secret_access_key="sk",
    )
    yield client
    patcher.undo()


def _normalise(value: Any) -> Any:
    """ARNs and names carry random UUIDs, records carry times, listings carry mtimes."""
    if isinstance(value, str):
        return STAMP.sub("<time>", UUID.sub("<uuid>", value))
    if isinstance(value, dict):
        return {
            k: "<epoch>" if k == "LastModified" and isinstance(v, int) else _normalise(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _substitute(value: Any, bucket: str) -> Any:
    return json.loads(json.dumps(value).replace("<bucket>", bucket))


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [getattr(e["type"], "value", e["type"]) for e in events]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_result_as_moto_or_as_aws_documents(case: Case, s3: Any) -> None:
    bucket = f"dm-{CASES.index(case)}"
    s3.create_bucket(Bucket=bucket)
    for key, body in case.objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    data = _substitute(case.input, bucket)
    definition = _substitute(case.definition, bucket)
    objects = StoreObjects(S3Store(client=s3))
    children: list[tuple[ChildExecution, InMemoryHistory]] = []

    def child_listener(child: ChildExecution) -> InMemoryHistory:
        children.append((child, InMemoryHistory()))
        return children[-1][1]

    handlers = HANDLERS if case.tasks else None
    ours = run_execution(
        parse_definition(definition),
        data,
        handlers,
        name="exec",
        store=objects,
        children=child_listener,
    )
    got = _normalise(
        {"status": ours.status, "output": ours.output, "error": ours.error, "cause": ours.cause}
    )
    try:
        theirs: dict[str, Any] | None = MotoMachine(definition).run(data, handlers)
    except Exception as err:  # moto's parser refuses what it does not know
        theirs, moto_error = None, err
    if case.aws_expected is not None:
        assert got == _substitute(case.aws_expected, bucket), case.why
        if theirs is not None:
            moto_got = _normalise({k: theirs[k] for k in ("status", "output", "error", "cause")})
            assert moto_got != got, f"moto now agrees with AWS; drop aws_expected: {case.why}"
    else:
        assert theirs is not None, f"moto failed: {moto_error!r}"
        assert got == _normalise({k: theirs[k] for k in ("status", "output", "error", "cause")})
        if case.same_events:
            assert _kinds(ours.events) == _kinds(theirs["events"])
    if case.check is not None:
        case.check(Run(ours, bucket, objects, children))


def test_there_are_at_least_thirty_distributed_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def test_a_distributed_map_over_a_thousand_items() -> None:
    """1,000 items listed from a store, each child recorded; the Map Run holds them all."""
    store = MemoryObjectStore()
    for i in range(1000):
        store.put("bkt", f"items/{i:04d}.json", b"{}")
    definition = dmap(
        {"P": {"Type": "Pass", "Parameters": {"key.$": "$.Key"}, "End": True}},
        ItemReader={"Resource": LIST, "Parameters": {"Bucket": "bkt", "Prefix": "items/"}},
        ResultWriter={"Resource": PUT, "Parameters": {"Bucket": "bkt", "Prefix": "big"}},
    )
    ended: list[str] = []

    def child_listener(child: ChildExecution) -> Callable[[dict[str, Any]], None]:
        return lambda event: (
            ended.append(event["type"])
            if event["type"] in ("ExecutionSucceeded", "ExecutionFailed")
            else None
        )

    result = run_execution(
        parse_definition(definition), {}, store=store, children=child_listener, max_workers=4
    )
    assert result.status == "SUCCEEDED", result.cause
    assert ended == ["ExecutionSucceeded"] * 1000
    manifest_key = result.output["ResultWriterDetails"]["Key"]
    manifest = json.loads(store.get("bkt", manifest_key))
    (entry,) = manifest["ResultFiles"]["SUCCEEDED"]
    records = json.loads(store.get("bkt", entry["Key"]))
    assert [json.loads(r["Output"])["key"] for r in records] == [
        f"items/{i:04d}.json" for i in range(1000)
    ]
    assert len({r["ExecutionArn"] for r in records}) == 1000


BAD = [
    (
        {"ItemReader": {"Resource": LIST, "Parameters": {"Bucket": "b"}}},
        None,
        "ItemReader needs a Distributed Map",
    ),
    ({}, {"Mode": "DISTRIBUTED"}, "needs ProcessorConfig.ExecutionType"),
    ({}, {"Mode": "PARALLEL", "ExecutionType": "STANDARD"}, "must be 'INLINE' or 'DISTRIBUTED'"),
    ({"Label": "has space"}, DIST, "Label 'has space' has characters AWS refuses"),
    ({"Label": "x" * 41}, DIST, "Label must be a string of 1 to 40"),
    ({"MaxConcurrency": 1, "MaxConcurrencyPath": "$.c"}, DIST, "either 'MaxConcurrency'"),
    ({"MaxConcurrencyPath": "$..c"}, DIST, "MaxConcurrencyPath: '$..c' must be a reference path"),
    (
        {
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "Parameters": {"Bucket": "b", "Key": "k"},
            }
        },
        DIST,
        "InputType None is not supported with getObject",
    ),
    (
        {
            "ItemReader": {
                "Resource": GET,
                "Parameters": {},
                "ReaderConfig": {"InputType": "PARQUET"},
            }
        },
        DIST,
        "'PARQUET' is not supported",
    ),
    (
        {
            "ItemReader": {
                "Resource": GET,
                "Parameters": {},
                "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "GIVEN"},
            }
        },
        DIST,
        "GIVEN needs CSVHeaders",
    ),
    (
        {"ItemReader": {"Resource": "arn:aws:states:::dynamodb:scan", "Parameters": {}}},
        DIST,
        "is not supported; use 'arn:aws:states:::s3:listObjectsV2'",
    ),
    (
        {"ItemReader": {"Resource": LIST, "Parameters": {}, "ReaderConfig": {"MaxItems": -1}}},
        DIST,
        "MaxItems must be an integer from 0",
    ),
    ({"ItemBatcher": {"BatchInput": {}}}, DIST, "needs MaxItemsPerBatch, MaxInputBytesPerBatch"),
    ({"ItemBatcher": {"MaxItemsPerBatch": 0}}, DIST, "MaxItemsPerBatch must be a positive"),
    ({"ItemBatcher": {"MaxInputBytesPerBatch": 300_000}}, DIST, "up to 262144"),
    ({"ResultWriter": {"Resource": PUT}}, DIST, "give Resource and Parameters together"),
    (
        {"ResultWriter": {"WriterConfig": {"Transformation": "SOME", "OutputType": "JSON"}}},
        DIST,
        "Transformation must be 'NONE', 'COMPACT' or 'FLATTEN'",
    ),
    ({"ResultWriter": {}}, DIST, "ResultWriter must be an object with Resource"),
]


@pytest.mark.parametrize(("fields", "processor", "expected"), BAD)
def test_bad_distributed_fields_are_refused_with_the_fix(
    fields: dict[str, Any], processor: dict[str, Any] | None, expected: str
) -> None:
    body: dict[str, Any] = {"StartAt": "P", "States": PASS}
    if processor is not None:
        body["ProcessorConfig"] = processor
    definition = {
        "StartAt": "M",
        "States": {"M": {"Type": "Map", "End": True, "ItemProcessor": body, **fields}},
    }
    with pytest.raises(DefinitionError) as info:
        parse_definition(definition)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_a_store_is_required_when_the_definition_reads_or_writes_objects() -> None:
    from sconeflow.workflow import HandlerError

    machine = parse_definition(dmap(ItemReader={"Resource": LIST, "Parameters": {"Bucket": "b"}}))
    with pytest.raises(HandlerError, match="pass store="):
        run_execution(machine, {})


def test_a_stop_aborts_the_map_run_and_starts_no_more_children() -> None:
    stop = threading.Event()
    seen: list[int] = []

    def work(event: Any, context: Any) -> Any:
        seen.append(event["n"])
        if event["n"] == 2:
            stop.set()  # StopExecution while the second child runs
        return event

    definition = dmap({"T": task("work")})
    kids: list[str] = []

    def child_listener(child: ChildExecution) -> Callable[[dict[str, Any]], None]:
        return lambda event: (
            kids.append(event["type"]) if event["type"].startswith("ExecutionS") else None
        )

    result = run_execution(parse_definition(definition), [{"n": 1}, {"n": 2}, {"n": 3}],
                           {"work": work}, stop=stop, children=child_listener)  # fmt: skip
    assert result.status == "ABORTED"
    assert seen == [1, 2]  # the third never started
    kinds = [e["type"] for e in result.events]
    assert kinds[-3:] == ["MapRunStarted", "MapRunAborted", "ExecutionAborted"]


def test_children_run_on_a_pool_and_keep_item_order() -> None:
    lock = threading.Lock()
    running = {"now": 0, "most": 0}
    together = threading.Barrier(3, timeout=30)  # passes only when 3 children run at once

    def slow(event: Any, context: Any) -> Any:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        together.wait()
        with lock:
            running["now"] -= 1
        return {"n": event["n"] * 10}

    definition = dmap({"T": task("slow")}, MaxConcurrency=3)
    items = [{"n": i} for i in range(12)]
    result = run_execution(parse_definition(definition), items, {"slow": slow}, max_workers=8)
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == [{"n": i * 10} for i in range(12)]
    assert running["most"] == 3  # MaxConcurrency bounds the pool of 8 workers
