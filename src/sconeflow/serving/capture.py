"""Data capture in SageMaker Model Monitor's format (AWS_FORMATS.md section 4).

`CaptureConfig` is AWS's DataCaptureConfig, parsed and validated where it enters.
`CaptureWriter.record` is the hook on the request path: it decides sampling, formats the
record's JSON line and copies it into the worker's ring (spool.py), nothing more, and it
swallows and logs its own errors, so capture can never fail a request, nor wait. The ring
is the byte budget: a record that does not fit is dropped and counted
(CaptureDroppedRecords), never waited for. A background thread writes one object per
flush (every `flush_records` records, a quarter of the ring, or `flush_seconds`,
whichever comes first) under
`<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM>-<SS>-<mmm>-<uuid>.jsonl`, grouped by the
hour of invocation. The store writes objects atomically, so no reader ever sees a partial
line. `close()` (SIGTERM, `endpoint delete`) writes what is buffered; a worker killed
outright leaves its ring to its replacement, which writes it (exactly once: the lines are
in the ring as stored, and the keys derive from the ring position, see
`CaptureWriter._write`).

"Acknowledged" for capture: a sampled request whose answer was sent. Its record is in the
ring before the answer goes out, so after any kill of a worker, and any SIGTERM, the store
ends up holding it. What can still lose records, each counted or stated: a full ring
(CaptureDroppedRecords), a store that refuses an object three times (CaptureFailedRecords),
and the whole endpoint killed at once (kill -9 of the master with its workers).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import random
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

import pybase64

from sconeflow.errors import ConfigError, InvalidKeyError
from sconeflow.serving.spool import (
    DROPPED,
    FAILED,
    FLUSHING,
    HEAD,
    TAIL,
    WRITTEN,
    Ring,
    make_rings,
)
from sconeflow.store import Store, validate_bucket, validate_key

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

DEFAULT_VARIANT = "AllTraffic"
_MODES = {"Input", "Output"}
# The largest input captured as sent. A bigger (valid) image is captured as the PNG of its
# pixels: a 32x32 PNG is ~3 KB, JPEG camera metadata stays under 64 KiB, so what a body
# carries beyond this is ancillary data the model never sees.
MAX_INPUT_BYTES = 64 << 10


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
    """One capture line (no newline), keys in AWS's order, compact separators."""
    parts: list[bytes] = []
    _line_format(config).add_line(
        parts,
        when,
        input_type,
        input_body,
        output_type,
        output_body,
        inference_id,
        custom_attributes,
        event_id or str(uuid.uuid4()),
    )
    return b"".join(parts).decode()


class _LineFormat:
    """Capture lines for one config, as the parts of one bytes join, most of them constant.

    Not json.dumps of a dict: this runs for every sampled request, so a line costs the
    base64 of its body (pybase64: 0.3 µs for 3 KB) and about a microsecond more. Every
    string that could need escaping goes through json's own string encoder; the rest
    (keys, modes, encodings, the observed content types) is made once.
    """

    def __init__(self, config: CaptureConfig) -> None:
        self.config = config
        self._input = "Input" in config.modes
        self._output = "Output" in config.modes
        # (content type, mode) -> (bytes up to the data, bytes after it, base64 or text)
        self._payload_parts: dict[tuple[str, str], tuple[bytes, bytes, bool]] = {}

    def add_line(
        self,
        parts: list[bytes],
        when: float,
        input_type: str,
        input_body: bytes,
        output_type: str,
        output_body: bytes,
        inference_id: str | None,
        custom_attributes: str | None,
        event_id: str,
    ) -> None:
        """Append the parts of one line (no newline) to `parts`."""
        parts.append(b'{"captureData":{')
        if self._input:
            self._add_payload(parts, input_type, input_body, "INPUT")
        if self._output:
            self._add_payload(parts, output_type, output_body, "OUTPUT")
        parts.append(b'},"eventMetadata":{"eventId":"')
        parts.append(event_id.encode())
        parts.append(b'","inferenceTime":"')
        parts.append(_utc_second(int(when)))
        parts.append(b'"')
        if inference_id is not None:
            parts.append(b',"inferenceId":')
            parts.append(_quote(inference_id))
        if custom_attributes is not None:
            parts.append(b',"customAttributes":')
            parts.append(_quote(custom_attributes))
        parts.append(b'},"eventVersion":"0"}')

    def _add_payload(self, parts: list[bytes], content_type: str, body: bytes, mode: str) -> None:
        known = self._payload_parts.get((content_type, mode))
        if known is None:
            if len(self._payload_parts) >= 64:  # content types come from clients: bounded
                self._payload_parts.clear()
            known = self._payload_parts[content_type, mode] = self._constant_parts(
                content_type, mode
            )
        head, tail, base64 = known
        parts.append(head)
        if base64:
            parts.append(pybase64.b64encode(body))
        else:
            parts.append(_quote(body.decode("utf-8", errors="replace")))
        parts.append(tail)

    def _constant_parts(self, content_type: str, mode: str) -> tuple[bytes, bytes, bool]:
        """The bytes before and after one payload's data (its quotes too, for BASE64)."""
        base = content_type.split(";", 1)[0].strip().lower()
        encoding = ("JSON" if base in self.config.json_types
                    else "CSV" if base in self.config.csv_types else "BASE64")  # fmt: skip
        key = '"endpointInput"' if mode == "INPUT" else '"endpointOutput"'
        if mode == "OUTPUT" and self._input:
            key = "," + key
        quote = '"' if encoding == "BASE64" else ""
        head = (f'{key}:{{"observedContentType":{_quote(content_type).decode()},'
                f'"mode":"{mode}","data":{quote}')  # fmt: skip
        return head.encode(), f'{quote},"encoding":"{encoding}"}}'.encode(), bool(quote)


