"""Data capture: the exact Model Monitor line, key layout, sampling, rotation, never failing,
a byte budget, oversized inputs, and records that outlive a killed writer."""

from __future__ import annotations

import base64
import calendar
import io
import json
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from sconeflow.config import Settings
from sconeflow.errors import ConfigError, StoreError
from sconeflow.serving.capture import (
    MAX_INPUT_BYTES,
    CaptureWriter,
    capture_config,
    format_record,
    parse_capture_config,
)
from sconeflow.serving.spool import FLUSHING, HEAD, TAIL, make_rings
from sconeflow.store import LocalStore, open_store
from test_serving_support import png_bytes

KEY_RE = re.compile(
    r"^data_capture/ep/AllTraffic/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-"
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.jsonl$"
)
WHEN = calendar.timegm((2025, 8, 22, 4, 7, 39)) + 0.25


def test_record_matches_the_aws_example_byte_for_byte() -> None:
    config = capture_config(100, "InputAndOutput", "sconeflow")
    line = format_record(
        config, WHEN, "image/png", b"\x89PNG\r\n\x1a\n", "application/json",
        b"[1.8984535472554853e-06, 0.9999980926513672]",
        event_id="3075fb09-1032-45e4-86dd-8ab7485aef1b",
    )  # fmt: skip
    assert line == (
        '{"captureData":{"endpointInput":{"observedContentType":"image/png","mode":"INPUT",'
        '"data":"iVBORw0KGgo=","encoding":"BASE64"},"endpointOutput":{"observedContentType":'
        '"application/json","mode":"OUTPUT","data":"[1.8984535472554853e-06, '
        '0.9999980926513672]","encoding":"JSON"}},"eventMetadata":{"eventId":'
        '"3075fb09-1032-45e4-86dd-8ab7485aef1b","inferenceTime":"2025-08-22T04:07:39Z"},'
        '"eventVersion":"0"}'
    )


def test_options_encodings_and_optional_metadata() -> None:
    only_out = capture_config(100, "Output", "b-1")
    rec = json.loads(
        format_record(
            only_out,
            WHEN,
            "image/png",
            b"x",
            "text/csv",
            b"1,2",
            inference_id="id-7",
            custom_attributes="k=v",
        )
    )
    assert list(rec["captureData"]) == ["endpointOutput"]
    assert rec["captureData"]["endpointOutput"]["encoding"] == "CSV"
    assert list(rec["eventMetadata"]) == [
        "eventId",
        "inferenceTime",
        "inferenceId",
        "customAttributes",
    ]
    only_in = capture_config(100, "Input", "b-1")
    rec = json.loads(format_record(only_in, WHEN, "image/png", b"x", "application/json", b"[]"))
    assert list(rec["captureData"]) == ["endpointInput"]


def test_config_round_trips_aws_shape_and_names_bad_keys() -> None:
    config = capture_config(20, "InputAndOutput", "sconeflow")
    aws = config.to_aws()
    assert aws["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert aws["DestinationS3Uri"] == "s3://sconeflow/data_capture"
    assert parse_capture_config(aws) == config
    assert config.bucket_and_prefix == ("sconeflow", "data_capture")
    for bad, key in [
        ({"InitialSamplingPercentage": 101}, "InitialSamplingPercentage"),
        ({"DestinationS3Uri": "/tmp/x"}, "DestinationS3Uri"),
        ({"CaptureOptions": [{"CaptureMode": "Both"}]}, "CaptureOptions"),
        ({"EnableCapture": "yes"}, "EnableCapture"),
    ]:
        with pytest.raises(ConfigError, match=key):
            parse_capture_config({**aws, **bad})
    with pytest.raises(ConfigError, match="InputAndOutput"):
        capture_config(100, "Everything", "sconeflow")


def _lines(store: LocalStore, bucket: str) -> tuple[list[str], list[str]]:
    keys = store.list(bucket, "data_capture/")
    lines = [ln for k in keys for ln in store.get(bucket, k).decode().splitlines()]
    return keys, lines


def test_writer_rotates_groups_by_hour_and_flushes_on_close(settings: Settings) -> None:
    store = open_store(settings)
    assert isinstance(store, LocalStore)
    config = capture_config(100, "InputAndOutput", settings.bucket)
    writer = CaptureWriter(config, store, "ep", flush_records=10, flush_seconds=60)
    for i in range(25):
        writer.record(
            "image/png", bytes([i]), "application/json", b"[0.5, 0.5]", inference_id=f"id-{i}"
        )
    writer.close()
    keys, lines = _lines(store, settings.bucket)
    assert len(lines) == 25 and writer.written == 25
    assert len(keys) >= 3  # 10 + 10 + 5: a new object per flush
    assert all(KEY_RE.match(k) for k in keys), keys
    ids = sorted(int(json.loads(ln)["eventMetadata"]["inferenceId"][3:]) for ln in lines)
    assert ids == list(range(25))


def test_writer_flushes_on_its_timer(settings: Settings) -> None:
    store = open_store(settings)
    assert isinstance(store, LocalStore)
    writer = CaptureWriter(
        capture_config(100, "Input", settings.bucket),
        store,
        "ep",
        flush_records=1000,
        flush_seconds=0.1,
    )
    writer.record("image/png", b"x", "application/json", b"[]")
    deadline = time.monotonic() + 5
    while not _lines(store, settings.bucket)[1] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_lines(store, settings.bucket)[1]) == 1
    writer.close()


