"""A Distributed Map's own fields, compiled once with the rest of the definition:
ItemReader, ItemBatcher, ResultWriter and ProcessorConfig (AWS developer guide,
"Map state input and output fields"). validate.py has already checked their structure;
here paths and payload templates compile, so a bad one is reported like any other.
The runtime is distributed.py.

In a JSONata Map the same fields take JSONata (AWS: "ItemReader (Map)", "ItemBatcher
(Map)", "ResultWriter (Map)"): ItemReader and ResultWriter have `Arguments` where JSONPath
has `Parameters`, ReaderConfig.MaxItems, MaxItemsPerBatch, MaxInputBytesPerBatch and
BatchInput may be expressions, and the `...Path` fields do not exist. A spec compiled
from JSONata holds JSONata templates (`jsonata=True`); distributed.py evaluates them
against `$states`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import jsonata as jsonata_mode
from .items import (
    CSV_DELIMITERS,
    GET_OBJECT,
    LIST_OBJECTS,
    MAX_ITEMS_LIMIT,
    PUT_OBJECT,
    ReaderConfig,
)
from .jsonata import is_expression
from .paths import compile_path, parse_reference_path
from .payload import compile_template

Template = Callable[..., Any]  # a payload template (data, ctx), or JSONata's (states, lookup)

Getter = Callable[[Any], Any]


@dataclass(frozen=True)
class PathValue:
    """A compiled `...Path` field and the path as written (for the error causes): a Map's
    read from its effective input, a Task's TimeoutSecondsPath/HeartbeatSecondsPath from its
    raw input."""

    getter: Getter
    text: str


@dataclass(frozen=True)
class ItemReaderSpec:
    resource: str  # LIST_OBJECTS or GET_OBJECT
    parameters: Template  # Parameters, or in JSONata Arguments
    config: ReaderConfig
    max_items: int = 0  # 0: no limit
    max_items_path: PathValue | None = None
    max_items_expression: Template | None = None  # JSONata: MaxItems as an expression
    jsonata: bool = False


@dataclass(frozen=True)
class ItemBatcherSpec:
    max_items: int | None = None
    max_items_path: PathValue | None = None
    max_bytes: int | None = None
    max_bytes_path: PathValue | None = None
    batch_input: Template | None = None
    # JSONata: MaxItemsPerBatch / MaxInputBytesPerBatch as templates (constant or expression)
    max_items_expression: Template | None = None
    max_bytes_expression: Template | None = None
    jsonata: bool = False


@dataclass(frozen=True)
class ResultWriterSpec:
    parameters: Template | None  # None: WriterConfig alone, results stay in the output
    transformation: str  # NONE | COMPACT | FLATTEN
    output_type: str  # JSON | JSONL
    jsonata: bool = False


@dataclass(frozen=True)
class DistributedSpec:
    execution_type: str  # STANDARD | EXPRESS
    item_reader: ItemReaderSpec | None = None
    item_batcher: ItemBatcherSpec | None = None
    result_writer: ResultWriterSpec | None = None


def path_value(text: Any) -> PathValue:
    """Compile a `...Path` field; ValueError names the problem."""
    if not isinstance(text, str) or parse_reference_path(text) is None:
        raise ValueError(f"{text!r} must be a reference path such as '$.limit'")
    return PathValue(compile_path(text), text)


def compile_distributed(
    spec: dict[str, Any], processor: dict[str, Any], jsonata: bool = False
) -> DistributedSpec:
    """The DistributedSpec of a Map whose ProcessorConfig.Mode is DISTRIBUTED."""
    config = processor.get("ProcessorConfig") or {}
    reader, batcher, writer = (spec.get(f) for f in ("ItemReader", "ItemBatcher", "ResultWriter"))
    return DistributedSpec(
        execution_type=config.get("ExecutionType", "STANDARD"),
        item_reader=_item_reader(reader, jsonata) if reader is not None else None,
        item_batcher=_item_batcher(batcher, jsonata) if batcher is not None else None,
        result_writer=_result_writer(writer, jsonata) if writer is not None else None,
    )


def _jsonata_template(value: Any, field: str) -> Template:
    return jsonata_mode.compile_template(value, field)


def _item_reader(spec: dict[str, Any], jsonata: bool) -> ItemReaderSpec:
    config = spec.get("ReaderConfig") or {}
    reader = ReaderConfig(
        input_type=config.get("InputType"),
        header_location=config.get("CSVHeaderLocation", "FIRST_ROW"),
        headers=tuple(config.get("CSVHeaders", ())),
        delimiter=CSV_DELIMITERS[config.get("CSVDelimiter", "COMMA")],
        items_pointer=config.get("ItemsPointer"),
        load_and_flatten=config.get("Transformation") == "LOAD_AND_FLATTEN",
    )
    max_items = config.get("MaxItems", 0)
    if jsonata:
        expression = None
        if jsonata_mode.is_expression(max_items):
            expression = _jsonata_template(max_items, "ItemReader/ReaderConfig/MaxItems")
            max_items = 0
        return ItemReaderSpec(
            resource=spec["Resource"],
            parameters=_jsonata_template(spec.get("Arguments", {}), "ItemReader/Arguments"),
            config=reader,
            max_items=max_items,
            max_items_expression=expression,
            jsonata=True,
        )
    return ItemReaderSpec(
        resource=spec["Resource"],
        parameters=compile_template(spec.get("Parameters", {})),
        config=reader,
        max_items=max_items,
        max_items_path=path_value(config["MaxItemsPath"]) if "MaxItemsPath" in config else None,
    )


def _item_batcher(spec: dict[str, Any], jsonata: bool) -> ItemBatcherSpec:
    if jsonata:

        def optional(field: str) -> Template | None:
            return _jsonata_template(spec[field], f"ItemBatcher/{field}") if field in spec else None

        return ItemBatcherSpec(
            batch_input=optional("BatchInput"),
            max_items_expression=optional("MaxItemsPerBatch"),
            max_bytes_expression=optional("MaxInputBytesPerBatch"),
            jsonata=True,
        )

    def optional_path(field: str) -> PathValue | None:
        return path_value(spec[field]) if field in spec else None

    return ItemBatcherSpec(
        max_items=spec.get("MaxItemsPerBatch"),
        max_items_path=optional_path("MaxItemsPerBatchPath"),
        max_bytes=spec.get("MaxInputBytesPerBatch"),
        max_bytes_path=optional_path("MaxInputBytesPerBatchPath"),
        batch_input=compile_template(spec["BatchInput"]) if "BatchInput" in spec else None,
    )


def _result_writer(spec: dict[str, Any], jsonata: bool) -> ResultWriterSpec:
    config = spec.get("WriterConfig")
    exporting = "Resource" in spec
    if config is None:  # AWS's defaults: NONE when exporting to S3
        transformation, output_type = "NONE", "JSON"
    else:
        transformation, output_type = config["Transformation"], config["OutputType"]
    parameters = None
    if exporting and jsonata:
        parameters = _jsonata_template(spec.get("Arguments", {}), "ResultWriter/Arguments")
    elif exporting:
        parameters = compile_template(spec.get("Parameters", {}))
    return ResultWriterSpec(
        parameters=parameters,
        transformation=transformation,
        output_type=output_type,
        jsonata=jsonata,
    )


# --- structure checks (run by validate.py before anything compiles) -------------------------

_LABEL_FORBIDDEN = set(' ?*<>{}[]:;,\\|^~$#%&`"') | {
    chr(i) for i in (*range(0x00, 0x20), *range(0x7F, 0xA0))
}
_READER_FIELDS = {"Resource", "Parameters", "Arguments", "ReaderConfig"}
_READER_CONFIG_FIELDS = {
    "InputType", "CSVHeaderLocation", "CSVHeaders", "CSVDelimiter", "MaxItems", "MaxItemsPath",
    "ItemsPointer", "Transformation",
}  # fmt: skip
_BATCHER_FIELDS = {
    "MaxItemsPerBatch", "MaxItemsPerBatchPath", "MaxInputBytesPerBatch",
    "MaxInputBytesPerBatchPath", "BatchInput",
}  # fmt: skip
_WRITER_FIELDS = {"Resource", "Parameters", "Arguments", "WriterConfig"}
MAX_BATCH_BYTES = 262_144  # AWS: a batch is at most 256 KiB


def check_map_fields(
    at: str, state: dict[str, Any], mode: str, problems: list[str], language: str = "JSONPath"
) -> None:
    """Problems with a Map's Label, ProcessorConfig and distributed-only fields (`mode`:
    INLINE or DISTRIBUTED; `language`: the Map's query language)."""
    for field in ("ItemReader", "ItemBatcher", "ResultWriter"):
        if field in state and mode != "DISTRIBUTED":
            problems.append(
                f"{at}: {field} needs a Distributed Map; set ItemProcessor.ProcessorConfig "
                '{"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}'
            )
    for a, b in (
        ("MaxConcurrency", "MaxConcurrencyPath"),
        ("ToleratedFailureCount", "ToleratedFailureCountPath"),
        ("ToleratedFailurePercentage", "ToleratedFailurePercentagePath"),
    ):
        if a in state and b in state:
            problems.append(f"{at}: give either {a!r} or {b!r}, not both")
    if "Label" in state:
        label = state["Label"]
        if not isinstance(label, str) or not 1 <= len(label) <= 40:
            problems.append(f"{at}: Label must be a string of 1 to 40 characters")
        elif bad := sorted(set(label) & _LABEL_FORBIDDEN):
            problems.append(f"{at}: Label {label!r} has characters AWS refuses: {bad}")
    jsonata = language == "JSONata"
    if "ItemReader" in state:
        _check_reader(at, state["ItemReader"], problems, jsonata)
    if "ItemBatcher" in state:
        _check_batcher(at, state["ItemBatcher"], problems, jsonata)
    if "ResultWriter" in state:
        _check_writer(at, state["ResultWriter"], problems, jsonata)


