"""Features of captured inferences: what the model said and what the image looked like.

AWS Model Monitor only watches tabular columns; for an image model it would see the output
probabilities and nothing about the inputs. We add a handful of cheap image statistics, each
sensitive to one common way camera traffic goes wrong:

    brightness  mean luma, 0..1                       exposure, night shots, dark filters
    contrast    std of luma (RMS contrast), 0..1      haze, fog, washed-out images
    saturation  mean (max-min)/max over RGB, 0..1     greyscale or colour-cast cameras
    sharpness   variance of the Laplacian of luma,    blur, defocus, upscaled thumbnails
                grey levels^2 (0..255 scale)
    noise       Immerkaer's fast noise sigma,         sensor noise, low light, heavy JPEG
                grey levels (0..255 scale)
    width, height (pixels), format (PNG/JPEG)         a new client sending other images

and from the output: prob_<class> per class, confidence (top probability), margin (top1 -
top2) and predicted_class. With the deployed model at hand (an `Embedder`), each image's
embedding too (monitoring.embeddings): not a column, a (N, D) matrix tested as a whole.
`workflow_status` (SUCCEEDED/FAILED) is added when the workflow's outcome for a record is
known; it is reported, never drift-tested (it is an outcome, not an input).

Pixels are decoded per image (PIL), then statistics run on whole stacks of same-size images
at once: (N, H, W) arrays, no per-pixel Python.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from sconeflow.errors import MonitoringError
from sconeflow.monitoring.capture_reader import CaptureRecord
from sconeflow.monitoring.embeddings import Embedder, embed

IMAGE_FEATURES = ("brightness", "contrast", "saturation", "sharpness", "noise")
INTEGRAL_FEATURES = ("width", "height")
OUTCOME_FEATURES = ("workflow_status",)  # reported, excluded from constraints and drift
MAX_PIXELS = 4096 * 4096  # refuse decompression bombs; the endpoint takes 6 MB bodies


@dataclass
class FeatureTable:
    """Column-wise features of N records, in capture order.

    numeric: float64 (N,) arrays, NaN where missing (e.g. an undecodable image).
    strings: lists of N values, None where missing.
    integral: names of numeric columns whose values are whole numbers by definition.
    """

    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    strings: dict[str, list[str | None]] = field(default_factory=dict)
    integral: set[str] = field(default_factory=set)
    times: list[str] = field(default_factory=list)  # inferenceTime, ISO Z, for plots
    ids: list[str] = field(default_factory=list)  # eventId
    digests: list[str] = field(default_factory=list)  # sha256 of the input bytes
    classes: list[str] = field(default_factory=list)  # the model's classes, label order
    embeddings: np.ndarray | None = None  # (N, D) float32, NaN rows for refused images
    embedding_model: str = ""  # sha256 of the model.onnx that computed them

    def __len__(self) -> int:
        return len(self.ids)

    def first_occurrences(self) -> np.ndarray:
        """Boolean (N,) mask keeping the first record of each distinct input."""
        if not self.digests:
            return np.ones(len(self), dtype=bool)
        seen: set[str] = set()
        keep = np.zeros(len(self.digests), dtype=bool)
        for i, d in enumerate(self.digests):
            if d not in seen:
                seen.add(d)
                keep[i] = True
        return keep

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.strings]


def class_feature(name: str) -> str:
    """Column name of one class's probability: `prob_<class>`."""
    return f"prob_{name}"


def compute_features(
    records: Sequence[CaptureRecord],
    class_names: Sequence[str],
    *,
    outcomes: Mapping[str, str] | None = None,
    embedder: Embedder | None = None,
) -> FeatureTable:
    """Features of captured records; `outcomes` maps inferenceId or eventId -> status;
    `embedder` adds the model's embedding of each image."""
    if not class_names:
        raise MonitoringError(
            "class_names is empty; pass the model's classes, e.g. ['bicycle', 'motorcycle']"
        )
    table = prediction_features([r.probabilities for r in records], class_names)
    images = image_features([r.image for r in records])
    table.numeric.update(images.numeric)
    table.strings.update(images.strings)
    table.integral |= images.integral
    table.classes = list(class_names)
    table.ids = [r.event_id for r in records]
    table.digests = [hashlib.sha256(r.image).hexdigest() for r in records]
    table.times = [r.inference_time.strftime("%Y-%m-%dT%H:%M:%SZ") for r in records]
    if embedder is not None:
        table.embeddings = embed(embedder, [r.image for r in records])
        table.embedding_model = embedder.digest
    if outcomes:
        table.strings["workflow_status"] = [
            outcomes.get(r.inference_id or "") or outcomes.get(r.event_id) for r in records
        ]
    return table