@functools.lru_cache(maxsize=8)
def _line_format(config: CaptureConfig) -> _LineFormat:
    return _LineFormat(config)


def _quote(text: str) -> bytes:
    """`text` as a JSON string in UTF-8: json.dumps(text, ensure_ascii=False) without the
    encoder object that json.dumps builds for each call with a non-default option."""
    return encode_basestring(text).encode()


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> bytes:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


class CaptureWriter:
    """Sampled capture into a byte-bounded ring, written by a background thread.

    `record` runs on the request path, before the answer is sent: it samples, formats the
    record's capture line and copies it into the worker's ring (spool.py). A record that
    does not fit is dropped and counted, never waited for. The thread wakes when
    `flush_records` records or a quarter of the ring are pending, or every
    `flush_seconds`, and writes the lines of one batch as one object per hour of
    invocation. Only then does it release the batch's room in the ring, so a record is in
    the store or in the ring, never in neither.

    Why the line is made on the request path rather than by the thread: the worker's
    CPU is what bounds its throughput, and a line made once, straight from the request's
    objects, costs about half of packing the fields, copying them out again and
    formatting them later (docs/serving.md has the figures). It adds the line's few µs
    to the answer's latency (and ~0.1 ms to a body re-encoded as PNG, whose own decode
    took 14-21 ms). What could be slow stays off it: the store.

    An input body over `max_input_bytes` is captured as the PNG of its decoded pixels (the
    `pixels` argument): only pixels reach the model and the monitor, and a 6 MB body of a
    32x32 image is 6 MB of ancillary chunks. docs/serving.md has the reasoning.
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
        ring: Ring | None = None,
        buffer_bytes: int = 16 << 20,
        max_input_bytes: int = MAX_INPUT_BYTES,
        retry_delays: tuple[float, ...] = (0.1, 0.5),
    ) -> None:
        self.config = config
        self.store = store
        self.bucket, prefix = config.bucket_and_prefix
        self.prefix = f"{prefix}/{endpoint}/{variant}" if prefix else f"{endpoint}/{variant}"
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.max_input_bytes = max_input_bytes
        self.retry_delays = retry_delays
        self.ring = ring if ring is not None else make_rings(1, buffer_bytes)[0]
        self._slots = self.ring.slots
        self._lines = _line_format(config)
        self._event_ids = _EventIds()
        # One batch at most a quarter of the ring: the batch and its object are the
        # writer's working memory, next to the ring itself.
        self._flush_bytes = max(4096, self.ring.capacity // 4)
        self._rng = rng or random.Random()
        self._threshold = config.sampling_percentage / 100.0
        self._active = config.enabled and config.sampling_percentage > 0
        self._queued = 0  # records since the last wake-up (request path only)
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
        if self._active:
            self._thread.start()

    @property
    def written(self) -> int:
        """Records in the store (counted in the shared ring, so across worker restarts)."""
        return int(self._slots[WRITTEN])

    @property
    def dropped(self) -> int:
        """Sampled records refused: the ring was full, or the record could not be made."""
        return int(self._slots[DROPPED])

    @property
    def failed(self) -> int:
        """Records whose object the store refused (three times)."""
        return int(self._slots[FAILED])

    def record(
        self,
        input_type: str,
        input_body: bytes,
        output_type: str,
        output_body: bytes,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
        pixels: np.ndarray | None = None,
    ) -> None:
        """The request-path hook: sample, format, copy into the ring, return. Never raises."""
        try:
            if not self._active or self._closed or self._rng.random() >= self._threshold:
                return
            when = time.time()
            if pixels is not None and len(input_body) > self.max_input_bytes:
                input_type, input_body = "image/png", _png(pixels)
            # A ring record: the invocation time (the writer groups by its hour), then the
            # line and its newline, exactly as they go into the object.
            parts = [_TIME.pack(when)]
            self._lines.add_line(
                parts, when, input_type, input_body, output_type, output_body, inference_id,
                custom_attributes, self._event_ids.next(),
            )  # fmt: skip
            parts.append(b"\n")
            used = self.ring.append(b"".join(parts))
            if used < 0:
                self._slots[DROPPED] += 1
                if not self._wake.is_set():
                    self._wake.set()
                return
            self._queued += 1
            if self._queued >= self.flush_records or used >= self._flush_bytes:
                self._queued = 0
                if not self._wake.is_set():
                    self._wake.set()
        except Exception:
            self._slots[DROPPED] += 1
            log.exception("data capture: could not make a record (the request is unaffected)")

    def close(self, timeout: float = 30.0) -> None:
        """Write everything in the ring and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._active:
            pending = self.ring.used
            if pending:
                log.info("data capture: writing %d buffered bytes before stopping", pending)
            self._wake.set()
            self._thread.join(timeout)

    def _run(self) -> None:
        self._drain()  # first what a killed predecessor left in this ring
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closed
            self._drain()
            if closing:
                return

    def _drain(self) -> None:
        """Write batches until the ring is empty."""
        slots, ring = self._slots, self.ring
        while True:
            tail, flushing = slots[TAIL], slots[FLUSHING]
            if flushing > tail:  # a predecessor died writing this batch: the same batch again
                records = ring.read(tail, flushing, 1 << 62, 1 << 62)
            else:
                records = ring.read(tail, slots[HEAD], self.flush_records, self._flush_bytes)
            if not records:
                return
            end = tail + ring.span(records)
            for delay in (*self.retry_delays, None):
                if self._write(tail, end, records):
                    break
                if delay is not None:
                    time.sleep(delay)
            else:  # the store refused it every time: give the room back, counted as failed
                slots[FAILED] += len(records)
                slots[TAIL], slots[FLUSHING] = end, 0
            del records  # views of the ring's memory: not kept past the room they were in

    def _write(self, start: int, end: int, records: list[memoryview]) -> bool:
        """Store one batch [start, end) of the ring; False if the store failed.

        The lines are in the ring as they will be stored (eventIds included) and the keys
        derive from the ring's id and the batch's position, so writing the same batch
        twice (a retry, or a replacement after a kill) replaces the same objects with the
        same bytes: every record is stored exactly once.
        """
        by_hour: dict[str, tuple[float, bytearray]] = {}
        for n, record in enumerate(records):
            (when,) = _TIME.unpack_from(record)
            hour = _utc_hour(int(when))
            if hour not in by_hour:
                by_hour[hour] = (when, bytearray())
            body = by_hour[hour][1]  # grown in place: fresh 4.5 MB buffers page-fault
            body += record[_TIME.size :]
            if n % 256 == 255:
                time.sleep(0)  # let the serving threads take the GIL
        self._slots[FLUSHING] = end
        for hour, (first, body) in by_hour.items():
            stamp = datetime.fromtimestamp(first, UTC)
            uid = _derived_uuid(self.ring.ring_id, start, f"k{hour}")
            key = (f"{self.prefix}/{hour}/{stamp:%M-%S}-{stamp.microsecond // 1000:03d}"
                   f"-{uid}.jsonl")  # fmt: skip
            try:
                self.store.put(self.bucket, key, body)
            except Exception:
                log.exception(
                    "data capture: could not write %d records to %s",
                    body.count(b"\n"),
                    self.store.uri(self.bucket, key),
                )
                return False
        slots = self._slots
        slots[TAIL], slots[FLUSHING] = end, 0  # the room goes back only once it is stored
        slots[WRITTEN] += len(records)
        return True


