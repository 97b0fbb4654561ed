"""Data capture: the exact Model Monitor line, key layout, sampling, rotation, never failing."""

from __future__ import annotations

import calendar
import json
import random
import re
from pathlib import Path

import pytest

from sconeflow.config import Settings
from sconeflow.errors import ConfigError, StoreError
from sconeflow.serving.capture import (
    CaptureWriter,
    capture_config,
    format_record,
    parse_capture_config,
)
from sconeflow.store import LocalStore, open_store

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
    import time

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
    def put(self, bucket: str, key: str, data: bytes) -> None:
        raise StoreError("disk on fire")


def test_a_failing_store_never_reaches_the_caller(tmp_path: Path) -> None:
    writer = CaptureWriter(
        capture_config(100, "InputAndOutput", "sconeflow"),
        _BrokenStore(tmp_path),
        "ep",
        flush_records=1,
    )
    for _ in range(3):
        writer.record("image/png", b"x", "application/json", b"[]")  # must not raise
    writer.record("image/png", None, "application/json", b"[]")  # type: ignore[arg-type]
    writer.close()
    assert writer.written == 0 and writer.dropped == 4
