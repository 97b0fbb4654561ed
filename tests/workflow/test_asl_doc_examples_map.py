"""The AWS Step Functions developer guide's examples on the Map state, run as documented: the
Inline Map, ItemsPath, ItemSelector, the Distributed Map and its failure thresholds,
ItemReader, ItemBatcher, ResultWriter and the parsing of CSV files (PAGES in
doc_examples.py has their URLs). Each id is "<page>: <section>". A page's S3 dataset is
put in an in-memory object store under the bucket names the page uses.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from doc_examples import (
    BUCKET,
    DEST,
    DISTRIBUTED,
    FN,
    INVOKE,
    PAGES,
    QEE,
    Example,
    check_example,
    machine,
)

from sconeflow.workflow import (
    ExecutionResult,
    HandlerError,
    MemoryObjectStore,
    parse_definition,
    run_execution,
)

_SHIPMENT = {
    "ship-date": "2016-03-14T01:59:00Z",
    "detail": {
        "delivery-partner": "UQS",
        "shipped": [
            {"prod": "R31", "dest-code": 9511, "quantity": 1344},
            {"prod": "S39", "dest-code": 9511, "quantity": 40},
            {"prod": "R31", "dest-code": 9833, "quantity": 12},
            {"prod": "R40", "dest-code": 9860, "quantity": 887},
            {"prod": "R40", "dest-code": 9511, "quantity": 1220},
        ],
    },
}
_SHIPPED = _SHIPMENT["detail"]["shipped"]
_PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
_FACTS = [
    {"verdict": "true", "statement_date": "6/11/2008", "statement_source": "speech"},
    {"verdict": "false", "statement_date": "6/7/2022", "statement_source": "television"},
    {"verdict": "mostly-true", "statement_date": "5/18/2016", "statement_source": "news"},
]
_RATINGS = b"1,307,3.5,1256677221\n1,481,3.5,1256677456\n1,1091,1.5,1256677471\n"
_RATINGS_HEADER = b"userId,movieId,rating,timestamp\n"
_FIRST_RATING = {"rating": "3.5", "movieId": "307", "userId": "1", "timestamp": "1256677221"}
_MAP_RUN = r"arn:aws:states:us-east-1:123456789012:mapRun:machine/Map:([0-9a-f-]{36})"


def _inputs(children: list[Any]) -> list[Any]:
    return [child["input"] for child in children]


def _iteration_inputs(result: ExecutionResult, state: str) -> list[Any]:
    """What each inline iteration's first state was entered with."""
    return [
        json.loads(e["stateEnteredEventDetails"]["input"])
        for e in result.events
        if e["type"].endswith("StateEntered") and e["stateEnteredEventDetails"]["name"] == state
    ]


def _dmap(items: dict[str, Any] | None = None, *, jsonata: bool = False, **fields: Any) -> Any:
    """A machine of one Distributed Map "Map" whose children pass their input on."""
    processor = {"ProcessorConfig": DISTRIBUTED, **(items or _PASS)}
    state = {"Type": "Map", "Label": "Map", "ItemProcessor": processor, **fields}
    return machine({"Map": state}, jsonata=jsonata)


def _reader(resource: str, *, jsonata: bool = False, **params: Any) -> dict[str, Any]:
    return {
        "Resource": f"arn:aws:states:::s3:{resource}",
        "Arguments" if jsonata else "Parameters": {"Bucket": BUCKET, **params},
    }


# --- "Using Map state in Inline mode", "ItemsPath", "ItemSelector" ---------------------------

