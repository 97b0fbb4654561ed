"""The object store a Distributed Map reads items from and writes results to, and the
item readers (AWS developer guide, "ItemReader (Map)").

The engine is pure, so it never imports a storage backend: `run_execution(store=...)`
takes anything with the three methods of `ObjectStore`. The execution service adapts
the workspace's store (embedded or S3) to it (`sconeflow.executions.objects`); tests and
benchmarks can use `MemoryObjectStore`.

Item shapes, as AWS documents them:
* `arn:aws:states:::s3:listObjectsV2`: one item per object under the prefix,
  `{"Etag": "\\"<md5>\\"", "Key": ..., "LastModified": <epoch seconds>, "Size": <bytes>,
  "StorageClass": "STANDARD"}`, in key order, every page;
* `arn:aws:states:::s3:getObject` with `ReaderConfig.InputType`: `JSON` (the object is one
  JSON array, or holds one where `ItemsPointer`, a JSON Pointer, points), `JSONL` (one JSON
  value per line), `CSV` (one object per row, every value a string, header from the first
  row or `CSVHeaders`, read by AWS's rules: `_csv_rows`);
* listObjectsV2 with `ReaderConfig.Transformation: LOAD_AND_FLATTEN` and an InputType: the
  items of every object under the prefix, read as that type, in key order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import StatesFailure

ITEM_READER_FAILED = "States.ItemReaderFailed"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"
LIST_OBJECTS = "arn:aws:states:::s3:listObjectsV2"
GET_OBJECT = "arn:aws:states:::s3:getObject"
PUT_OBJECT = "arn:aws:states:::s3:putObject"
MAX_ITEMS_LIMIT = 100_000_000  # AWS's ceiling on ReaderConfig.MaxItems
CSV_DELIMITERS = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a listing reports it (S3's ListObjectsV2 `Contents` entry)."""

    key: str
    size: int
    etag: str  # with S3's surrounding double quotes: '"9e107d9d372bb6826bd81d3542a419d6"'
    last_modified: dt.datetime
    storage_class: str = "STANDARD"


class ObjectStore(Protocol):
    """What a Distributed Map needs from storage. Errors may be any exception: the engine
    reports them as States.ItemReaderFailed / States.ResultWriterFailed."""

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""
        ...

    def get(self, bucket: str, key: str) -> bytes: ...

    def put(self, bucket: str, key: str, data: bytes) -> None: ...


class MemoryObjectStore:
    """Objects in a dict, for tests and benchmarks (`objects[(bucket, key)] = bytes`)."""

    def __init__(self, clock: Any = None) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, dt.datetime]] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def put(self, bucket: str, key: str, data: bytes) -> None:
        now = self._clock.now() if self._clock is not None else dt.datetime.now(dt.UTC)
        with self._lock:
            self.objects[(bucket, key)] = (bytes(data), now)

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)][0]
        except KeyError:
            raise FileNotFoundError(f"no object s3://{bucket}/{key}") from None

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        with self._lock:
            found = sorted((k, v) for (b, k), v in self.objects.items() if b == bucket)
        return [
            ObjectInfo(key, len(data), f'"{hashlib.md5(data).hexdigest()}"', stamp)
            for key, (data, stamp) in found
            if key.startswith(prefix)
        ]


@dataclass(frozen=True)
class ReaderConfig:
    """ItemReader.ReaderConfig, compiled (MaxItems resolved per execution)."""

    input_type: str | None = None  # JSON | JSONL | CSV; None for listObjectsV2
    header_location: str = "FIRST_ROW"
    headers: tuple[str, ...] = ()
    delimiter: str = ","
    items_pointer: str | None = None  # JSON: where in the object the array is (RFC 6901)
    load_and_flatten: bool = False  # listObjectsV2: read the listed objects' items


def read_items(
    store: ObjectStore, resource: str, params: Any, config: ReaderConfig, max_items: int
) -> list[Any]:
    """The items an ItemReader yields, at most `max_items` (0: no limit)."""
    return [item for item, _ in read_sourced_items(store, resource, params, config, max_items)]


def read_sourced_items(
    store: ObjectStore, resource: str, params: Any, config: ReaderConfig, max_items: int
) -> list[tuple[Any, str]]:
    """The items an ItemReader yields, each with its `Map.Item.Source`: the bucket's URI
    ("S3://bucket") for listed objects, the object's ("S3://bucket/key") for an item read
    from one (AWS: "Context object data for Map states")."""
    if not isinstance(params, dict) or not isinstance(params.get("Bucket"), str):
        raise StatesFailure(
            ITEM_READER_FAILED,
            f"ItemReader Parameters must give a string 'Bucket', got {json.dumps(params)}",
        )
    bucket = params["Bucket"]
    limit = max_items or MAX_ITEMS_LIMIT
    if resource == LIST_OBJECTS:
        prefix = params.get("Prefix", "")
        if not isinstance(prefix, str):
            raise StatesFailure(ITEM_READER_FAILED, "ItemReader Parameters.Prefix must be a string")
        try:
            listed = store.list(bucket, prefix)
        except Exception as err:  # any backend's failure is the reader's failure
            raise StatesFailure(ITEM_READER_FAILED, _describe(err)) from err
        if not config.load_and_flatten:
            return [(_object_item(o), f"S3://{bucket}") for o in listed[:limit]]
        sourced: list[tuple[Any, str]] = []
        for info in listed:
            if len(sourced) >= limit:
                break
            items = _object_items(store, bucket, info.key, config, limit - len(sourced))
            sourced.extend((item, f"S3://{bucket}/{info.key}") for item in items)
        return sourced
    key = params.get("Key")
    if not isinstance(key, str):
        raise StatesFailure(ITEM_READER_FAILED, "ItemReader Parameters must give a string 'Key'")
    source = f"S3://{bucket}/{key}"
    return [(item, source) for item in _object_items(store, bucket, key, config, limit)]