def _language(where: str, spec: dict[str, Any], jsonata: bool, problems: list[str]) -> str:
    """The name of the field that carries the S3 call's arguments (Parameters in JSONPath,
    Arguments in JSONata), after refusing the other one as AWS does."""
    own, other = ("Arguments", "Parameters") if jsonata else ("Parameters", "Arguments")
    if other in spec:
        mode, foreign = ("JSONata", "JSONPath") if jsonata else ("JSONPath", "JSONata")
        problems.append(
            f"{where}: The QueryLanguage is set to '{mode}', but field '{other}' is only "
            f"supported for the '{foreign}' QueryLanguage; use '{own}'"
        )
    return own


def _jsonata_only_paths(where: str, spec: dict[str, Any], problems: list[str]) -> None:
    for key in sorted(k for k in spec if k.endswith("Path")):
        problems.append(
            f"{where}: The QueryLanguage is set to 'JSONata', but field '{key}' is only "
            f"supported for the 'JSONPath' QueryLanguage; give '{key[:-4]}' a JSONata "
            "expression instead"
        )


def check_processor_config(at: str, config: Any, problems: list[str]) -> str:
    """Problems with ItemProcessor.ProcessorConfig; returns the Mode."""
    if config is None:
        return "INLINE"
    if not isinstance(config, dict):
        problems.append(f"{at}: ProcessorConfig must be an object such as {{'Mode': 'INLINE'}}")
        return "INLINE"
    for key in set(config) - {"Mode", "ExecutionType"}:
        problems.append(f"{at}: ProcessorConfig field {key!r} is not allowed; remove it")
    mode = config.get("Mode", "INLINE")
    if mode not in ("INLINE", "DISTRIBUTED"):
        problems.append(f"{at}: ProcessorConfig.Mode {mode!r} must be 'INLINE' or 'DISTRIBUTED'")
    kind = config.get("ExecutionType")
    if mode == "DISTRIBUTED" and kind not in ("STANDARD", "EXPRESS"):
        problems.append(
            f"{at}: a Distributed Map needs ProcessorConfig.ExecutionType 'STANDARD' or "
            f"'EXPRESS', got {kind!r}"
        )
    return str(mode)