def prediction_features(
    probabilities: Sequence[Sequence[float]], class_names: Sequence[str]
) -> FeatureTable:
    """prob_<class>, confidence, margin, predicted_class from probability vectors.

    A vector whose length is not len(class_names) (a model with other classes answered)
    leaves that row missing, which the completeness check then reports.
    """
    k, n = len(class_names), len(probabilities)
    probs = np.full((n, k), np.nan)  # (N, K)
    for i, p in enumerate(probabilities):
        if len(p) == k:
            probs[i] = p
    table = FeatureTable(classes=list(class_names))
    for j, name in enumerate(class_names):
        table.numeric[class_feature(name)] = probs[:, j]
    ok = ~np.isnan(probs).any(axis=1)
    ordered = np.sort(np.where(ok[:, None], probs, 0.0), axis=1)  # ascending, (N, K)
    top1 = ordered[:, -1]
    top2 = ordered[:, -2] if k > 1 else np.zeros(n)
    table.numeric["confidence"] = np.where(ok, top1, np.nan)
    table.numeric["margin"] = np.where(ok, top1 - top2, np.nan)
    best = np.argmax(np.where(ok[:, None], probs, 0.0), axis=1) if n else np.zeros(0, int)
    table.strings["predicted_class"] = [
        class_names[int(b)] if good else None for b, good in zip(best, ok, strict=True)
    ]
    return table


def decode_image(data: bytes) -> tuple[np.ndarray, str] | None:
    """Image bytes -> ((H, W, 3) uint8 RGB, format) or None when they are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                return None
            fmt = img.format or "UNKNOWN"
            rgb = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return rgb, fmt


def image_features(images: Sequence[bytes]) -> FeatureTable:
    """Image statistics of encoded images; undecodable ones are missing (NaN / None)."""
    n = len(images)
    table = FeatureTable()
    cols = {name: np.full(n, np.nan) for name in (*IMAGE_FEATURES, *INTEGRAL_FEATURES)}
    formats: list[str | None] = [None] * n
    by_shape: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
    for i, data in enumerate(images):
        decoded = decode_image(data)
        if decoded is None:
            continue
        rgb, formats[i] = decoded
        by_shape.setdefault(rgb.shape, []).append((i, rgb))
    for (h, w, _), group in by_shape.items():
        idx = np.array([i for i, _ in group])
        stats = image_stats(np.stack([rgb for _, rgb in group]))
        for name, values in stats.items():
            cols[name][idx] = values
        cols["width"][idx] = w
        cols["height"][idx] = h
    table.numeric.update(cols)
    table.integral.update(INTEGRAL_FEATURES)
    table.strings["format"] = formats
    return table


def image_stats(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of a stack of same-size images: (N, H, W, 3) uint8 -> name -> (N,)."""
    rgb = batch.astype(np.float32) / 255.0  # (N, H, W, 3), 0..1
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (N, H, W), BT.601
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)  # (N, H, W)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-12), 0.0)
    n, h, w = luma.shape
    out = {
        "brightness": luma.mean(axis=(1, 2)),
        "contrast": luma.std(axis=(1, 2)),
        "saturation": sat.mean(axis=(1, 2)),
    }
    if h < 3 or w < 3:  # no interior pixel for a 3x3 kernel
        out["sharpness"] = np.full(n, np.nan)
        out["noise"] = np.full(n, np.nan)
        return {k: v.astype(np.float64) for k, v in out.items()}
    y = luma * 255.0  # grey levels, the scale blur and noise thresholds are quoted in
    c = y[:, 1:-1, 1:-1]
    up, down, left, right = y[:, :-2, 1:-1], y[:, 2:, 1:-1], y[:, 1:-1, :-2], y[:, 1:-1, 2:]
    lap = up + down + left + right - 4 * c  # 4-neighbour Laplacian, (N, H-2, W-2)
    out["sharpness"] = lap.var(axis=(1, 2))
    # Immerkaer (1996): the kernel [[1,-2,1],[-2,4,-2],[1,-2,1]] is the difference of two
    # Laplacians, blind to edges to first order, so |response| measures noise alone.
    corners = y[:, :-2, :-2] + y[:, :-2, 2:] + y[:, 2:, :-2] + y[:, 2:, 2:]
    resp = corners - 2 * (up + down + left + right) + 4 * c
    scale = math.sqrt(math.pi / 2) / (6.0 * (w - 2) * (h - 2))
    out["noise"] = scale * np.abs(resp).sum(axis=(1, 2))
    return {k: v.astype(np.float64) for k, v in out.items()}