def _object_items(
    store: ObjectStore, bucket: str, key: str, config: ReaderConfig, limit: int
) -> list[Any]:
    """The items of one object, read as `config.input_type`."""
    try:
        body = store.get(bucket, key)
    except Exception as err:
        raise StatesFailure(ITEM_READER_FAILED, _describe(err)) from err
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise StatesFailure(
            ITEM_READER_FAILED, f"s3://{bucket}/{key} is not UTF-8 text: {err}"
        ) from err
    if config.input_type == "CSV":
        return _csv_items(text, config, limit)
    if config.input_type == "JSONL":
        return _jsonl_items(text, bucket, key, limit)
    try:
        value = json.loads(text)
    except ValueError as err:
        raise StatesFailure(
            ITEM_READER_FAILED, f"s3://{bucket}/{key} is not valid JSON: {err}"
        ) from err
    if config.items_pointer is not None:
        value = _pointed(value, config.items_pointer, bucket, key)
    if not isinstance(value, list):
        raise StatesFailure(ITEM_READER_FAILED, "Attempting to map over non-iterable node.")
    return value[:limit]


def _pointed(value: Any, pointer: str, bucket: str, key: str) -> Any:
    """The node a JSON Pointer (RFC 6901: `/a/0/b`, `~1` for '/', `~0` for '~') selects."""
    for token in pointer.split("/")[1:] if pointer else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            raise StatesFailure(
                ITEM_READER_FAILED,
                f"ItemsPointer '{pointer}' selects nothing in s3://{bucket}/{key}",
            )
    return value


def _object_item(info: ObjectInfo) -> dict[str, Any]:
    # AWS's listObjectsV2 item: "Etag" (not S3's "ETag") and LastModified in epoch seconds.
    return {
        "Etag": info.etag,
        "Key": info.key,
        "LastModified": int(info.last_modified.timestamp()),
        "Size": info.size,
        "StorageClass": info.storage_class,
    }


def _csv_items(text: str, config: ReaderConfig, limit: int) -> list[dict[str, str]]:
    rows = _csv_rows(text, config.delimiter)
    if config.header_location == "GIVEN":
        headers = list(config.headers)
    else:
        headers = next(rows, [])
        if not headers:
            raise StatesFailure(ITEM_READER_FAILED, "The CSV file has no header row.")
    if len(set(headers)) < len(headers):
        raise StatesFailure(ITEM_READER_FAILED, "CSV headers cannot contain duplicates.")
    items: list[dict[str, str]] = []
    for row in rows:
        if len(items) >= limit:
            break
        # A short row's missing columns read as empty strings; CSV values stay strings.
        items.append({h: row[i] if i < len(row) else "" for i, h in enumerate(headers)})
    return items


def _csv_rows(text: str, delimiter: str) -> Iterator[list[str]]:
    """The records of a text delimited file, by the rules AWS lists ("How Step Functions
    parses input CSV files"): `delimiter` separates fields and newlines separate records;
    a field in double quotes may hold delimiters and newlines; a doubled double quote is a
    double quote, in quotes or not (the guide's own example has `{""MyKey"":""MyValue""}`
    unquoted); a backslash escapes a backslash, a double quote or the delimiter, and is
    dropped before any other character. Python's csv module knows no such backslash rule
    and keeps `""` inside an unquoted field, so the rules are written out here."""
    record: list[str] = []
    chars: list[str] = []
    quoted = begun = False  # in a quoted section; this field has begun
    i, end = 0, len(text)
    while i < end:
        c = text[i]
        following = text[i + 1] if i + 1 < end else ""
        if c == "\\":
            if following in ("\\", '"', delimiter):
                chars.append(following)
                i += 1
            begun = True
        elif c == '"':
            if following == '"' and (quoted or begun):
                chars.append('"')
                i += 1
            else:
                quoted = not quoted
            begun = True
        elif quoted:
            chars.append(c)
        elif c == delimiter:
            record.append("".join(chars))
            chars, begun = [], False
        elif c in "\r\n":
            if c == "\r" and following == "\n":
                i += 1
            if begun or record:
                record.append("".join(chars))
            yield record
            record, chars, begun = [], [], False
        else:
            chars.append(c)
            begun = True
        i += 1
    if begun or record:
        record.append("".join(chars))
        yield record


def _jsonl_items(text: str, bucket: str, key: str, limit: int) -> list[Any]:
    items: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if len(items) >= limit:
            break
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError as err:
            raise StatesFailure(
                ITEM_READER_FAILED,
                f"line {number} of s3://{bucket}/{key} is not a JSON value: {err}",
            ) from err
    return items


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"