def _check_reader(at: str, reader: Any, problems: list[str], jsonata: bool) -> None:
    where = f"{at}: ItemReader"
    if not isinstance(reader, dict):
        problems.append(f"{where} must be an object with Resource and Parameters")
        return
    _unknown(where, reader, _READER_FIELDS, problems)
    arguments = _language(where, reader, jsonata, problems)
    resource = reader.get("Resource")
    if resource not in (LIST_OBJECTS, GET_OBJECT):
        problems.append(
            f"{where}.Resource {resource!r} is not supported; use '{LIST_OBJECTS}' (objects "
            f"under a prefix) or '{GET_OBJECT}' (a JSON, JSONL or CSV object)"
        )
    given = reader.get(arguments)
    if not (isinstance(given, dict) or (jsonata and is_expression(given))):
        problems.append(
            f"{where}.{arguments} must be an object such as "
            '{"Bucket": "sconeflow", "Prefix": "data/test/"}'
        )
    config = reader.get("ReaderConfig", {})
    if not isinstance(config, dict):
        problems.append(f"{where}.ReaderConfig must be an object")
        return
    _unknown(f"{where}.ReaderConfig", config, _READER_CONFIG_FIELDS, problems)
    if jsonata:
        _jsonata_only_paths(f"{where}.ReaderConfig", config, problems)
    kind = config.get("InputType")
    transformation = config.get("Transformation", "NONE")
    flatten = transformation == "LOAD_AND_FLATTEN"
    if transformation not in ("NONE", "LOAD_AND_FLATTEN"):
        problems.append(f"{where}.ReaderConfig.Transformation must be 'NONE' or 'LOAD_AND_FLATTEN'")
    elif flatten and resource != LIST_OBJECTS:
        problems.append(
            f"{where}.ReaderConfig.Transformation LOAD_AND_FLATTEN reads the objects a "
            f"listing finds; use Resource '{LIST_OBJECTS}'"
        )
    if (resource == GET_OBJECT or flatten) and kind not in ("JSON", "JSONL", "CSV"):
        reading = "getObject" if resource == GET_OBJECT else "LOAD_AND_FLATTEN"
        problems.append(
            f"{where}.ReaderConfig.InputType {kind!r} is not supported with {reading}; use "
            "'JSON', 'JSONL' or 'CSV' (AWS's PARQUET and MANIFEST are not available here)"
        )
    if resource == LIST_OBJECTS and kind is not None and not flatten:
        problems.append(
            f"{where}.ReaderConfig.InputType is for getObject, or for listObjectsV2 with "
            "Transformation LOAD_AND_FLATTEN; remove it"
        )
    pointer = config.get("ItemsPointer")
    if "ItemsPointer" in config and kind != "JSON":
        problems.append(f"{where}.ReaderConfig.ItemsPointer applies to InputType JSON only")
    elif pointer is not None and not (isinstance(pointer, str) and pointer[:1] in ("/", "")):
        problems.append(
            f"{where}.ReaderConfig.ItemsPointer must be a JSON Pointer such as "
            f"'/inventory/products', got {pointer!r}"
        )
    location = config.get("CSVHeaderLocation", "FIRST_ROW")
    if kind != "CSV":
        for field in ("CSVHeaderLocation", "CSVHeaders", "CSVDelimiter"):
            if field in config:
                problems.append(f"{where}.ReaderConfig.{field} applies to InputType CSV only")
    elif location not in ("FIRST_ROW", "GIVEN"):
        problems.append(f"{where}.ReaderConfig.CSVHeaderLocation must be 'FIRST_ROW' or 'GIVEN'")
    elif location == "GIVEN":
        headers = config.get("CSVHeaders")
        if (
            not isinstance(headers, list)
            or not headers
            or not all(isinstance(h, str) for h in headers)
        ):
            problems.append(
                f"{where}.ReaderConfig: CSVHeaderLocation GIVEN needs CSVHeaders, a non-empty "
                'array of column names such as ["id", "label"]'
            )
    elif "CSVHeaders" in config:
        problems.append(f"{where}.ReaderConfig.CSVHeaders needs CSVHeaderLocation 'GIVEN'")
    if "CSVDelimiter" in config and config["CSVDelimiter"] not in CSV_DELIMITERS:
        problems.append(
            f"{where}.ReaderConfig.CSVDelimiter must be one of {sorted(CSV_DELIMITERS)}"
        )
    if "MaxItems" in config and "MaxItemsPath" in config:
        problems.append(f"{where}.ReaderConfig: give either 'MaxItems' or 'MaxItemsPath'")
    items = config.get("MaxItems", 0)
    if not _int_in(items, 0, MAX_ITEMS_LIMIT) and not (jsonata and is_expression(items)):
        problems.append(
            f"{where}.ReaderConfig.MaxItems must be an integer from 0 to {MAX_ITEMS_LIMIT}, "
            f"got {items!r}"
        )