INLINE = [
    Example(
        # Its Task has no Payload, so (as every lambda:invoke without one) the function gets
        # {}; "the input the Map state sends" is each iteration's input.
        "state-map-inline: Inline Map state example (JSONPath)",
        machine(
            {
                "Validate All": {
                    "Type": "Map",
                    "InputPath": "$.detail",
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "INLINE"},
                        "StartAt": "Validate",
                        "States": {
                            "Validate": {
                                "Type": "Task",
                                "Resource": INVOKE,
                                "OutputPath": "$.Payload",
                                "Parameters": {"FunctionName": FN.format("ship-val:$LATEST")},
                                "End": True,
                            }
                        },
                    },
                    "End": True,
                    "ResultPath": "$.detail.shipped",
                    "ItemsPath": "$.shipped",
                }
            },
            jsonata=False,
        ),
        _SHIPMENT,
        {**_SHIPMENT, "detail": {**_SHIPMENT["detail"], "shipped": [{"validated": {}}] * 5}},
        check=lambda result, store, children: _inputs_were(result, "Validate", _SHIPPED),
    ),
    Example(
        "state-map-inline: Inline Map state example with ItemSelector",
        machine(
            {
                "Validate-All": {
                    "Type": "Map",
                    "InputPath": "$.detail",
                    "ItemsPath": "$.shipped",
                    "MaxConcurrency": 0,
                    "ResultPath": "$.detail.shipped",
                    "ItemSelector": {
                        "parcel.$": "$$.Map.Item.Value",
                        "courier.$": "$.delivery-partner",
                    },
                    "ItemProcessor": {
                        "StartAt": "Validate",
                        "States": {
                            "Validate": {
                                "Type": "Task",
                                "Resource": FN.format("ship-val"),
                                "End": True,
                            }
                        },
                    },
                    "End": True,
                }
            },
            jsonata=False,
        ),
        _SHIPMENT,
        {
            **_SHIPMENT,
            "detail": {
                **_SHIPMENT["detail"],
                "shipped": [{"validated": {"parcel": p, "courier": "UQS"}} for p in _SHIPPED],
            },
        },
        check=lambda result, store, children: _inputs_were(
            result, "Validate", [{"parcel": p, "courier": "UQS"} for p in _SHIPPED]
        ),
    ),
    Example(
        "state-map-inline: Items is a JSON array or a JSONata expression",
        machine(
            {
                "M": {
                    "Type": "Map",
                    "Items": "{% $states.input.detail.shipped.prod %}",
                    "ItemProcessor": _PASS,
                }
            }
        ),
        _SHIPMENT,
        ["R31", "S39", "R31", "R40", "R40"],
    ),
    Example(
        # "In this mode, the failure of any iteration causes the Map state to fail."
        "state-map-inline: ProcessorConfig - the failure of any iteration fails the Map",
        machine(
            {
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "StartAt": "F",
                        "States": {
                            "F": {
                                "Type": "Task",
                                "Resource": FN.format("FailFunction"),
                                "End": True,
                            }
                        },
                    },
                }
            },
            jsonata=False,
        ),
        [1, 2],
        error="HandledError",
    ),
    Example(
        # "A MaxConcurrency value of 1 invokes the ItemProcessor once for each array element.
        # Items in the array are processed in the order of their appearance in the input."
        "state-map-inline: MaxConcurrency 1 processes the items in order",
        machine({"M": {"Type": "Map", "MaxConcurrency": 1, "ItemProcessor": _PASS}}, jsonata=False),
        [3, 1, 2],
        [3, 1, 2],
        check=lambda result, store, children: _inputs_were(result, "P", [3, 1, 2]),
    ),
    Example(
        "state-map-inline: A Map state cannot include both MaxConcurrency and MaxConcurrencyPath",
        machine(
            {
                "M": {
                    "Type": "Map",
                    "MaxConcurrency": 1,
                    "MaxConcurrencyPath": "$.c",
                    "ItemProcessor": _PASS,
                }
            },
            jsonata=False,
        ),
        refused="MaxConcurrency",
    ),
    Example(
        "state-map-inline: The Iterator field (deprecated) and Parameters (deprecated)",
        machine(
            {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.shipped",
                    "Parameters": {"p.$": "$$.Map.Item.Value.prod"},
                    "Iterator": _PASS,
                }
            },
            jsonata=False,
        ),
        _SHIPMENT["detail"],
        [{"p": p["prod"]} for p in _SHIPPED],
    ),
    Example(
        "input-output-itemspath: ItemsPath selects the ThingsPiratesSay array",
        {
            "StartAt": "PiratesSay",
            "States": {
                "PiratesSay": {
                    "Type": "Map",
                    "ItemsPath": "$.ThingsPiratesSay",
                    "ItemProcessor": {
                        "StartAt": "SayWord",
                        "States": {"SayWord": {"Type": "Pass", "End": True}},
                    },
                    "End": True,
                }
            },
        },
        {
            "ThingsPiratesSay": [{"say": "Avast!"}, {"say": "Yar!"}, {"say": "Walk the Plank!"}],
            "ThingsGiantsSay": [{"say": "Fee!"}, {"say": "Fi!"}, {"say": "Fo!"}, {"say": "Fum!"}],
        },
        [{"say": "Avast!"}, {"say": "Yar!"}, {"say": "Walk the Plank!"}],
    ),
    Example(
        # "the Map state applies ItemsPath after InputPath"
        "input-output-itemspath: ItemsPath applies after InputPath",
        machine(
            {"M": {"Type": "Map", "InputPath": "$.a", "ItemsPath": "$.b", "ItemProcessor": _PASS}},
            jsonata=False,
        ),
        {"a": {"b": [1, 2]}, "b": ["not", "these"]},
        [1, 2],
    ),
    Example(
        "input-output-itemselector: ItemSelector with a static value and $$.Map.Item.Value",
        machine(
            {
                "M": {
                    "Type": "Map",
                    "ItemSelector": {"size": 10, "value.$": "$$.Map.Item.Value"},
                    "ItemProcessor": _PASS,
                }
            },
            jsonata=False,
        ),
        [
            {"resize": "true", "format": "jpg"},
            {"resize": "false", "format": "png"},
            {"resize": "true", "format": "jpg"},
        ],
        [
            {"size": 10, "value": {"resize": "true", "format": "jpg"}},
            {"size": 10, "value": {"resize": "false", "format": "png"}},
            {"size": 10, "value": {"resize": "true", "format": "jpg"}},
        ],
    ),
]


def _inputs_were(result: ExecutionResult, state: str, expected: list[Any]) -> None:
    assert _iteration_inputs(result, state) == expected


# --- "Using Map state in Distributed mode" ---------------------------------------------------

_CSV_MAP = {
    "Map": {
        "Type": "Map",
        "ItemReader": {
            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
            "Resource": "arn:aws:states:::s3:getObject",
            "Parameters": {"Bucket": BUCKET, "Key": "csv-dataset/ratings.csv"},
        },
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "LambdaTask",
            "States": {
                "LambdaTask": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "OutputPath": "$.Payload",
                    "Parameters": {"Payload.$": "$", "FunctionName": FN.format("processCSVData")},
                    "End": True,
                }
            },
        },
        "Label": "Map",
        "End": True,
        "ResultWriter": {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": DEST, "Prefix": "csvProcessJobs"},
        },
    }
}


def _failing_children(**fields: Any) -> dict[str, Any]:
    """A Distributed Map over `$.items` whose child fails where its item is "fail"."""
    child = {
        "StartAt": "C",
        "States": {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$", "StringEquals": "fail", "Next": "Fails"}],
                "Default": "Passes",
            },
            "Fails": {"Type": "Fail", "Error": "ItemFailed"},
            "Passes": {"Type": "Pass", "End": True},
        },
    }
    return _dmap(child, ItemsPath="$.items", **fields)


def _items(failing: int, total: int = 10) -> list[str]:
    return ["fail"] * failing + ["ok"] * (total - failing)


