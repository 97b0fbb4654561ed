"""Synthetic traffic for tests and the detection benchmark: image shifts and capture files.

The shifts are pure functions on whole batches, (N, H, W, 3) uint8 -> same, each a
realistic way camera traffic degrades: under-exposure, defocus, sensor noise; and the ones
image statistics miss, because they change what is photographed rather than how: a mirrored
and rotated camera, heavy JPEG compression, a zoomed crop, a greyscale camera. The capture
writer produces files exactly as the endpoint does (AWS_FORMATS.md section 4), so what the
monitor reads in a test is what it reads in production.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from PIL import Image

from sconeflow.monitoring.capture_reader import (
    DEFAULT_VARIANT,
    CaptureRecord,
    capture_key,
    format_capture_line,
)
from sconeflow.store import Store


def darken(images: np.ndarray, factor: float = 0.5) -> np.ndarray:
    """Scale pixel values by `factor` (under-exposure)."""
    return np.clip(images.astype(np.float32) * factor, 0, 255).round().astype(np.uint8)


def blur(images: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Separable Gaussian blur with reflected borders (defocus)."""
    radius = max(1, round(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = images.astype(np.float32)  # (N, H, W, C)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(kernel):
            acc += w * np.take(padded, np.arange(i, i + n), axis=axis)
        out = acc
    return np.clip(out, 0, 255).round().astype(np.uint8)


def add_noise(images: np.ndarray, sigma: float = 12.0, seed: int = 0) -> np.ndarray:
    """Additive Gaussian noise of `sigma` grey levels (sensor noise in low light)."""
    rng = np.random.default_rng(seed)
    noisy = images.astype(np.float32) + rng.normal(0, sigma, images.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def flip_rotate(images: np.ndarray) -> np.ndarray:
    """Mirror left-right, then rotate 90 degrees counter-clockwise (a camera mounted
    sideways and mirrored). Brightness, contrast, noise and sharpness are unchanged."""
    return np.ascontiguousarray(np.rot90(images[:, :, ::-1], k=1, axes=(1, 2)))


def jpeg(images: np.ndarray, quality: int = 10) -> np.ndarray:
    """Decoded pixels of a strong JPEG compression (a client that re-encodes uploads)."""
    out = np.empty_like(images)
    for i, img in enumerate(images):  # a codec round trip has no batch form
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img), mode="RGB").save(buf, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def zoom_crop(images: np.ndarray, keep: float = 0.5) -> np.ndarray:
    """The central `keep` share of each side, scaled back up (nearest neighbour) to the full
    size: a camera zoomed in on the vehicle."""
    _, h, w, _ = images.shape
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = (h - ch) // 2, (w - cw) // 2
    rows = top + (np.arange(h) * ch // h)
    cols = left + (np.arange(w) * cw // w)
    return np.ascontiguousarray(images[:, rows][:, :, cols])


def grayscale(images: np.ndarray) -> np.ndarray:
    """BT.601 luma in all three channels (a monochrome camera)."""
    luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat(np.clip(luma.round(), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def decode_pngs(pngs: Sequence[bytes]) -> np.ndarray:
    """Same-size PNGs -> (N, H, W, 3) uint8."""
    return np.stack([np.asarray(Image.open(io.BytesIO(p)).convert("RGB")) for p in pngs])


def encode_pngs(images: np.ndarray) -> list[bytes]:
    """(N, H, W, 3) uint8 -> PNG bytes each."""
    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img), mode="RGB").save(buf, "PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def replay_capture(
    store: Store,
    bucket: str,
    endpoint: str,
    records: Sequence[CaptureRecord],
    times: Sequence[datetime],
    *,
    per_file: int = 50,
    variant: str = DEFAULT_VARIANT,
) -> list[str]:
    """Write captured `records` again, each at its time in `times` (sorted), keeping their
    images, outputs and ids: a stream replayed onto another clock. Returns the file keys."""
    keys: list[str] = []
    lines: list[str] = []
    file_time: datetime | None = None
    for record, when in sorted(zip(records, times, strict=True), key=lambda rt: rt[1]):
        if file_time is not None and (len(lines) >= per_file or _hour(when) != _hour(file_time)):
            keys.append(_flush(store, bucket, endpoint, variant, file_time, lines))
            lines = []
        if not lines:
            file_time = when
        lines.append(format_capture_line(
            record.image, record.probabilities, when=when, event_id=record.event_id,
            inference_id=record.inference_id, content_type=record.content_type))
    if lines and file_time is not None:
        keys.append(_flush(store, bucket, endpoint, variant, file_time, lines))
    return keys


def _hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def write_capture(
    store: Store,
    bucket: str,
    endpoint: str,
    images: Sequence[bytes],
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    *,
    start: datetime,
    interval: timedelta = timedelta(seconds=1),
    per_file: int = 50,
    inference_ids: Sequence[str | None] | None = None,
    variant: str = DEFAULT_VARIANT,
) -> list[str]:
    """Write one record per image at start, start + interval, ...; returns the file keys.

    Like the endpoint, a file holds consecutive records of one hour (at most per_file).
    """
    keys: list[str] = []
    lines: list[str] = []
    file_time: datetime | None = None
    for i, (img, probs) in enumerate(zip(images, probabilities, strict=True)):
        when = start + i * interval
        if file_time is not None and (
            len(lines) >= per_file or when.replace(minute=0, second=0, microsecond=0)
            != file_time.replace(minute=0, second=0, microsecond=0)
        ):
            keys.append(_flush(store, bucket, endpoint, variant, file_time, lines))
            lines = []
        if not lines:
            file_time = when
        inference_id = inference_ids[i] if inference_ids is not None else None
        lines.append(format_capture_line(img, probs, when=when, inference_id=inference_id))
    if lines and file_time is not None:
        keys.append(_flush(store, bucket, endpoint, variant, file_time, lines))
    return keys


def _flush(store: Store, bucket: str, endpoint: str, variant: str, when: datetime,
           lines: list[str]) -> str:
    key = capture_key(endpoint, when, variant)
    store.put(bucket, key, ("\n".join(lines) + "\n").encode())
    return key
