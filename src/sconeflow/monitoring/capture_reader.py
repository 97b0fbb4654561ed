"""Read Model Monitor data capture (AWS_FORMATS.md section 4) from the store, robustly.

Capture files are written by the endpoint while it serves, so a reader meets files that are
still being written (a truncated last line), lines from other tools, or records of a content
type we do not monitor. None of that may stop a monitoring run: every line that is not a
usable record becomes a `CaptureProblem` (file, line number, reason) and is skipped.

Keys: `data_capture/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM>-<SS>-<mmm>-<uuid4>.jsonl`.
The hour folders let a window read only the files of its hours; records are then filtered on
their own `inferenceTime`, which is what the window means.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pybase64

from sconeflow.errors import MonitoringError
from sconeflow.store import Store

CAPTURE_PREFIX = "data_capture"
DEFAULT_VARIANT = "AllTraffic"
# What the endpoint accepts (AWS_FORMATS.md section 2); anything else is not an image record.
IMAGE_TYPES = ("image/png", "image/jpeg", "application/x-image")
_HOUR_KEY = re.compile(r"/(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+\.jsonl$")


@dataclass(frozen=True)
class CaptureRecord:
    """One captured invocation: the image bytes and the probabilities the endpoint returned."""

    event_id: str
    inference_time: datetime  # UTC, second precision
    content_type: str
    image: bytes
    probabilities: tuple[float, ...]
    inference_id: str | None = None
    custom_attributes: str | None = None
    source: str = ""  # store key of the capture file
    line: int = 0  # 1-based line in that file


@dataclass(frozen=True)
class CaptureProblem:
    """A line (or a whole file, line 0) that could not be used, and why."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


@dataclass
class CaptureBatch:
    """What a read found: usable records (sorted by time), problems, files read."""

    records: list[CaptureRecord] = field(default_factory=list)
    problems: list[CaptureProblem] = field(default_factory=list)
    files: int = 0
    lines: int = 0


def capture_prefix(endpoint: str, variant: str = DEFAULT_VARIANT) -> str:
    return f"{CAPTURE_PREFIX}/{endpoint}/{variant}/"