DISTRIBUTED_MAP = [
    Example(
        "state-map-distributed: Distributed Map state definition example (JSONPath)",
        machine(_CSV_MAP, jsonata=False),
        objects={(BUCKET, "csv-dataset/ratings.csv"): _RATINGS_HEADER + _RATINGS},
        check=lambda result, store, children: _exported(
            result, store, children, "csvProcessJobs", succeeded=3
        ),
    ),
    Example(
        # "If you don't export the Map state results, it returns an array of all the child
        # workflow execution results. For example: [1, 2, 3, 4, 5]"
        "state-map-distributed: ResultWriter - without it, an array of the results",
        _dmap(),
        [1, 2, 3, 4, 5],
        [1, 2, 3, 4, 5],
    ),
    Example(
        # "Each child workflow execution has its own, separate execution history"
        "state-map-distributed: Key terms - child workflow executions",
        _dmap(),
        ["a", "b"],
        ["a", "b"],
        check=lambda result, store, children: _histories(result, children),
    ),
    *[
        Example(
            f"state-map-distributed: Tolerated failure percentage - 15% and {failing} of 10 fail",
            _failing_children(ToleratedFailurePercentagePath="$.percentage"),
            {"percentage": 15, "items": _items(failing)},
            **outcome,
        )
        for failing, outcome in (
            (1, {"check": lambda result, store, children: _ok_with_failures(result, 1)}),
            (2, {"error": "States.ExceedToleratedFailureThreshold"}),
        )
    ],
    *[
        Example(
            f"state-map-distributed: Tolerated failure count - 10 and {failing} of 12 fail",
            _failing_children(ToleratedFailureCountPath="$.count"),
            {"count": 10, "items": _items(failing, 12)},
            **outcome,
        )
        for failing, outcome in (
            (10, {"check": lambda result, store, children: _ok_with_failures(result, 10)}),
            (11, {"error": "States.ExceedToleratedFailureThreshold"}),
        )
    ],
    Example(
        # "The default percentage value is zero, which means that the workflow fails if any
        # one of its child workflow executions fails or times out."
        "state-map-distributed: Tolerated failure percentage - the default is zero",
        _failing_children(),
        {"items": _items(1)},
        error="States.ExceedToleratedFailureThreshold",
    ),
    Example(
        "state-map-distributed: Tolerated failure percentage - 100 never fails",
        _failing_children(ToleratedFailurePercentage=100),
        {"items": _items(10)},
        check=lambda result, store, children: _ok_with_failures(result, 10),
    ),
    Example(
        "state-map-distributed: Tolerated failure percentage - in JSONata, an expression",
        machine(
            {
                "Map": {
                    "Type": "Map",
                    "Items": "{% $states.input.items %}",
                    "ToleratedFailurePercentage": "{% $states.input.percentage %}",
                    "ItemProcessor": {
                        "ProcessorConfig": DISTRIBUTED,
                        "StartAt": "C",
                        "States": {
                            "C": {
                                "Type": "Choice",
                                "Choices": [
                                    {"Condition": "{% $states.input = 'fail' %}", "Next": "Fails"}
                                ],
                                "Default": "Passes",
                            },
                            "Fails": {"Type": "Fail", "Error": "ItemFailed"},
                            "Passes": {"Type": "Pass", "End": True},
                        },
                    },
                }
            }
        ),
        {"percentage": 15, "items": _items(2)},
        error="States.ExceedToleratedFailureThreshold",
    ),
    Example(
        "state-map-distributed: You can specify either ToleratedFailurePercentage or its Path",
        _dmap(ToleratedFailurePercentage=5, ToleratedFailurePercentagePath="$.p"),
        refused="ToleratedFailurePercentage",
    ),
    Example(
        "state-map-distributed: Label - at most 40 characters",
        machine(
            {
                "Map": {
                    "Type": "Map",
                    "Label": "x" * 41,
                    "ItemProcessor": {"ProcessorConfig": DISTRIBUTED, **_PASS},
                }
            },
            jsonata=False,
        ),
        refused="Label",
    ),
    *[
        Example(
            f"state-map-distributed: Label - no {name}",
            machine(
                {
                    "Map": {
                        "Type": "Map",
                        "Label": label,
                        "ItemProcessor": {"ProcessorConfig": DISTRIBUTED, **_PASS},
                    }
                },
                jsonata=False,
            ),
            refused="Label",
        )
        for name, label in (
            ("whitespace", "demo label"),
            ("wildcards", "demo*"),
            ("brackets", "demo[1]"),
            ("special characters", "demo:1"),
            ("control characters", "demo\u0007"),
        )
    ],
    Example(
        # "arn:aws:states:region:account-id:mapRun:demoWorkflow/demoLabel:3c39a231-..."
        "state-map-distributed: Label - in the Map Run ARN",
        machine(
            {
                "Map": {
                    "Type": "Map",
                    "Label": "demoLabel",
                    "ItemProcessor": {"ProcessorConfig": DISTRIBUTED, **_PASS},
                }
            },
            jsonata=False,
        ),
        [1],
        [1],
        check=lambda result, store, children: _map_run_arn(result, "demoLabel"),
    ),
]


def _histories(result: ExecutionResult, children: list[Any]) -> None:
    assert _inputs(children) == ["a", "b"]
    for child in children:
        kinds = [e["type"] for e in child["events"]]
        assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded", kinds
    parent = [e["type"] for e in result.events]
    assert "MapRunStarted" in parent and "MapRunSucceeded" in parent
    assert not any(k.startswith("MapIteration") for k in parent)


def _ok_with_failures(result: ExecutionResult, failed: int) -> None:
    entries = result.output
    assert sum(isinstance(e, dict) and e.get("Error") == "ItemFailed" for e in entries) == failed


def _map_run_arn(result: ExecutionResult, label: str) -> None:
    started = next(e for e in result.events if e["type"] == "MapRunStarted")
    arn = started["mapRunStartedEventDetails"]["mapRunArn"]
    assert re.fullmatch(
        rf"arn:aws:states:[\w-]+:\d{{12}}:mapRun:machine/{label}:[0-9a-f-]{{36}}", arn
    )


def _exported(
    result: ExecutionResult,
    store: MemoryObjectStore,
    children: list[Any],
    prefix: str,
    *,
    succeeded: int,
    failed: int = 0,
    records: int | None = None,
) -> dict[str, Any]:
    """The ResultWriter page's export: the result names the manifest; SUCCEEDED_0.json (and
    FAILED_0.json) hold the records; returns the files by name."""
    out = result.output
    assert set(out) == {"MapRunArn", "ResultWriterDetails"}, out
    run_id = re.fullmatch(_MAP_RUN, out["MapRunArn"]).group(1)  # type: ignore[union-attr]
    assert out["ResultWriterDetails"] == {"Bucket": DEST, "Key": f"{prefix}/{run_id}/manifest.json"}
    files = {
        key.rsplit("/", 1)[1]: json.loads(body)
        for (bucket, key), (body, _) in store.objects.items()
        if bucket == DEST and key.startswith(f"{prefix}/{run_id}/")
    }
    expected = {"manifest.json", "SUCCEEDED_0.json"} if succeeded else {"manifest.json"}
    if failed:
        expected.add("FAILED_0.json")
    assert set(files) == expected, sorted(files)
    if succeeded:
        assert len(files["SUCCEEDED_0.json"]) == (succeeded if records is None else records)
    if failed:
        assert len(files["FAILED_0.json"]) == failed
    manifest = files["manifest.json"]
    assert manifest["MapRunArn"] == out["MapRunArn"] and manifest["DestinationBucket"] == DEST
    assert len(children) == succeeded + failed
    return files