def _check_batcher(at: str, batcher: Any, problems: list[str], jsonata: bool) -> None:
    where = f"{at}: ItemBatcher"
    if not isinstance(batcher, dict):
        problems.append(f"{where} must be an object such as {{'MaxItemsPerBatch': 10}}")
        return
    _unknown(where, batcher, _BATCHER_FIELDS, problems)
    if jsonata:
        _jsonata_only_paths(where, batcher, problems)
    if not set(batcher) & (_BATCHER_FIELDS - {"BatchInput"}):
        problems.append(
            f"{where} needs MaxItemsPerBatch, MaxInputBytesPerBatch or one of their Path forms"
        )
    for a, limit in (("MaxItemsPerBatch", None), ("MaxInputBytesPerBatch", MAX_BATCH_BYTES)):
        if a in batcher and f"{a}Path" in batcher:
            problems.append(f"{where}: give either {a!r} or '{a}Path', not both")
        if a in batcher and not _int_in(batcher[a], 1, limit) and not (
            jsonata and is_expression(batcher[a])
        ):
            bound = f" up to {limit}" if limit else ""
            problems.append(f"{where}.{a} must be a positive integer{bound}, got {batcher[a]!r}")
    batch_input = batcher.get("BatchInput")
    if "BatchInput" in batcher and not (
        isinstance(batch_input, dict) or (jsonata and is_expression(batch_input))
    ):
        problems.append(f"{where}.BatchInput must be an object (a payload template)")


