"""Reading training channels from the store, and the bad input a training job must refuse."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sconeflow.channels import read_channel
from sconeflow.config import Settings
from sconeflow.errors import DataError
from sconeflow.store import LocalStore, open_store


def _png(size: tuple[int, int] = (32, 32), value: int = 7) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def store(settings: Settings) -> LocalStore:
    st = open_store(settings)
    assert isinstance(st, LocalStore)
    st.put(settings.bucket, "data/train.lst", b"0\t0\ta.png\n5\t1\tb.png\n")
    st.put(settings.bucket, "data/train/a.png", _png(value=1))
    st.put(settings.bucket, "data/train/b.png", _png(value=2))
    return st


def test_reads_images_labels_and_checksum(store: LocalStore, settings: Settings) -> None:
    ch = read_channel(store, settings.bucket, "train", num_classes=2)
    assert ch.images.shape == (2, 32, 32, 3) and ch.images.dtype == np.uint8
    assert ch.labels.tolist() == [0, 1] and ch.files == ["a.png", "b.png"]
    assert ch.images[1].max() == 2
    again = read_channel(store, settings.bucket, "train", num_classes=2)
    assert again.sha256 == ch.sha256
    store.put(settings.bucket, "data/train/b.png", _png(value=3))
    assert read_channel(store, settings.bucket, "train", num_classes=2).sha256 != ch.sha256


def test_reads_the_staged_dev_data(staged_home: Settings) -> None:
    ch = read_channel(open_store(staged_home), staged_home.bucket, "train", num_classes=2)
    assert len(ch) == 800 and np.bincount(ch.labels).tolist() == [400, 400]


def test_missing_channel(store: LocalStore, settings: Settings) -> None:
    with pytest.raises(DataError, match="channel 'validation': no manifest.*sconeflow stage"):
        read_channel(store, settings.bucket, "validation", num_classes=2)


def test_manifest_naming_a_missing_image(store: LocalStore, settings: Settings) -> None:
    store.delete(settings.bucket, "data/train/b.png")
    with pytest.raises(DataError, match="names 'b.png' but .* does not exist"):
        read_channel(store, settings.bucket, "train", num_classes=2)


def test_corrupt_image(store: LocalStore, settings: Settings) -> None:
    store.put(settings.bucket, "data/train/b.png", _png()[:40])
    with pytest.raises(DataError, match="b.png is corrupt"):
        read_channel(store, settings.bucket, "train", num_classes=2)


def test_image_of_the_wrong_size(store: LocalStore, settings: Settings) -> None:
    store.put(settings.bucket, "data/train/b.png", _png(size=(64, 48)))
    with pytest.raises(DataError, match="is 64x48, expected 32x32"):
        read_channel(store, settings.bucket, "train", num_classes=2)


def test_labels_outside_num_classes(store: LocalStore, settings: Settings) -> None:
    store.put(settings.bucket, "data/train.lst", b"0\t0\ta.png\n5\t2\tb.png\n")
    with pytest.raises(DataError, match="label 2, outside 0..1 for num_classes=2"):
        read_channel(store, settings.bucket, "train", num_classes=2)


def test_malformed_manifest(store: LocalStore, settings: Settings) -> None:
    store.put(settings.bucket, "data/train.lst", b"0 0 a.png\n")
    with pytest.raises(DataError, match="line 1: expected 'index<TAB>label<TAB>path'"):
        read_channel(store, settings.bucket, "train", num_classes=2)