# --- "ItemReader (Map)" ----------------------------------------------------------------------

_CSV_READER = {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}
_NESTED = {
    "inventory": {
        "products": {
            "featured": [{"sku": "A1"}, {"sku": "B2"}],
            "clearance": [{"sku": "Z9"}],
        }
    }
}

ITEM_READER = [
    Example(
        "input-output-itemreader: ItemReader syntax - JSONPath, CSV with VersionId",
        _dmap(
            ItemReader={
                "ReaderConfig": _CSV_READER,
                "Resource": "arn:aws:states:::s3:getObject",
                "Parameters": {
                    "Bucket": BUCKET,
                    "Key": "csvDataset/ratings.csv",
                    "VersionId": "BcK42coT2jE1234VHLUvBV1yLNod2OEt",
                },
            }
        ),
        objects={(BUCKET, "csvDataset/ratings.csv"): _RATINGS_HEADER + _RATINGS},
        check=lambda result, store, children: _children_were(children, 0, _FIRST_RATING, 3),
    ),
    Example(
        # The page's JSONata example lacks the comma after "Key" (it is not JSON as printed).
        "input-output-itemreader: ItemReader syntax - JSONata, Arguments",
        _dmap(
            ItemReader={
                "ReaderConfig": _CSV_READER,
                "Resource": "arn:aws:states:::s3:getObject",
                "Arguments": {
                    "Bucket": BUCKET,
                    "Key": "csvDataset/ratings.csv",
                    "VersionId": "BcK42coT2jE1234VHLUvBV1yLNod2OEt",
                },
            },
            jsonata=True,
        ),
        objects={(BUCKET, "csvDataset/ratings.csv"): _RATINGS_HEADER + _RATINGS},
        check=lambda result, store, children: _children_were(children, 0, _FIRST_RATING, 3),
    ),
    Example(
        "input-output-itemreader: ItemReader syntax - JSONata refuses Parameters",
        _dmap(
            ItemReader={"ReaderConfig": _CSV_READER, **_reader("getObject", Key="k.csv")},
            jsonata=True,
        ),
        refused="'Parameters' is only supported for the 'JSONPath' QueryLanguage",
    ),
    Example(
        "input-output-itemreader: CSVHeaderLocation GIVEN",
        _dmap(
            ItemReader={
                "ReaderConfig": {
                    "InputType": "CSV",
                    "CSVHeaderLocation": "GIVEN",
                    "CSVHeaders": ["userId", "movieId", "rating", "timestamp"],
                },
                **_reader("getObject", Key="ratings.csv"),
            }
        ),
        objects={(BUCKET, "ratings.csv"): _RATINGS},
        check=lambda result, store, children: _children_were(children, 0, _FIRST_RATING, 3),
    ),
    Example(
        "input-output-itemreader: MaxItems - the Map stops reading items",
        _dmap(
            ItemReader={
                "ReaderConfig": {**_CSV_READER, "MaxItems": 2},
                **_reader("getObject", Key="ratings.csv"),
            }
        ),
        objects={(BUCKET, "ratings.csv"): _RATINGS_HEADER + _RATINGS},
        check=lambda result, store, children: _children_were(children, 0, _FIRST_RATING, 2),
    ),
    Example(
        "input-output-itemreader: Processing nested data sets - LOAD_AND_FLATTEN (JSONata)",
        _dmap(
            ItemReader={
                "Resource": "arn:aws:states:::s3:listObjectsV2",
                "ReaderConfig": {"InputType": "CSV", "Transformation": "LOAD_AND_FLATTEN"},
                "Arguments": {
                    "Bucket": "amzn-s3-demo-bucket1",
                    "Prefix": "{% $states.input.PrefixKey %}",
                },
            },
            jsonata=True,
        ),
        {"PrefixKey": "logs/"},
        objects={
            ("amzn-s3-demo-bucket1", "logs/01.csv"): b"hour,errors\n1,0\n",
            ("amzn-s3-demo-bucket1", "logs/02.csv"): b"hour,errors\n2,5\n3,1\n",
            ("amzn-s3-demo-bucket1", "other/03.csv"): b"hour,errors\n4,4\n",
        },
        output=[
            {"hour": "1", "errors": "0"},
            {"hour": "2", "errors": "5"},
            {"hour": "3", "errors": "1"},
        ],
    ),
    Example(
        "input-output-itemreader: JSON data from a previous step",
        _dmap(ItemsPath="$.facts"),
        {"facts": _FACTS},
        _FACTS,
        check=lambda result, store, children: _children_were(children, 0, _FACTS[0], 3),
    ),
    Example(
        "input-output-itemreader: JSON data from a previous step - Items in JSONata",
        _dmap(Items="{% $states.input.facts %}", jsonata=True),
        {"facts": _FACTS},
        _FACTS,
    ),
    Example(
        "input-output-itemreader: A list of Amazon S3 objects",
        _dmap(ItemReader=_reader("listObjectsV2", Prefix="processData")),
        objects={
            (BUCKET, "processData/images/n02085620_1073.jpg"): b"x" * 34910,
            (BUCKET, "processData/data.json"): b"{}",
            (BUCKET, "elsewhere/skip.txt"): b"",
        },
        check=lambda result, store, children: _listed(children),
    ),
    Example(
        "input-output-itemreader: Amazon S3 objects transformed by LOAD_AND_FLATTEN",
        _dmap(
            ItemReader={
                "Resource": "arn:aws:states:::s3:listObjectsV2",
                "ReaderConfig": {"InputType": "JSON", "Transformation": "LOAD_AND_FLATTEN"},
                "Arguments": {"Bucket": "S3_BUCKET_NAME", "Prefix": "S3_BUCKET_PREFIX/"},
            },
            jsonata=True,
            ItemSelector={
                "value": "{% $states.context.Map.Item.Value %}",
                "source": "{% $states.context.Map.Item.Source %}",
            },
        ),
        objects={
            ("S3_BUCKET_NAME", "S3_BUCKET_PREFIX/a.json"): json.dumps(_FACTS[:2]).encode(),
            ("S3_BUCKET_NAME", "S3_BUCKET_PREFIX/b.json"): json.dumps(_FACTS[2:]).encode(),
        },
        output=[
            {"value": _FACTS[0], "source": "S3://S3_BUCKET_NAME/S3_BUCKET_PREFIX/a.json"},
            {"value": _FACTS[1], "source": "S3://S3_BUCKET_NAME/S3_BUCKET_PREFIX/a.json"},
            {"value": _FACTS[2], "source": "S3://S3_BUCKET_NAME/S3_BUCKET_PREFIX/b.json"},
        ],
    ),
    Example(
        "input-output-itemreader: JSON file in an Amazon S3 bucket - ItemsPointer",
        _dmap(
            ItemReader={
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {
                    "InputType": "JSON",
                    "ItemsPointer": "/inventory/products/featured",
                },
                "Arguments": {"Bucket": BUCKET, "Key": "nested-data-file.json"},
            },
            jsonata=True,
        ),
        objects={(BUCKET, "nested-data-file.json"): json.dumps(_NESTED).encode()},
        output=[{"sku": "A1"}, {"sku": "B2"}],
    ),
    Example(
        "input-output-itemreader: JSON file in an Amazon S3 bucket - factcheck.json",
        _dmap(
            ItemReader={
                **_reader("getObject", Key="jsonDataset/factcheck.json"),
                "ReaderConfig": {"InputType": "JSON"},
            }
        ),
        objects={(BUCKET, "jsonDataset/factcheck.json"): json.dumps(_FACTS).encode()},
        output=_FACTS,
        check=lambda result, store, children: _children_were(children, 0, _FACTS[0], 3),
    ),
    Example(
        "input-output-itemreader: JSON Lines file in an Amazon S3 bucket - factcheck.jsonl",
        _dmap(
            ItemReader={
                **_reader("getObject", Key="jsonlDataset/factcheck.jsonl"),
                "ReaderConfig": {"InputType": "JSONL"},
            }
        ),
        objects={
            (BUCKET, "jsonlDataset/factcheck.jsonl"): "\n".join(
                json.dumps(f) for f in _FACTS
            ).encode()
        },
        output=_FACTS,
        check=lambda result, store, children: _children_were(children, 0, _FACTS[0], 3),
    ),
    Example(
        "input-output-itemreader: CSV file in an Amazon S3 bucket - CSVDelimiter PIPE",
        _dmap(
            ItemReader={
                "ReaderConfig": {
                    "InputType": "CSV",
                    "CSVHeaderLocation": "FIRST_ROW",
                    "CSVDelimiter": "PIPE",
                },
                "Resource": "arn:aws:states:::s3:getObject",
                "Parameters": {"Bucket": BUCKET, "Key": "csvDataset/ratings.csv"},
            }
        ),
        objects={
            (BUCKET, "csvDataset/ratings.csv"): (_RATINGS_HEADER + _RATINGS).replace(b",", b"|")
        },
        check=lambda result, store, children: _children_were(children, 0, _FIRST_RATING, 3),
    ),
    *[
        Example(
            f"input-output-itemreader: CSV file in an Amazon S3 bucket - {rule}",
            _dmap(ItemReader={"ReaderConfig": _CSV_READER, **_reader("getObject", Key="f.csv")}),
            objects={(BUCKET, "f.csv"): body},
            output=rows,
        )
        for rule, body, rows in (
            ("fields are strings", b"n,b\n1,true\n", [{"n": "1", "b": "true"}]),
            ("quoted commas and newlines", b'a,b\n"x,\ny",z\n', [{"a": "x,\ny", "b": "z"}]),
            ("doubled double quotes", b'a\n"say ""hi"""\n', [{"a": 'say "hi"'}]),
            (
                "repeated backslashes",
                b"path,size\nC:\\\\Program Files\\\\MyApp.exe,6534512\n",
                [{"path": "C:\\Program Files\\MyApp.exe", "size": "6534512"}],
            ),
            ("backslash before the separator", b"a,b\nx\\,y,z\n", [{"a": "x,y", "b": "z"}]),
            ("backslash before any other character", b"a\nx\\yz\n", [{"a": "xyz"}]),
            ("fewer fields than the header", b"a,b,c\n1\n", [{"a": "1", "b": "", "c": ""}]),
            ("more fields than the header", b"a,b\n1,2,3,4\n", [{"a": "1", "b": "2"}]),
        )
    ],
    Example(
        # "The Map state processes items in serial order, starting after the header row."
        "input-output-itemreader: CSV file in an Amazon S3 bucket - rows in order",
        _dmap(
            ItemReader={"ReaderConfig": _CSV_READER, **_reader("getObject", Key="ratings.csv")},
            MaxConcurrency=1,
        ),
        objects={(BUCKET, "ratings.csv"): _RATINGS_HEADER + _RATINGS},
        check=lambda result, store, children: _movies(children, ["307", "481", "1091"]),
    ),
    Example(
        "input-output-itemreader: A dataset the Map cannot read - States.ItemReaderFailed",
        _dmap(
            ItemReader={
                **_reader("getObject", Key="absent.json"),
                "ReaderConfig": {"InputType": "JSON"},
            }
        ),
        error="States.ItemReaderFailed",
    ),
    Example(
        "input-output-itemreader: The JSON file must contain an array",
        _dmap(
            ItemReader={**_reader("getObject", Key="o.json"), "ReaderConfig": {"InputType": "JSON"}}
        ),
        objects={(BUCKET, "o.json"): b'"just a string"'},
        error="States.ItemReaderFailed",
    ),
]