def _check_writer(at: str, writer: Any, problems: list[str], jsonata: bool) -> None:
    where = f"{at}: ResultWriter"
    if not isinstance(writer, dict) or not writer:
        problems.append(
            f"{where} must be an object with Resource '{PUT_OBJECT}' and Parameters "
            "{Bucket, Prefix}, and/or WriterConfig"
        )
        return
    _unknown(where, writer, _WRITER_FIELDS, problems)
    arguments = _language(where, writer, jsonata, problems)
    if ("Resource" in writer) != (arguments in writer):
        problems.append(f"{where}: give Resource and {arguments} together")
    if "Resource" in writer and writer["Resource"] != PUT_OBJECT:
        problems.append(f"{where}.Resource must be '{PUT_OBJECT}', got {writer['Resource']!r}")
    given = writer.get(arguments)
    if arguments in writer and not (
        isinstance(given, dict) or (jsonata and is_expression(given))
    ):
        problems.append(f"{where}.{arguments} must be an object such as {{'Bucket': 'b'}}")
    if "WriterConfig" in writer:
        config = writer["WriterConfig"]
        if not isinstance(config, dict):
            problems.append(f"{where}.WriterConfig must be an object")
            return
        _unknown(f"{where}.WriterConfig", config, {"Transformation", "OutputType"}, problems)
        if config.get("Transformation") not in ("NONE", "COMPACT", "FLATTEN"):
            problems.append(
                f"{where}.WriterConfig.Transformation must be 'NONE', 'COMPACT' or 'FLATTEN'"
            )
        if config.get("OutputType") not in ("JSON", "JSONL"):
            problems.append(f"{where}.WriterConfig.OutputType must be 'JSON' or 'JSONL'")


def _unknown(where: str, spec: dict[str, Any], allowed: set[str], problems: list[str]) -> None:
    for key in sorted(set(spec) - allowed):
        problems.append(f"{where}: field {key!r} is not allowed; use {sorted(allowed)}")


def _int_in(value: Any, low: int, high: int | None) -> bool:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    return ok and (high is None or value <= high)
