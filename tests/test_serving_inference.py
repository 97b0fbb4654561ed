"""preprocess, predict and both micro-batchers: exact decoding, hostile images, batching."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sconeflow.errors import ModelError
from sconeflow.serving.inference import (
    InvalidImageError,
    LoopBatcher,
    MicroBatcher,
    Predictor,
    decode,
    load_predictor,
    normalize,
    predict,
    predict_batch,
    preprocess,
)
from sconeflow.serving.model import parse_meta
from test_serving_support import META, png_bytes, write_model_dir

META_OBJ = parse_meta(META)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return load_predictor(write_model_dir(tmp_path_factory.mktemp("model") / "m"))


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares width x height pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_preprocess_follows_training_exactly() -> None:
    data = png_bytes(3)
    x = preprocess(data, META_OBJ)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # (H, W, 3) uint8
    mean = np.array(META["normalization"]["mean"], np.float32)
    std = np.array(META["normalization"]["std"], np.float32)
    expected = ((rgb.astype(np.float32) / np.float32(255) - mean) / std).transpose(2, 0, 1)
    np.testing.assert_array_equal(x[0], expected)


def test_batch_normalisation_equals_one_at_a_time() -> None:
    # The endpoint decodes per request and normalises per micro-batch; evaluate goes one
    # image at a time. Both must give the model the same bits.
    images = [png_bytes(i) for i in range(9)]
    batch = normalize(np.stack([decode(b, META_OBJ) for b in images]), META_OBJ)
    singles = np.concatenate([preprocess(b, META_OBJ) for b in images])
    assert batch.flags.c_contiguous and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, singles)


def test_other_modes_and_jpeg_become_rgb() -> None:
    for mode in ("L", "RGBA"):
        assert preprocess(png_bytes(1, mode=mode), META_OBJ).shape == (1, 3, 32, 32)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="JPEG")
    x = preprocess(buf.getvalue(), META_OBJ)
    assert x[0, 0].mean() > x[0, 1].mean()  # red stays in channel 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"hello, not an image", "not a PNG or JPEG"),
        (png_bytes(0)[:120], "truncated or corrupt"),
        (png_bytes(0, size=(64, 64)), "64x64 pixels; this model takes 32x32"),
        (_png_header_only(30000, 30000), "header is invalid"),  # Pillow's bomb guard
        (_png_header_only(20000, 5000), "20000x5000"),  # under Pillow's guard: our size check
        (b"GIF89a" + b"\0" * 40, "not a PNG or JPEG"),  # other formats are not probed
    ],
)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_images_raise_invalid_image_fast(body: bytes, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidImageError, match=message):
        preprocess(body, META_OBJ)
    assert time.perf_counter() - start < 0.5  # nothing was inflated


def test_predict_is_preprocess_then_predict_batch(predictor: Predictor) -> None:
    images = [png_bytes(i) for i in range(5)]
    probs = predict(predictor, images, batch_size=2)
    assert probs.shape == (5, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    single = predict_batch(predictor, preprocess(images[4], predictor.meta))
    np.testing.assert_allclose(probs[4], single[0], rtol=1e-6)
    assert predict(predictor, []).shape == (0, 2)
    with pytest.raises(ModelError, match="float32"):
        predictor.predict_batch(np.zeros((1, 3, 16, 16), np.float32))


def test_model_disagreeing_with_its_metadata_fails_at_load(tmp_path: Path) -> None:
    folder = write_model_dir(tmp_path / "m", {**META, "classes": ["a", "b", "c"]})
    with pytest.raises(ModelError, match="3 classes"):
        load_predictor(folder)
    (folder / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_predictor(folder)


def test_batcher_runs_a_lone_request_at_once_and_batches_under_load(
    predictor: Predictor,
) -> None:
    sizes: list[int] = []
    results: dict[int, np.ndarray] = {}
    done = threading.Event()
    total = 200

    def deliver(tickets: list[int], result: np.ndarray | Exception, seconds: float) -> None:
        assert not isinstance(result, Exception)
        sizes.append(len(tickets))
        for i, t in enumerate(tickets):
            results[t] = result[i]
        if len(results) == total:
            done.set()

    batcher = MicroBatcher(predictor, deliver, max_batch=16)
    pixels = decode(png_bytes(7), predictor.meta)
    x = preprocess(png_bytes(7), predictor.meta)
    # A lone request: no timer to wait for.
    start = time.perf_counter()
    batcher.submit(pixels, -1)
    while -1 not in results:
        time.sleep(0.0001)
    assert time.perf_counter() - start < 0.1
    assert sizes == [1]
    # A burst: later requests queue while a batch runs and are taken together.
    results.clear()
    for i in range(total):
        batcher.submit(pixels, i)
    assert done.wait(30)
    batcher.close()
    assert max(sizes[1:]) > 1 and max(sizes) <= 16
    assert sorted(results) == list(range(total))
    np.testing.assert_allclose(results[0], predictor.predict_batch(x)[0], rtol=1e-6)


def test_loop_batcher_batches_what_one_loop_pass_parsed_and_yields_between_batches(
    predictor: Predictor,
) -> None:
    events: list[str] = []
    results: dict[int, np.ndarray | Exception] = {}

    def deliver(tickets: list[int], result: np.ndarray | Exception, seconds: float) -> None:
        events.append(f"batch {len(tickets)}")
        for i, t in enumerate(tickets):
            results[t] = result if isinstance(result, Exception) else result[i]

    pixels = decode(png_bytes(7), predictor.meta)
    expected = predictor.predict_batch(preprocess(png_bytes(7), predictor.meta))[0]

    async def scenario() -> None:
        batcher = LoopBatcher(predictor, deliver, asyncio.get_running_loop(), max_batch=16)
        # A lone request runs in the next loop pass: no timer.
        batcher.submit(pixels, -1)
        await asyncio.sleep(0)
        assert events == ["batch 1"]
        # 40 requests parsed in one pass: batches of at most 16, in order, and other
        # callbacks (the loop's I/O) get a turn between two batches.
        events.clear()
        for i in range(40):
            batcher.submit(pixels, i)
        asyncio.get_running_loop().call_soon(events.append, "other work")
        for _ in range(5):
            await asyncio.sleep(0)
        assert events == ["batch 16", "other work", "batch 16", "batch 8"]
        # A batch that fails hands the error to each of its requests.
        events.clear()
        batcher.submit(np.zeros((8, 8, 3), np.uint8), "bad")
        await asyncio.sleep(0)
        assert isinstance(results["bad"], ModelError)
        # close() finishes what is queued, even with no loop pass left.
        batcher.submit(pixels, 99)
        batcher.close()
        assert 99 in results

    asyncio.run(scenario())
    assert sorted(k for k in results if isinstance(k, int)) == [-1, *range(40), 99]
    np.testing.assert_allclose(results[0], expected, rtol=1e-6)  # type: ignore[arg-type]