def _children_were(children: list[Any], index: int, expected: Any, total: int) -> None:
    assert len(children) == total
    assert _inputs(children)[index] == expected


def _movies(children: list[Any], expected: list[str]) -> None:
    assert [c["input"]["movieId"] for c in children] == expected


def _listed(children: list[Any]) -> None:
    """The page's listObjectsV2 item: Etag (in quotes), Key, LastModified (epoch seconds),
    Size and StorageClass, for every object under the prefix."""
    inputs = sorted(_inputs(children), key=lambda item: item["Key"])
    assert [i["Key"] for i in inputs] == [
        "processData/data.json",
        "processData/images/n02085620_1073.jpg",
    ]
    image = inputs[1]
    assert set(image) == {"Etag", "Key", "LastModified", "Size", "StorageClass"}
    assert re.fullmatch(r'"[0-9a-f]{32}"', image["Etag"]) and image["Size"] == 34910
    assert isinstance(image["LastModified"], int) and image["StorageClass"] == "STANDARD"


# --- "ItemBatcher (Map)" ---------------------------------------------------------------------

_VERDICTS = [
    {"verdict": "true", "statement_date": "6/11/2008", "statement_source": "speech"},
    {"verdict": "false", "statement_date": "6/7/2022", "statement_source": "television"},
    {"verdict": "true", "statement_date": "5/18/2016", "statement_source": "news"},
]