def test_sampling_percentage_is_honoured(settings: Settings) -> None:
    store = open_store(settings)
    assert isinstance(store, LocalStore)
    writer = CaptureWriter(
        capture_config(20, "InputAndOutput", settings.bucket), store, "ep", rng=random.Random(5)
    )
    for _ in range(2000):
        writer.record("image/png", b"x", "application/json", b"[]")
    writer.close()
    n = len(_lines(store, settings.bucket)[1])
    assert 400 - 3.29 * (2000 * 0.2 * 0.8) ** 0.5 <= n <= 400 + 3.29 * (2000 * 0.2 * 0.8) ** 0.5
    off = CaptureWriter(capture_config(0, "InputAndOutput", settings.bucket), store, "off")
    off.record("image/png", b"x", "application/json", b"[]")
    off.close()
    assert store.list(settings.bucket, "data_capture/off/") == []


class _BrokenStore(LocalStore):
    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None:
        raise StoreError("disk on fire")


def test_a_failing_store_never_reaches_the_caller(tmp_path: Path) -> None:
    writer = CaptureWriter(
        capture_config(100, "InputAndOutput", "sconeflow"),
        _BrokenStore(tmp_path),
        "ep",
        flush_records=1,
        retry_delays=(0.0,),  # each batch tried twice
    )
    for _ in range(3):
        writer.record("image/png", b"x", "application/json", b"[]")  # must not raise
    writer.record("image/png", None, "application/json", b"[]")  # type: ignore[arg-type]
    writer.close()
    # Three records the store refused (each tried twice), one that could not be packed.
    assert (writer.written, writer.failed, writer.dropped) == (0, 3, 1)
    assert writer.ring.used == 0  # their room was given back


