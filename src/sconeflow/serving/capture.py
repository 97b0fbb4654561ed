"""Data capture in SageMaker Model Monitor's format (AWS_FORMATS.md section 4).

`CaptureConfig` is AWS's DataCaptureConfig, parsed and validated where it enters.
`CaptureWriter.record` is the hook on the request path: it decides sampling and queues a
tuple, nothing more, and it swallows and logs its own errors, so capture can never delay
or fail a request. A background thread formats the JSON lines, buffers them, and writes
one object per flush (every `flush_records` records or `flush_seconds`, whichever comes
first) under `<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM>-<SS>-<mmm>-<uuid4>.jsonl`,
grouped by the hour of invocation. The store writes objects atomically, so no reader ever
sees a partial line. `close()` (SIGTERM, `endpoint delete`) flushes what is buffered.
"""

from __future__ import annotations

import binascii
import collections
import functools
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sconeflow.errors import ConfigError, InvalidKeyError
from sconeflow.store import Store, validate_bucket, validate_key

log = logging.getLogger(__name__)

DEFAULT_VARIANT = "AllTraffic"
_MODES = {"Input", "Output"}
_MAX_QUEUED = 100_000  # records waiting for the writer; beyond it we drop and log


@dataclass(frozen=True)
class CaptureConfig:
    """AWS DataCaptureConfig. `to_aws()` gives the exact shape SageMaker takes."""

    enabled: bool = False
    sampling_percentage: int = 100
    destination: str = "s3://sconeflow/data_capture"
    modes: tuple[str, ...] = ("Input", "Output")
    csv_types: tuple[str, ...] = ("text/csv",)
    json_types: tuple[str, ...] = ("application/json",)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_aws(self) -> dict[str, Any]:
        return {
            "EnableCapture": self.enabled,
            "InitialSamplingPercentage": self.sampling_percentage,
            "DestinationS3Uri": self.destination,
            "CaptureOptions": [{"CaptureMode": m} for m in self.modes],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": list(self.csv_types),
                "JsonContentTypes": list(self.json_types),
            },
        }

    @property
    def bucket_and_prefix(self) -> tuple[str, str]:
        rest = self.destination[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        return bucket, prefix.strip("/")


def capture_config(
    sampling: int, options: str, bucket: str, destination: str | None = None
) -> CaptureConfig:
    """From CLI-style values: sampling 0-100 (0 disables), options Input|Output|InputAndOutput."""
    modes = {"Input": ("Input",), "Output": ("Output",), "InputAndOutput": ("Input", "Output")}
    if options not in modes:
        raise ConfigError(
            f"capture options: {options!r} is not one of Input, Output, InputAndOutput"
        )
    return parse_capture_config(
        {
            "EnableCapture": sampling > 0,
            "InitialSamplingPercentage": sampling,
            "DestinationS3Uri": destination or f"s3://{bucket}/data_capture",
            "CaptureOptions": [{"CaptureMode": m} for m in modes[options]],
        }
    )


def parse_capture_config(doc: Any) -> CaptureConfig:
    """Validate an AWS DataCaptureConfig dict; errors name the key and show a correct one."""
    example = (
        '{"EnableCapture": true, "InitialSamplingPercentage": 100, "DestinationS3Uri": '
        '"s3://sconeflow/data_capture", "CaptureOptions": [{"CaptureMode": "Input"}, '
        '{"CaptureMode": "Output"}]}'
    )
    if not isinstance(doc, dict):
        raise ConfigError(f"DataCaptureConfig must be an object, e.g. {example}")
    enabled = doc.get("EnableCapture", True)
    pct = doc.get("InitialSamplingPercentage", 20)  # the SageMaker SDK's default
    dest = doc.get("DestinationS3Uri", "")
    options = doc.get("CaptureOptions", [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}])
    header = doc.get("CaptureContentTypeHeader") or {}
    if not isinstance(enabled, bool):
        raise ConfigError(f"DataCaptureConfig.EnableCapture: {enabled!r} is not true/false")
    if not isinstance(pct, int) or isinstance(pct, bool) or not 0 <= pct <= 100:
        raise ConfigError(
            f"DataCaptureConfig.InitialSamplingPercentage: {pct!r} is not an integer 0-100"
        )
    if not isinstance(dest, str) or not dest.startswith("s3://") or len(dest) <= len("s3://"):
        raise ConfigError(
            f"DataCaptureConfig.DestinationS3Uri: {dest!r} is not an s3:// URI, e.g. "
            "s3://sconeflow/data_capture"
        )
    bucket, _, prefix = dest[len("s3://") :].partition("/")
    try:  # captures become objects under it: the store's rules, checked now, not per flush
        validate_bucket(bucket)
        if prefix.strip("/"):
            validate_key(prefix.strip("/"))
    except InvalidKeyError as err:
        raise ConfigError(
            f"DataCaptureConfig.DestinationS3Uri: {dest[:200]!r} cannot hold objects ({err})"
        ) from err
    if (
        not isinstance(options, list)
        or not options
        or not all(isinstance(o, dict) and o.get("CaptureMode") in _MODES for o in options)
    ):
        raise ConfigError(
            f"DataCaptureConfig.CaptureOptions: {options!r}; expected a list of "
            '{"CaptureMode": "Input"} and/or {"CaptureMode": "Output"}'
        )
    modes = tuple(m for m in ("Input", "Output") if {"CaptureMode": m} in options)

    def types(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = header.get(key) if isinstance(header, dict) else None
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"DataCaptureConfig.CaptureContentTypeHeader.{key}: {value!r} is not a list "
                "of content types"
            )
        return tuple(v.lower() for v in value)

    return CaptureConfig(
        enabled=enabled,
        sampling_percentage=pct,
        destination=dest.rstrip("/"),
        modes=modes,
        csv_types=types("CsvContentTypes", ("text/csv",)),
        json_types=types("JsonContentTypes", ("application/json",)),
    )