_DONE = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "done", "End": True}}}
_BIG_ITEMS = {**_reader("getObject", Key="big.json"), "ReaderConfig": {"InputType": "JSON"}}

ITEM_BATCHER = [
    Example(
        "input-output-itembatcher: By default, each item is passed to its own child",
        _dmap(ItemsPath="$"),
        _VERDICTS,
        _VERDICTS,
        check=lambda result, store, children: _children_were(children, 0, _VERDICTS[0], 3),
    ),
    Example(
        "input-output-itembatcher: A batch of two items passed to a child",
        _dmap(ItemBatcher={"MaxItemsPerBatch": 2}),
        _VERDICTS,
        check=lambda result, store, children: _batches(
            children, [{"Items": _VERDICTS[:2]}, {"Items": _VERDICTS[2:]}]
        ),
    ),
    Example(
        # "an input JSON file that contains 1130 nodes. If you specify a maximum items value
        # for each batch of 100, Step Functions creates 12 batches. Of these, 11 batches
        # contain 100 items each, while the twelfth batch contains the remaining 30 items."
        "input-output-itembatcher: Max items per batch - 1130 nodes, 100 per batch",
        _dmap(
            ItemReader={
                **_reader("getObject", Key="nodes.json"),
                "ReaderConfig": {"InputType": "JSON"},
            },
            ItemBatcher={"MaxItemsPerBatch": 100},
        ),
        objects={(BUCKET, "nodes.json"): json.dumps(list(range(1130))).encode()},
        check=lambda result, store, children: _batch_sizes(children, [100] * 11 + [30]),
    ),
    Example(
        "input-output-itembatcher: Max items per batch - MaxItemsPerBatchPath",
        _dmap(
            ItemsPath="$.items",
            MaxConcurrency=2000,
            ItemBatcher={"MaxItemsPerBatchPath": "$.maxBatchItems"},
        ),
        {"maxBatchItems": 500, "items": list(range(1200))},
        check=lambda result, store, children: _batch_sizes(children, [500, 500, 200]),
    ),
    Example(
        "input-output-itembatcher: Max items per batch - a JSONata expression",
        _dmap(
            Items="{% $states.input.items %}",
            ItemBatcher={"MaxItemsPerBatch": "{% $states.input.maxBatchItems %}"},
            jsonata=True,
        ),
        {"maxBatchItems": 500, "items": list(range(1200))},
        check=lambda result, store, children: _batch_sizes(children, [500, 500, 200]),
    ),
    Example(
        "input-output-itembatcher: Max items per batch - a JSONata expression must be positive",
        _dmap(Items=[1], ItemBatcher={"MaxItemsPerBatch": "{% 0 %}"}, jsonata=True),
        error=QEE,
    ),
    Example(
        "input-output-itembatcher: MaxItemsPerBatch or MaxItemsPerBatchPath, not both",
        _dmap(ItemBatcher={"MaxItemsPerBatch": 1, "MaxItemsPerBatchPath": "$.n"}),
        refused="MaxItemsPerBatch",
    ),
    Example(
        "input-output-itembatcher: MaxItemsPerBatchPath is JSONPath only",
        _dmap(Items=[1], ItemBatcher={"MaxItemsPerBatchPath": "$.n"}, jsonata=True),
        refused="'MaxItemsPerBatchPath' is only supported for the 'JSONPath' QueryLanguage",
    ),
    Example(
        # 131072 bytes: one batch holds the items whose JSON, with the batch's own
        # {"Items":[...]}, stays within it.
        "input-output-itembatcher: Max KiB per batch - MaxInputBytesPerBatchPath",
        _dmap(
            _DONE,
            ItemReader=_BIG_ITEMS,
            MaxConcurrency=2000,
            ItemBatcher={"MaxInputBytesPerBatchPath": "$.batchSize"},
        ),
        {"batchSize": 131072},
        objects={(BUCKET, "big.json"): json.dumps(["x" * 1000] * 300).encode()},
        check=lambda result, store, children: _batch_bytes(children, 131072, 300),
    ),
    Example(
        "input-output-itembatcher: Max KiB per batch - up to 256 KiB",
        _dmap(ItemBatcher={"MaxInputBytesPerBatch": 262145}),
        refused="MaxInputBytesPerBatch",
    ),
    Example(
        # "If you use batching and don't specify a maximum batch size, the interpreter
        # processes as many items it can process up to 256 KiB in each child workflow".
        "input-output-itembatcher: Max KiB per batch - 256 KiB when not given",
        _dmap(_DONE, ItemReader=_BIG_ITEMS, ItemBatcher={"MaxItemsPerBatch": 1000}),
        objects={(BUCKET, "big.json"): json.dumps(["x" * 1000] * 600).encode()},
        check=lambda result, store, children: _batch_bytes(children, 262144, 600),
    ),
    Example(
        "input-output-itembatcher: Batch input",
        _dmap(ItemBatcher={"MaxItemsPerBatch": 3, "BatchInput": {"factCheck": "December 2022"}}),
        _VERDICTS,
        check=lambda result, store, children: _batches(
            children, [{"BatchInput": {"factCheck": "December 2022"}, "Items": _VERDICTS}]
        ),
    ),
    Example(
        "input-output-itembatcher: Batch input - JSONata expressions",
        _dmap(
            Items="{% $states.input.facts %}",
            ItemBatcher={
                "MaxItemsPerBatch": 3,
                "BatchInput": {
                    "factCheck": "{% $states.input.month %}",
                    "n": "{% $count($states.input.facts) %}",
                },
            },
            jsonata=True,
        ),
        {"facts": _VERDICTS, "month": "December 2022"},
        check=lambda result, store, children: _batches(
            children, [{"BatchInput": {"factCheck": "December 2022", "n": 3}, "Items": _VERDICTS}]
        ),
    ),
    Example(
        "input-output-itembatcher: Batch input - a JSONata expression directly",
        _dmap(
            Items="{% $states.input.facts %}",
            ItemBatcher={
                "MaxItemsPerBatch": 3,
                "BatchInput": "{% {'factCheck': $states.input.month} %}",
            },
            jsonata=True,
        ),
        {"facts": _VERDICTS, "month": "December 2022"},
        check=lambda result, store, children: _batches(
            children, [{"BatchInput": {"factCheck": "December 2022"}, "Items": _VERDICTS}]
        ),
    ),
]