class _GatedStore(LocalStore):
    """A LocalStore whose writes wait until `gate` is set: a slow S3, a stalled disk."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None:
        self.entered.set()
        assert self.gate.wait(30)
        super().put(bucket, key, data)


def test_records_beyond_the_byte_budget_are_dropped_and_counted(tmp_path: Path) -> None:
    store = _GatedStore(tmp_path)
    writer = CaptureWriter(
        capture_config(100, "InputAndOutput", "sconeflow"), store, "ep",
        flush_records=1, buffer_bytes=64 << 10,
    )  # fmt: skip
    body = bytes(4000)
    writer.record("image/png", body, "application/json", b"[]", inference_id="id-0")
    assert store.entered.wait(10)  # the writer is stuck in the store with record 0
    # The request path keeps going while the store is stuck: nothing waits for room.
    for i in range(1, 40):
        writer.record("image/png", body, "application/json", b"[]", inference_id=f"id-{i}")
    kept = 40 - writer.dropped
    assert 10 <= kept < 20  # 64 KiB of ~4 KiB records, then drops
    assert writer.ring.used <= writer.ring.capacity
    store.gate.set()
    writer.close()
    _, lines = _lines(store, "sconeflow")
    ids = [json.loads(ln)["eventMetadata"]["inferenceId"] for ln in lines]
    assert sorted(ids, key=lambda i: int(i[3:])) == [f"id-{i}" for i in range(kept)]
    assert writer.written == kept and writer.failed == 0


def test_an_oversized_input_is_captured_as_the_png_of_its_pixels(settings: Settings) -> None:
    store = open_store(settings)
    assert isinstance(store, LocalStore)
    writer = CaptureWriter(capture_config(100, "Input", settings.bucket), store, "ep")
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", pnginfo=_padding(100_000))
    padded = buf.getvalue()
    assert len(padded) > MAX_INPUT_BYTES
    small = png_bytes(1)
    writer.record("image/png", padded, "application/json", b"[]", pixels=pixels)
    writer.record("image/png", small, "application/json", b"[]", pixels=np.zeros((32, 32, 3)))
    writer.close()
    lines = _lines(store, "sconeflow")[1]
    big, as_sent = (json.loads(ln)["captureData"]["endpointInput"] for ln in lines)  # in order
    assert base64.b64decode(as_sent["data"]) == small  # under the cap: the bytes as sent
    reencoded = base64.b64decode(big["data"])
    assert len(reencoded) < 10_000 and big["observedContentType"] == "image/png"
    assert (np.asarray(Image.open(io.BytesIO(reencoded))) == pixels).all()  # the same pixels


def _padding(size: int) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * size)
    return info


def test_a_replacement_writes_what_a_killed_writer_left_exactly_once(tmp_path: Path) -> None:
    """kill -9 of a worker between storing a batch and freeing its room in the ring: the
    next writer on that ring (a replacement worker) writes the batch again under the same
    keys, and the rest after it, so every record is stored once."""
    ring = make_rings(1, 1 << 20)[0]  # shared memory: the forked "worker" writes into it
    config = capture_config(100, "InputAndOutput", "sconeflow")

    answered = threading.Event()  # all 30 in the ring (in the child, after the fork)

    class KilledAfterPut(LocalStore):
        def put(self, bucket: str, key: str, data: bytes | bytearray) -> None:
            super().put(bucket, key, data)
            answered.wait(10)  # the request path may still be queuing the last ones
            os.kill(os.getpid(), signal.SIGKILL)  # stored, not yet freed in the ring

    pid = os.fork()
    if pid == 0:  # the worker that gets killed
        try:
            doomed = CaptureWriter(config, KilledAfterPut(tmp_path), "ep", flush_records=10,
                                   flush_seconds=60, ring=ring)  # fmt: skip
            for i in range(30):
                doomed.record("image/png", b"x", "application/json", b"[]", inference_id=f"id-{i}")
            answered.set()
            time.sleep(30)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    store = LocalStore(tmp_path)
    assert len(_lines(store, "sconeflow")[1]) == 10  # the first batch made it, no more
    assert ring.used > 0 and ring.slots[FLUSHING] > ring.slots[TAIL]
    replacement = CaptureWriter(config, store, "ep", flush_records=10, ring=ring)
    replacement.close()
    keys, lines = _lines(store, "sconeflow")
    ids = sorted(int(json.loads(ln)["eventMetadata"]["inferenceId"][3:]) for ln in lines)
    assert ids == list(range(30)) and len(keys) == 3
    assert ring.used == 0 and replacement.written == 30


def test_close_while_the_store_is_writing_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM lands while a batch is being written: close() waits for it, then writes
    the rest; no record is lost or written twice, no line is partial."""
    store = _GatedStore(tmp_path)
    writer = CaptureWriter(capture_config(100, "InputAndOutput", "sconeflow"), store, "ep",
                           flush_records=10)  # fmt: skip
    for i in range(25):
        writer.record("image/png", b"x", "application/json", b"[]", inference_id=f"id-{i}")
    assert store.entered.wait(10)
    closing = threading.Thread(target=writer.close)
    closing.start()
    writer.record("image/png", b"x", "application/json", b"[]", inference_id="late")  # refused
    store.gate.set()
    closing.join(30)
    assert not closing.is_alive()
    _, lines = _lines(store, "sconeflow")
    ids = sorted(json.loads(ln)["eventMetadata"]["inferenceId"] for ln in lines)
    assert ids == sorted(f"id-{i}" for i in range(25)) and writer.written == 25


def test_the_ring_keeps_records_whole_across_its_end() -> None:
    """Records of every size, so that the length prefix and the record itself each
    straddle the end of the ring at some point; what is read is what was appended, in
    order, and a record that does not fit is refused whole."""
    ring = make_rings(1, 64)[0]  # small: every few records wrap
    rng = random.Random(7)
    pending: list[bytes] = []
    for n in range(400):
        record = bytes([n % 256]) * rng.randint(1, 40)
        used_before = ring.used
        used = ring.append(record)
        if used < 0:  # no room: nothing written; read everything, free it, retry
            assert ring.used == used_before
            head = int(ring.slots[HEAD])
            got = [bytes(r) for r in ring.read(int(ring.slots[TAIL]), head, 1 << 30, 1 << 30)]
            assert got == pending
            ring.slots[TAIL] = head
            pending = []
            used = ring.append(record)
        assert used == ring.used <= ring.capacity
        pending.append(record)
    assert ring.append(bytes(ring.capacity)) == -1  # larger than the ring: never fits