def format_record(
    config: CaptureConfig,
    when: float,
    input_type: str,
    input_body: bytes,
    output_type: str,
    output_body: bytes,
    inference_id: str | None = None,
    custom_attributes: str | None = None,
    event_id: str | None = None,
) -> str:
    """One capture line (no newline), keys in AWS's order, compact separators.

    Built by concatenation rather than json.dumps of a dict: it runs on the capture thread
    for every sampled request and holds the GIL the serving threads need, so it is kept to
    a few microseconds. Every string that could need escaping goes through json.dumps.
    """
    parts = ['{"captureData":{']
    if "Input" in config.modes:
        parts.append('"endpointInput":')
        parts.append(_payload(config, input_type, input_body, "INPUT"))
    if "Output" in config.modes:
        if len(parts) > 1:
            parts.append(",")
        parts.append('"endpointOutput":')
        parts.append(_payload(config, output_type, output_body, "OUTPUT"))
    parts.append('},"eventMetadata":{"eventId":"')
    parts.append(event_id or str(uuid.uuid4()))
    parts.append('","inferenceTime":"')
    parts.append(_utc_second(int(when)))
    parts.append('"')
    if inference_id is not None:
        parts.append(',"inferenceId":')
        parts.append(_quote(inference_id))
    if custom_attributes is not None:
        parts.append(',"customAttributes":')
        parts.append(_quote(custom_attributes))
    parts.append('},"eventVersion":"0"}')
    return "".join(parts)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=64)
def _payload_head(config: CaptureConfig, content_type: str, mode: str) -> tuple[str, str]:
    """('{"observedContentType":...,"mode":...,"data":', encoding) for a content type."""
    base = content_type.split(";", 1)[0].strip().lower()
    encoding = ("JSON" if base in config.json_types
                else "CSV" if base in config.csv_types else "BASE64")  # fmt: skip
    return (f'{{"observedContentType":{_quote(content_type)},"mode":"{mode}","data":',
            encoding)  # fmt: skip