def _batches(children: list[Any], expected: list[Any]) -> None:
    assert _inputs(children) == expected


def _batch_sizes(children: list[Any], sizes: list[int]) -> None:
    assert [len(c["input"]["Items"]) for c in children] == sizes


def _batch_bytes(children: list[Any], limit: int, total: int) -> None:
    texts = [json.dumps(c["input"], separators=(",", ":")) for c in children]
    assert all(len(t.encode()) <= limit for t in texts), [len(t) for t in texts]
    assert sum(len(c["input"]["Items"]) for c in children) == total and len(children) > 1


# --- "ResultWriter (Map)" --------------------------------------------------------------------

_ORDERS = [
    [
        {"customer_id": "145538", "order_id": "100000"},
        {"customer_id": "898037", "order_id": "100001"},
    ],
    [
        {"customer_id": "169881", "order_id": "100005"},
        {"customer_id": "797471", "order_id": "100006"},
    ],
]


def _writer(
    config: dict[str, Any] | None = None, *, export: bool = False, jsonata: bool = False
) -> Any:
    writer: dict[str, Any] = {}
    if config is not None:
        writer["WriterConfig"] = config
    if export:
        writer["Resource"] = "arn:aws:states:::s3:putObject"
        writer["Arguments" if jsonata else "Parameters"] = {
            "Bucket": DEST,
            "Prefix": "csvProcessJobs",
        }
    if jsonata:
        return _dmap(Items="{% $states.input %}", ResultWriter=writer, jsonata=True)
    return _dmap(ResultWriter=writer)


RESULT_WRITER = [
    Example(
        "input-output-resultwriter: Only WriterConfig - FLATTEN",
        _writer({"Transformation": "FLATTEN", "OutputType": "JSON"}),
        _ORDERS,
        _ORDERS[0] + _ORDERS[1],
    ),
    Example(
        "input-output-resultwriter: Transformation COMPACT",
        _writer({"Transformation": "COMPACT", "OutputType": "JSON"}),
        _ORDERS,
        _ORDERS,
    ),
    Example(
        "input-output-resultwriter: Transformation NONE",
        _writer({"Transformation": "NONE", "OutputType": "JSON"}),
        _ORDERS,
        check=lambda result, store, children: _records(result.output, _ORDERS),
    ),
    Example(
        # "COMPACT - returns the output of the child workflow executions. Default when
        # ResultWriter is not specified."
        "input-output-resultwriter: COMPACT is the default without a ResultWriter",
        _dmap(),
        _ORDERS,
        _ORDERS,
    ),
    Example(
        # "If a child workflow execution fails, Step Functions returns its execution result
        # unchanged. The results would be equivalent to having set Transformation to NONE."
        "input-output-resultwriter: A failed child's result is unchanged",
        _failing_children(
            ToleratedFailurePercentage=100,
            ResultWriter={"WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSON"}},
        ),
        {"items": ["fail", "ok"]},
        check=lambda result, store, children: _failed_record(result.output),
    ),
    Example(
        "input-output-resultwriter: Only Resources and Parameters",
        _writer(export=True),
        _ORDERS,
        check=lambda result, store, children: _records(
            _exported(result, store, children, "csvProcessJobs", succeeded=2)["SUCCEEDED_0.json"],
            _ORDERS,
        ),
    ),
    Example(
        "input-output-resultwriter: All three fields: WriterConfig, Resources and Parameters",
        _writer({"Transformation": "FLATTEN", "OutputType": "JSON"}, export=True),
        _ORDERS,
        check=lambda result, store, children: _flattened_file(result, store, children),
    ),
    Example(
        "input-output-resultwriter: Exporting to Amazon S3 - JSONata Arguments",
        _writer(export=True, jsonata=True),
        _ORDERS,
        check=lambda result, store, children: _exported(
            result, store, children, "csvProcessJobs", succeeded=2
        ),
    ),
    Example(
        "input-output-resultwriter: Exporting to Amazon S3 - FAILED_n.json",
        _failing_children(
            ToleratedFailurePercentage=100,
            ResultWriter={
                "Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": DEST, "Prefix": "csvProcessJobs"},
            },
        ),
        {"items": ["fail", "ok", "ok"]},
        check=lambda result, store, children: _exported(
            result, store, children, "csvProcessJobs", succeeded=2, failed=1
        ),
    ),
    Example(
        "input-output-resultwriter: OutputType JSONL",
        _writer({"Transformation": "COMPACT", "OutputType": "JSONL"}, export=True),
        _ORDERS,
        check=lambda result, store, children: _jsonl_file(result, store),
    ),
    Example(
        "input-output-resultwriter: The ResultWriter field cannot be empty",
        _dmap(ResultWriter={}),
        refused="ResultWriter",
    ),
    Example(
        "input-output-resultwriter: JSONata refuses Parameters",
        _dmap(
            Items=[1],
            ResultWriter={
                "Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": DEST},
            },
            jsonata=True,
        ),
        refused="'Parameters' is only supported for the 'JSONPath' QueryLanguage",
    ),
    Example(
        # "If the returned output size exceeds 256 KiB, the state machine execution fails and
        # returns a States.DataLimitExceeded error."
        "input-output-resultwriter: Output over 256 KiB without an export",
        _dmap(ItemReader=_BIG_ITEMS),
        objects={(BUCKET, "big.json"): json.dumps(["x" * 100_000] * 3).encode()},
        # Each child's input is under the quota; the three outputs together are not.
        error="States.DataLimitExceeded",
    ),
]


