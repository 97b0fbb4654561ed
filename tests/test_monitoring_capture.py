"""Reading data capture: the exact AWS record format, windows, and bad lines skipped with
file and line reported."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from sconeflow.monitoring.capture_reader import (
    capture_key,
    format_capture_line,
    parse_capture_line,
    read_capture,
)
from sconeflow.monitoring.simulate import encode_pngs, write_capture
from sconeflow.store import LocalStore

T0 = datetime(2025, 8, 22, 4, 7, 39, tzinfo=UTC)


def _png() -> bytes:
    import numpy as np

    return encode_pngs(np.full((1, 32, 32, 3), 120, np.uint8))[0]


def test_line_is_exactly_aws_format() -> None:
    line = format_capture_line(b"\x89PNG", [1.8984535472554853e-06, 0.9999980926513672],
                               when=T0, event_id="3075fb09-1032-45e4-86dd-8ab7485aef1b")
    b64 = base64.b64encode(b"\x89PNG").decode()
    expected = (
        '{"captureData":{"endpointInput":{"observedContentType":"image/png","mode":"INPUT",'
        f'"data":"{b64}","encoding":"BASE64"}},'
        '"endpointOutput":{"observedContentType":"application/json","mode":"OUTPUT",'
        '"data":"[1.8984535472554853e-06, 0.9999980926513672]","encoding":"JSON"}},'
        '"eventMetadata":{"eventId":"3075fb09-1032-45e4-86dd-8ab7485aef1b",'
        '"inferenceTime":"2025-08-22T04:07:39Z"},"eventVersion":"0"}'
    )
    assert line == expected
    rec = parse_capture_line(line)
    assert rec.probabilities == (1.8984535472554853e-06, 0.9999980926513672)
    assert rec.image == b"\x89PNG" and rec.inference_time == T0 and rec.inference_id is None


def test_key_layout() -> None:
    key = capture_key("ep", datetime(2025, 8, 22, 4, 7, 39, 123000, tzinfo=UTC))
    prefix, name = key.rsplit("/", 1)
    assert prefix == "data_capture/ep/AllTraffic/2025/08/22/04"
    assert name.startswith("07-39-123-") and name.endswith(".jsonl") and len(name) == 52


def test_window_filters_on_inference_time(local_store: LocalStore) -> None:
    png = _png()
    # 3 hours of records, one every 20 minutes: 9 records in 3 hour folders.
    write_capture(local_store, "sconeflow", "ep", [png] * 9, [[0.3, 0.7]] * 9,
                  start=T0, interval=timedelta(minutes=20))
    batch = read_capture(local_store, "sconeflow", "ep", since=T0 + timedelta(minutes=30),
                         until=T0 + timedelta(minutes=110))
    assert [r.inference_time for r in batch.records] == [
        T0 + timedelta(minutes=m) for m in (40, 60, 80, 100)]
    assert batch.problems == []
    assert len(read_capture(local_store, "sconeflow", "ep").records) == 9
    assert read_capture(local_store, "sconeflow", "other").records == []


def test_bad_lines_are_skipped_and_reported(local_store: LocalStore) -> None:
    png = _png()
    good = format_capture_line(png, [0.2, 0.8], when=T0)
    doc = json.loads(good)
    unknown_type = json.loads(good)
    unknown_type["captureData"]["endpointInput"]["observedContentType"] = "text/csv"
    wrong_encoding = json.loads(good)
    wrong_encoding["captureData"]["endpointInput"]["encoding"] = "JSON"
    bad_base64 = json.loads(good)
    bad_base64["captureData"]["endpointInput"]["data"] = "%%%not base64%%%"
    not_probs = json.loads(good)
    not_probs["captureData"]["endpointOutput"]["data"] = '{"label": "bicycle"}'
    no_time = json.loads(good)
    del no_time["eventMetadata"]["inferenceTime"]
    lines = [
        good,
        "garbage \x00\x01 not json",
        json.dumps(unknown_type),
        json.dumps(wrong_encoding),
        json.dumps(bad_base64),
        json.dumps(not_probs),
        json.dumps(no_time),
        "[1, 2, 3]",
        "",
        json.dumps(doc),
        good[: len(good) // 2],  # a writer died mid-line: truncated, no newline
    ]
    key = capture_key("ep", T0)
    local_store.put("sconeflow", key, "\n".join(lines).encode())
    local_store.put("sconeflow", capture_key("ep", T0), b"\xff\xfe binary junk\n")
    batch = read_capture(local_store, "sconeflow", "ep")
    assert len(batch.records) == 2
    where = {(p.source, p.line): p.reason for p in batch.problems}
    assert [line for (src, line) in where if src == key] == [2, 3, 4, 5, 6, 7, 8, 11]
    assert "not JSON" in where[(key, 2)]
    assert "text/csv" in where[(key, 3)]
    assert "BASE64" in where[(key, 4)]
    assert "base64" in where[(key, 5)]
    assert "probabilities" in where[(key, 6)]
    assert "inferenceTime" in where[(key, 7)]
    assert where[(key, 11)].startswith("truncated last line")
    assert len(batch.problems) == 9 and batch.files == 2
    first = next(p for p in batch.problems if p.source == key)
    assert str(first).startswith(f"{key}:2: not JSON")


# Where pybase64 and the stdlib part ways: trailing padding the stdlib accepts (`mzII=`),
# and each error the stdlib names in its own words (pybase64 says "Non-base64 digit found").
STDLIB_EDGES = ["mzII=", "QQ==QQ==", "QQ=", "Q", "QQ==\n", "%%%not base64%%%", "é", "", "QQ=="]


@pytest.mark.parametrize("data", STDLIB_EDGES)
def test_image_base64_is_decoded_as_the_stdlib_decodes_it(data: str) -> None:
    doc = json.loads(format_capture_line(b"x", [0.5, 0.5], when=T0))
    doc["captureData"]["endpointInput"]["data"] = data
    try:
        expected = base64.b64decode(data, validate=True)
    except ValueError as err:
        with pytest.raises(ValueError) as info:
            parse_capture_line(json.dumps(doc))
        assert str(info.value) == f"input data is not valid base64 ({err})"
    else:
        assert parse_capture_line(json.dumps(doc)).image == expected


def test_probabilities_must_be_a_distribution() -> None:
    line = format_capture_line(b"x", [0.5, 0.9], when=T0)
    with pytest.raises(ValueError, match="probability vector"):
        parse_capture_line(line)


def test_jsonlines_output_and_inference_id_accepted() -> None:
    doc = json.loads(format_capture_line(b"x", [0.5, 0.5], when=T0, inference_id="exec-1"))
    doc["captureData"]["endpointOutput"]["data"] = '{"prediction": [0.25, 0.75]}'
    rec = parse_capture_line(json.dumps(doc))
    assert rec.probabilities == (0.25, 0.75) and rec.inference_id == "exec-1"


def test_reads_what_the_endpoint_writes() -> None:
    capture = pytest.importorskip("sconeflow.serving.capture")
    config = capture.capture_config(100, "InputAndOutput", "sconeflow")
    png = _png()
    line = capture.format_record(config, T0.timestamp(), "image/png", png, "application/json",
                                 b"[0.25, 0.75]", inference_id="exec-9",
                                 custom_attributes="a=1")
    rec = parse_capture_line(line)
    assert (rec.image, rec.probabilities, rec.inference_time) == (png, (0.25, 0.75), T0)
    assert (rec.inference_id, rec.custom_attributes) == ("exec-9", "a=1")
    # Output-only capture (CaptureOptions Output) has no image: skipped, with the reason.
    out_only = capture.capture_config(100, "Output", "sconeflow")
    with pytest.raises(ValueError, match="endpointInput"):
        parse_capture_line(capture.format_record(out_only, T0.timestamp(), "image/png", png,
                                                 "application/json", b"[0.5, 0.5]"))
