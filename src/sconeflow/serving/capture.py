"""Data capture in SageMaker Model Monitor's format (AWS_FORMATS.md section 4).

`CaptureConfig` is AWS's DataCaptureConfig, parsed and validated where it enters.
`CaptureWriter.record` is the hook on the request path: it decides sampling and packs the
record into the worker's ring (spool.py), nothing more, and it swallows and logs its own
errors, so capture can never delay or fail a request. The ring is the byte budget: a
record that does not fit is dropped and counted (CaptureDroppedRecords), never waited for.
A background thread formats the JSON lines and writes one object per flush (every
`flush_records` records, a quarter of the ring, or `flush_seconds`, whichever comes first)
under `<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<MM>-<SS>-<mmm>-<uuid>.jsonl`, grouped by
the hour of invocation. The store writes objects atomically, so no reader ever sees a
partial line. `close()` (SIGTERM, `endpoint delete`) writes what is buffered; a worker
killed outright leaves its ring to its replacement, which writes it (exactly once: keys
and eventIds derive from the ring position, see `CaptureWriter._write`).

"Acknowledged" for capture: a sampled request whose answer was sent. Its record is in the
ring before the answer goes out, so after any kill of a worker, and any SIGTERM, the store
ends up holding it. What can still lose records, each counted or stated: a full ring
(CaptureDroppedRecords), a store that refuses an object three times (CaptureFailedRecords),
and the whole endpoint killed at once (kill -9 of the master with its workers).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import io
import json
import logging
import random
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
    """Sampled capture into a byte-bounded ring, written by a background thread.

    `record` runs on the request path, before the answer is sent: it samples, packs the
    record into the worker's ring (spool.py) and returns. A record that does not fit the
    ring is dropped and counted, never waited for. The thread wakes when `flush_records`
    records or a quarter of the ring are pending, or every `flush_seconds`, formats a batch
    in small chunks (yielding the GIL between them, so serving threads never wait long)
    and writes one object per hour of invocation. Only then does it release the batch's
    room in the ring, so a record is in the store or in the ring, never in neither.

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
        # One batch at most a quarter of the ring: the batch, its lines and its object
        # are the writer's working memory, next to the ring itself.
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
        """Sampled records refused: the ring was full, or the record could not be packed."""
        return int(self._slots[DROPPED])

    @property
    def failed(self) -> int:
        """Records that could not be formatted, or whose object the store refused."""
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
        """The request-path hook: sample, pack into the ring, return. Never raises."""
        try:
            if not self._active or self._closed or self._rng.random() >= self._threshold:
                return
            flags, shape = 0, (0, 0, 0)
            if pixels is not None and len(input_body) > self.max_input_bytes:
                flags, shape, input_body = _PIXELS, pixels.shape, pixels.tobytes()
            in_type, out_type = input_type.encode(), output_type.encode()
            ident = b"" if inference_id is None else inference_id.encode()
            attrs = b"" if custom_attributes is None else custom_attributes.encode()
            if inference_id is not None:
                flags |= _HAS_ID
            if custom_attributes is not None:
                flags |= _HAS_ATTRS
            n_in, n_out, n_id, n_attrs = len(input_body), len(output_body), len(ident), len(attrs)
            framed = b"".join((
                _FRAMED.pack(_REC.size + len(in_type) + n_in + len(out_type) + n_out + n_id
                             + n_attrs, time.time(), flags, *shape, len(in_type), n_in,
                             len(out_type), n_out, n_id, n_attrs),
                in_type, input_body, out_type, output_body, ident, attrs,
            ))  # fmt: skip
            ring = self.ring
            if not ring.append(framed):
                self._slots[DROPPED] += 1
                if not self._wake.is_set():
                    self._wake.set()
                return
            self._queued += 1
            if self._queued >= self.flush_records or ring.used >= self._flush_bytes:
                self._queued = 0
                if not self._wake.is_set():
                    self._wake.set()
        except Exception:
            self._slots[DROPPED] += 1
            log.exception("data capture: could not queue a record (the request is unaffected)")

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

    def _write(self, start: int, end: int, records: list[bytes]) -> bool:
        """Format and store one batch [start, end) of the ring; False if the store failed.

        Keys and eventIds derive from the ring's id and the batch's position, so writing
        the same batch twice (a retry, or a replacement after a kill) replaces the same
        objects with the same lines: every record is stored exactly once.
        """
        by_hour: dict[str, tuple[float, bytearray]] = {}
        bad = 0
        for n, packed in enumerate(records):
            try:
                when, line = self._format(packed, _derived_uuid(self.ring.ring_id, start, f"e{n}"))
                hour = _utc_hour(int(when))
                if hour not in by_hour:
                    by_hour[hour] = (when, bytearray())
                body = by_hour[hour][1]  # grown in place: fresh 4.5 MB buffers page-fault
                body += line.encode("utf-8")
                body += b"\n"
            except Exception:
                bad += 1
                log.exception("data capture: could not format a record; dropped")
            if n % 64 == 63:
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
        slots[WRITTEN] += len(records) - bad
        slots[FAILED] += bad
        return True

    def _format(self, packed: bytes, event_id: str) -> tuple[float, str]:
        """(invocation time, capture line) of one packed record."""
        when, flags, h, w, c, *sizes = _REC.unpack_from(packed)
        fields, pos = [], _REC.size
        for size in sizes:
            fields.append(packed[pos : pos + size])
            pos += size
        in_type, body, out_type, output, ident, attrs = fields
        input_type = in_type.decode()
        if flags & _PIXELS:
            input_type, body = "image/png", _png(body, h, w, c)
        line = format_record(
            self.config,
            when,
            input_type,
            body,
            out_type.decode(),
            output,
            ident.decode() if flags & _HAS_ID else None,
            attrs.decode() if flags & _HAS_ATTRS else None,
            event_id,
        )
        return when, line


# A packed record: time, flags, pixel shape (H, W, C) when the input is raw pixels, then
# the byte lengths of input type, input, output type, output, inference id, attributes.
_REC = struct.Struct("<dBHHBIIIIII")
_FRAMED = struct.Struct("<I" + _REC.format[1:])  # the same after the ring's LEN prefix
_PIXELS, _HAS_ID, _HAS_ATTRS = 1, 2, 4


def _png(pixels: bytes, height: int, width: int, channels: int) -> bytes:
    """The lossless PNG of decoded pixels (uint8 H x W x C)."""
    from PIL import Image  # the capture thread only; the request path has it loaded already

    mode = {1: "L", 3: "RGB"}[channels]
    buf = io.BytesIO()
    Image.frombytes(mode, (width, height), pixels).save(buf, format="PNG")
    return buf.getvalue()


def _derived_uuid(ring_id: bytes, position: int, tag: str) -> str:
    """A uuid4-shaped id, the same every time for the same (ring, batch position, tag)."""
    digest = hashlib.blake2b(
        ring_id + position.to_bytes(8, "big") + tag.encode(), digest_size=16
    ).digest()
    return str(uuid.UUID(bytes=digest, version=4))


@functools.lru_cache(maxsize=4)
def _utc_hour(second: int) -> str:
    return datetime.fromtimestamp(second - second % 3600, UTC).strftime("%Y/%m/%d/%H")
