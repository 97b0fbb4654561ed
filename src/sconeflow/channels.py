"""SageMaker image-classification channels, read from the object store.

A channel is a folder of images plus a `.lst` manifest, as the built-in algorithm takes them
(`train` + `train_lst`, `validation` + `validation_lst`, content type application/x-image).
Staging writes `data/<split>/*.png` and `data/<split>.lst`; this module reads them back
into one compact array, checking everything a training job would otherwise trip over
later: the manifest exists and parses, every image it names exists, decodes, has the
expected shape, and every label is below `num_classes`.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from sconeflow.errors import DataError, ObjectNotFoundError
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.staging import DATA_PREFIX, parse_lst
from sconeflow.store import Store


@dataclass(frozen=True)
class Channel:
    """A decoded channel: images (N, H, W, 3) uint8 RGB, labels (N,), names, checksum."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    sha256: str  # of the .lst and every image, in order: identifies the training data

    def __len__(self) -> int:
        return len(self.labels)


def channel_keys(split: str) -> tuple[str, str]:
    """(image prefix, manifest key) of a staged split, e.g. ('data/train/', 'data/train.lst')."""
    return f"{DATA_PREFIX}{split}/", f"{DATA_PREFIX}{split}.lst"


def read_lst(store: Store, bucket: str, split: str) -> tuple[str, list[tuple[int, int, str]]]:
    """The text and the rows of a staged split's `.lst`; DataError when it is missing, not
    UTF-8 or malformed, saying how to stage it."""
    _, lst_key = channel_keys(split)
    try:
        text = store.get(bucket, lst_key).decode("utf-8")
    except ObjectNotFoundError as err:
        raise DataError(
            f"channel {split!r}: no manifest at {store.uri(bucket, lst_key)}; "
            "run `sconeflow stage` first (it writes data/<split>.lst and data/<split>/*.png)"
        ) from err
    except UnicodeDecodeError as err:
        raise DataError(
            f"channel {split!r}: {lst_key} is not UTF-8 text; run `sconeflow stage` again, "
            "which repairs it"
        ) from err
    return text, parse_lst(text, source=lst_key)


def read_channel(
    store: Store,
    bucket: str,
    split: str,
    *,
    num_classes: int,
    image_shape: tuple[int, int, int] = (3, 32, 32),
    progress: ProgressFn = no_progress,
) -> Channel:
    """Read and check one staged split (`train`, `test`, ...) from the store."""
    prefix, lst_key = channel_keys(split)
    manifest, rows = read_lst(store, bucket, split)
    if not rows:
        raise DataError(f"channel {split!r}: {lst_key} lists no images")
    bad = [(i, lab) for i, lab, _ in rows if not 0 <= lab < num_classes]
    if bad:
        index, label = bad[0]
        raise DataError(
            f"channel {split!r}: {lst_key} gives index {index} label {label}, outside "
            f"0..{num_classes - 1} for num_classes={num_classes} ({len(bad)} such rows); "
            "fix the manifest or raise num_classes"
        )
    channels, height, width = image_shape
    digest = hashlib.sha256(manifest.encode())

    def fetch(row: tuple[int, int, str]) -> tuple[bytes, np.ndarray]:
        key = prefix + row[2]
        try:
            data = store.get(bucket, key)
        except ObjectNotFoundError as err:
            raise DataError(
                f"channel {split!r}: {lst_key} names {row[2]!r} but "
                f"{store.uri(bucket, key)} does not exist; stage again"
            ) from err
        return data, decode_image(data, name=key, size=(height, width), channels=channels)

    images = np.empty((len(rows), height, width, 3), dtype=np.uint8)
    # Threads: the S3 backend spends its time waiting on the network, the local one on
    # PNG decoding (which releases the GIL in Pillow).
    with ThreadPoolExecutor(max_workers=8) as pool:
        for n, (data, image) in enumerate(pool.map(fetch, rows)):
            images[n] = image
            digest.update(hashlib.sha256(data).digest())
            if (n + 1) % 100 == 0 or n + 1 == len(rows):
                progress(f"read {split} channel", n + 1, len(rows))
    labels = np.array([lab for _, lab, _ in rows], dtype=np.int64)
    return Channel(split, images, labels, [name for _, _, name in rows], digest.hexdigest())


def decode_image(
    data: bytes, *, name: str, size: tuple[int, int] = (32, 32), channels: int = 3
) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, 3) uint8 RGB; DataError if corrupt or of the wrong size.

    Training refuses wrong-size images instead of resizing them: a staged dataset of mixed
    sizes means the staging went wrong, and silently resizing would hide it.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (size[1], size[0]):
                raise DataError(
                    f"image {name} is {img.size[0]}x{img.size[1]}, expected "
                    f"{size[1]}x{size[0]} (image_shape {channels},{size[0]},{size[1]})"
                )
            rgb = np.asarray(img.convert("RGB"))
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"image {name} is corrupt or not an image: {err}") from err
    return rgb