_TIME = struct.Struct("<d")  # a ring record's invocation time, before its line


def _png(pixels: np.ndarray) -> bytes:
    """The lossless PNG of decoded pixels (uint8 H x W x C)."""
    from PIL import Image  # the request path has it loaded already (decode)

    height, width, channels = pixels.shape
    buf = io.BytesIO()
    mode = {1: "L", 3: "RGB"}[channels]
    Image.frombytes(mode, (width, height), pixels.tobytes()).save(buf, format="PNG")
    return buf.getvalue()


def _derived_uuid(ring_id: bytes, position: int, tag: str) -> str:
    """A uuid4-shaped id, the same every time for the same (ring, batch position, tag)."""
    digest = hashlib.blake2b(
        ring_id + position.to_bytes(8, "big") + tag.encode(), digest_size=16
    ).digest()
    return str(uuid.UUID(bytes=digest, version=4))


class _EventIds:
    """uuid4-shaped eventIds for one writer: a random uuid4 whose last 48 bits count
    (unique per writer, and each writer, a restarted worker's too, draws its own), at the
    cost of one format per record rather than a uuid4 (~2.5 µs). An id only has to be
    unique: it is stored in the ring with its line, so a batch written again repeats it."""

    def __init__(self) -> None:
        first = str(uuid.uuid4())
        self._prefix = first[:24]  # "xxxxxxxx-xxxx-4xxx-yxxx-"
        self._node = int(first[24:], 16)
        self._count = 0

    def next(self) -> str:
        self._count += 1
        return f"{self._prefix}{(self._node + self._count) & _NODE_MASK:012x}"


_NODE_MASK = (1 << 48) - 1


@functools.lru_cache(maxsize=4)
def _utc_hour(second: int) -> str:
    return datetime.fromtimestamp(second - second % 3600, UTC).strftime("%Y/%m/%d/%H")