def _records(records: list[Any], outputs: list[Any]) -> None:
    """Transformation NONE: each child's DescribeExecution record, Output as JSON text."""
    fields = {
        "ExecutionArn", "Input", "InputDetails", "Name", "Output", "OutputDetails", "RedriveCount",
        "RedriveStatus", "RedriveStatusReason", "StartDate", "StateMachineArn", "Status",
        "StopDate",
    }  # fmt: skip
    assert [set(r) for r in records] == [fields] * len(outputs)
    assert [json.loads(r["Output"]) for r in records] == outputs
    for record in records:
        assert record["Status"] == "SUCCEEDED" and record["RedriveCount"] == 0
        assert record["InputDetails"] == record["OutputDetails"] == {"Included": True}
        assert record["RedriveStatus"] == "NOT_REDRIVABLE"
        assert record["RedriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven"
        assert record["ExecutionArn"].endswith(":execution:machine/Map:" + record["Name"])
        assert record["StateMachineArn"].endswith(":stateMachine:machine/Map")


def _failed_record(output: list[Any]) -> None:
    failed, passed = output
    assert passed == "ok"
    assert failed["Status"] == "FAILED" and failed["Error"] == "ItemFailed", failed
    assert json.loads(failed["Input"]) == "fail" and "ExecutionArn" in failed


def _flattened_file(result: ExecutionResult, store: MemoryObjectStore, children: list[Any]) -> None:
    files = _exported(result, store, children, "csvProcessJobs", succeeded=2, records=4)
    assert files["SUCCEEDED_0.json"] == _ORDERS[0] + _ORDERS[1]


def _jsonl_file(result: ExecutionResult, store: MemoryObjectStore) -> None:
    key = result.output["ResultWriterDetails"]["Key"].replace("manifest.json", "SUCCEEDED_0.jsonl")
    body = store.get(DEST, key).decode()
    assert [json.loads(line) for line in body.splitlines()] == _ORDERS


# --- "How Step Functions parses input CSV files" ---------------------------------------------

# The page's input row; its documented output says "a double quote (\"), and a newline (\n)"
# for the text this row spells "a double quotation marks (""), and a newline (<newline>)":
# the words differ, the page evidently means the row's own text with "" read as one quote.
_MY_CSV = (
    'abc,123,"This string contains commas, a double quotation marks (""), and a newline (\n'
    ')",{""MyKey"":""MyValue""},"[1,2,3]"'
)

CSV_PARSING = [
    Example(
        "example-csv-parse-dist-map: Example of parsing an input CSV file",
        {
            "StartAt": "Map",
            "States": {
                "Map": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                        "StartAt": "Pass",
                        "States": {"Pass": {"Type": "Pass", "End": True}},
                    },
                    "End": True,
                    "Label": "Map",
                    "MaxConcurrency": 1000,
                    "ItemReader": {
                        "Resource": "arn:aws:states:::s3:getObject",
                        "ReaderConfig": {
                            "InputType": "CSV",
                            "CSVHeaderLocation": "GIVEN",
                            "CSVHeaders": [
                                "MyLetters",
                                "MyNumbers",
                                "MyString",
                                "MyObject",
                                "MyArray",
                            ],
                        },
                        "Parameters": {"Bucket": BUCKET, "Key": "myCSVInput.csv"},
                    },
                    "ItemSelector": {
                        "MyLetters.$": "$$.Map.Item.Value.MyLetters",
                        "MyNumbers.$": "States.StringToJson($$.Map.Item.Value.MyNumbers)",
                        "MyString.$": "$$.Map.Item.Value.MyString",
                        "MyObject.$": "States.StringToJson($$.Map.Item.Value.MyObject)",
                        "MyArray.$": "States.StringToJson($$.Map.Item.Value.MyArray)",
                    },
                }
            },
        },
        objects={(BUCKET, "myCSVInput.csv"): _MY_CSV.encode()},
        output=[
            {
                "MyNumbers": 123,
                "MyObject": {"MyKey": "MyValue"},
                "MyString": (
                    'This string contains commas, a double quotation marks ("), and a newline (\n)'
                ),
                "MyLetters": "abc",
                "MyArray": [1, 2, 3],
            }
        ],
    ),
    Example(
        "example-csv-parse-dist-map: Map.Item.Source of an object's items",
        _dmap(
            ItemReader={"ReaderConfig": _CSV_READER, **_reader("getObject", Key="ratings.csv")},
            ItemSelector={"source.$": "$$.Map.Item.Source", "index.$": "$$.Map.Item.Index"},
        ),
        objects={(BUCKET, "ratings.csv"): _RATINGS_HEADER + _RATINGS},
        output=[{"source": f"S3://{BUCKET}/ratings.csv", "index": i} for i in range(3)],
    ),
    Example(
        # "For Amazon S3 LIST_OBJECTS_V2 with Transformation=NONE, the value will show the S3
        # URI for the bucket" (input-output-contextobject).
        "input-output-contextobject: Map.Item.Source of listed objects",
        _dmap(
            ItemReader=_reader("listObjectsV2", Prefix="p/"),
            ItemSelector={"source.$": "$$.Map.Item.Source"},
        ),
        objects={(BUCKET, "p/a"): b"", (BUCKET, "p/b"): b""},
        output=[{"source": f"S3://{BUCKET}"}] * 2,
    ),
]

EXAMPLES = [*INLINE, *DISTRIBUTED_MAP, *ITEM_READER, *ITEM_BATCHER, *RESULT_WRITER, *CSV_PARSING]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_runs_as_documented(example: Example) -> None:
    check_example(example)


def test_every_example_has_a_unique_id_naming_its_page() -> None:
    assert len({e.id for e in EXAMPLES}) == len(EXAMPLES)
    assert {e.page for e in EXAMPLES} <= set(PAGES)
    for example in EXAMPLES:  # what the pages print is JSON; so is what runs here
        json.dumps(example.definition)


def test_distributed_mode_is_not_supported_in_express_workflows() -> None:
    # state-map-distributed, "Distributed Map state fields": "Distributed mode is supported
    # in Standard workflows but not supported in Express workflows."
    definition = _dmap()
    with pytest.raises(HandlerError, match="only in a STANDARD workflow"):
        run_execution(parse_definition(definition), [1], execution_type="EXPRESS")
    inline = machine({"M": {"Type": "Map", "ItemProcessor": _PASS}}, jsonata=False)
    assert run_execution(parse_definition(inline), [1], execution_type="EXPRESS").output == [1]