def _payload(config: CaptureConfig, content_type: str, body: bytes, mode: str) -> str:
    head, encoding = _payload_head(config, content_type, mode)
    if encoding == "BASE64":
        data = '"' + binascii.b2a_base64(body, newline=False).decode("ascii") + '"'
    else:
        data = _quote(body.decode("utf-8", errors="replace"))
    return f'{head}{data},"encoding":"{encoding}"}}'


class CaptureWriter:
    """Sampled, buffered, rotated capture on a background thread (module docstring).

    The request path only appends a tuple to a deque (thread-safe, no lock, no wake-up);
    the thread wakes when `flush_records` are pending or every `flush_seconds`, formats
    the records in small chunks (yielding the GIL between them, so serving threads never
    wait long) and writes one object per hour of invocation.
    """

    def __init__(
        self,
        config: CaptureConfig,
        store: Store,
        endpoint: str,
        variant: str = DEFAULT_VARIANT,
        flush_records: int = 1000,
        flush_seconds: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.bucket, prefix = config.bucket_and_prefix
        self.prefix = f"{prefix}/{endpoint}/{variant}" if prefix else f"{endpoint}/{variant}"
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.written = 0  # records written to the store
        self.dropped = 0  # records lost to a full buffer, a bad record or a failed write
        self._rng = rng or random.Random()
        self._threshold = config.sampling_percentage / 100.0
        self._active = config.enabled and config.sampling_percentage > 0
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
        if self._active:
            self._thread.start()

    def record(
        self,
        input_type: str,
        input_body: bytes,
        output_type: str,
        output_body: bytes,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
    ) -> None:
        """The request-path hook: sample, queue, return. Never raises."""
        try:
            if not self._active or self._closed or self._rng.random() >= self._threshold:
                return
            pending = self._pending
            if len(pending) >= _MAX_QUEUED:
                self.dropped += 1
                return
            pending.append((time.time(), input_type, input_body, output_type, output_body,
                            inference_id, custom_attributes))  # fmt: skip
            if len(pending) == self.flush_records:
                self._wake.set()
        except Exception:
            log.exception("data capture: could not queue a record (the request is unaffected)")

    def close(self, timeout: float = 30.0) -> None:
        """Flush everything queued and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._active:
            self._wake.set()
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closed
            while self._pending:
                self._flush(self._take(self.flush_records))
            if closing:
                return

    def _take(self, limit: int) -> dict[str, list[tuple[float, str]]]:
        """Format up to `limit` pending records, grouped by hour of invocation."""
        by_hour: dict[str, list[tuple[float, str]]] = {}
        pending = self._pending
        for n in range(limit):
            if not pending:
                break
            item = pending.popleft()
            try:
                line = format_record(self.config, *item)
                hour = _utc_hour(int(item[0]))
                by_hour.setdefault(hour, []).append((item[0], line))
            except Exception:
                self.dropped += 1
                log.exception("data capture: could not format a record; dropped")
            if n % 64 == 63:
                time.sleep(0)  # let the serving threads take the GIL
        return by_hour

    def _flush(self, by_hour: dict[str, list[tuple[float, str]]]) -> None:
        for hour, records in by_hour.items():
            first = datetime.fromtimestamp(records[0][0], UTC)
            name = f"{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            key = f"{self.prefix}/{hour}/{name}"
            # Grown in place: joining and encoding the lines into a fresh ~4.5 MB bytes
            # object cost ~4.5 us a record here, mostly page faults on new memory.
            body = bytearray()
            for _, line in records:
                body += line.encode("utf-8")
                body += b"\n"
            try:
                self.store.put(self.bucket, key, body)
                self.written += len(records)
            except Exception:
                self.dropped += len(records)
                log.exception(
                    "data capture: could not write %d records to %s",
                    len(records),
                    self.store.uri(self.bucket, key),
                )


@functools.lru_cache(maxsize=4)
def _utc_hour(second: int) -> str:
    return datetime.fromtimestamp(second - second % 3600, UTC).strftime("%Y/%m/%d/%H")