def parse_time(text: str) -> datetime:
    """ISO-8601 UTC (`2025-08-22T04:07:39Z`, or with an offset) -> aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError(
            f"inferenceTime {text!r} is not ISO-8601 like 2025-08-22T04:07:39Z"
        ) from err
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """Aware or naive-UTC datetime -> `2025-08-22T04:07:39Z` (AWS's capture format)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_capture_line(text: str) -> CaptureRecord:
    """One JSONL line -> CaptureRecord; ValueError names what is wrong with it."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    capture = _obj(doc, "captureData")
    meta = _obj(doc, "eventMetadata")
    inp = _obj(capture, "endpointInput")
    out = _obj(capture, "endpointOutput")
    in_type = _str(inp, "observedContentType").split(";")[0].strip().lower()
    if in_type not in IMAGE_TYPES:
        raise ValueError(
            f"input content type {in_type!r} is not an image ({', '.join(IMAGE_TYPES)})"
        )
    if _str(inp, "encoding") != "BASE64":
        raise ValueError(f"image input must have encoding BASE64, got {inp.get('encoding')!r}")
    try:
        image = _b64decode(_str(inp, "data"))
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"input data is not valid base64 ({err})") from err
    probs = _probabilities(out)
    event_id = _str(meta, "eventId")
    when = parse_time(_str(meta, "inferenceTime"))
    inference_id = meta.get("inferenceId")
    attrs = meta.get("customAttributes")
    return CaptureRecord(
        event_id=event_id,
        inference_time=when,
        content_type=in_type,
        image=image,
        probabilities=probs,
        inference_id=inference_id if isinstance(inference_id, str) else None,
        custom_attributes=attrs if isinstance(attrs, str) else None,
    )


def _probabilities(out: dict[str, Any]) -> tuple[float, ...]:
    encoding = _str(out, "encoding")
    data = _str(out, "data")
    if encoding == "BASE64":
        # Allowed by AWS when the output type is not a JSON type; decode and parse the JSON.
        try:
            data = _b64decode(data).decode("utf-8")
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"output data is not valid base64 JSON ({err})") from err
    elif encoding != "JSON":
        raise ValueError(f"output encoding must be JSON (or BASE64), got {encoding!r}")
    try:
        value = json.loads(data)
    except json.JSONDecodeError as err:
        raise ValueError(f"output data is not JSON ({err.msg})") from err
    if isinstance(value, dict) and "prediction" in value:  # Accept: application/jsonlines
        value = value["prediction"]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"output must be a JSON array of probabilities, got {data[:60]!r}")
    probs = tuple(float(v) for v in value)
    if any(not (-1e-6 <= p <= 1 + 1e-6) for p in probs) or abs(sum(probs) - 1) > 1e-3:
        raise ValueError(f"output {data[:60]!r} is not a probability vector (0..1, sum 1)")
    return probs


def _b64decode(text: str) -> bytes:
    """Strict base64, as `base64.b64decode(text, validate=True)` decodes it, faster: for
    a 3 KB capture image just parsed from its line, pybase64 takes 1.8 us where the stdlib
    takes 12, and `parse_capture_line` 12 us instead of 27 (timeit, 2-core VM). pybase64
    accepts a subset of what the stdlib accepts, with the same bytes (not, for one, the
    extra padding the stdlib lets through: `mzII=`), so what it refuses goes to the
    stdlib, which decodes it or raises the error it always raised."""
    try:
        return pybase64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error is one
        return base64.b64decode(text, validate=True)


def _obj(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"missing object {key!r}")
    return value


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ValueError(f"missing string {key!r}")
    return value


def _hour_of_key(key: str) -> datetime | None:
    m = _HOUR_KEY.search(key)
    if not m:
        return None
    y, mo, d, h = (int(g) for g in m.groups())
    try:
        return datetime(y, mo, d, h, tzinfo=UTC)
    except ValueError:
        return None


def read_capture(
    store: Store,
    bucket: str,
    endpoint: str,
    *,
    variant: str = DEFAULT_VARIANT,
    since: datetime | None = None,
    until: datetime | None = None,
) -> CaptureBatch:
    """Records with since <= inferenceTime < until (either bound optional), sorted by time.

    Files outside the hour folders of the window are not read. Unusable lines and files are
    reported in `problems` and skipped; only a store that cannot be listed raises.
    """
    prefix = capture_prefix(endpoint, variant)
    try:
        keys = store.list(bucket, prefix)
    except Exception as err:  # any backend failure means there is no window to read
        raise MonitoringError(
            f"cannot list capture files under {store.uri(bucket, prefix)}: {err}"
        ) from err
    batch = CaptureBatch()
    lo = since.replace(minute=0, second=0, microsecond=0) if since else None
    for key in keys:
        if not key.endswith(".jsonl"):
            continue
        hour = _hour_of_key(key)
        if hour is None:
            batch.problems.append(CaptureProblem(key, 0, "not under a yyyy/mm/dd/hh folder"))
            continue
        if (lo and hour < lo) or (until and hour >= until):
            continue
        try:
            raw = store.get(bucket, key)
        except Exception as err:  # a file vanishing mid-read is a problem, not a crash
            batch.problems.append(CaptureProblem(key, 0, f"cannot read: {err}"))
            continue
        batch.files += 1
        _read_lines(raw, key, since, until, batch)
    batch.records.sort(key=lambda r: (r.inference_time, r.source, r.line))
    return batch


def _read_lines(
    raw: bytes, key: str, since: datetime | None, until: datetime | None, batch: CaptureBatch
) -> None:
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    truncated = not text.endswith("\n")
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        batch.lines += 1
        try:
            record = parse_capture_line(line)
        except ValueError as err:
            last = n == len(lines) and truncated
            reason = f"truncated last line ({err})" if last else str(err)
            batch.problems.append(CaptureProblem(key, n, reason))
            continue
        if (since and record.inference_time < since) or (until and record.inference_time >= until):
            continue
        batch.records.append(
            CaptureRecord(**{**record.__dict__, "source": key, "line": n})
        )


def format_capture_line(
    image: bytes,
    probabilities: Sequence[float],
    *,
    when: datetime,
    event_id: str | None = None,
    inference_id: str | None = None,
    content_type: str = "image/png",
) -> str:
    """The inverse of `parse_capture_line`, for tests and synthetic traffic: the record
    the endpoint would capture, written by the endpoint's own writer (one format, one
    writer)."""
    from sconeflow.serving.capture import capture_config, format_record

    return format_record(
        capture_config(100, "InputAndOutput", "sconeflow"),
        when.timestamp(),
        content_type,
        image,
        "application/json",
        json.dumps([float(p) for p in probabilities]).encode(),
        inference_id=inference_id,
        event_id=event_id,
    )


def capture_key(endpoint: str, when: datetime, variant: str = DEFAULT_VARIANT) -> str:
    """`data_capture/<endpoint>/<variant>/yyyy/mm/dd/hh/MM-SS-mmm-<uuid4>.jsonl` for `when`."""
    when = when.astimezone(UTC) if when.tzinfo else when
    return (
        f"{capture_prefix(endpoint, variant)}{when:%Y/%m/%d/%H}/"
        f"{when:%M-%S}-{when.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    )

