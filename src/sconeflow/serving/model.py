"""Read a model artifact without torch: `model.tar.gz` or an unpacked model folder.

The artifact (written by `sconeflow.training`) holds exactly two regular files:
`model.onnx` (input "input", NCHW float32 [batch, 3, 32, 32] with a dynamic batch, already
normalised pixels; output "probabilities": calibrated class probabilities, with the
temperature and flip test-time augmentation inside the graph) and `model.json` (classes in
label order, image_shape, normalization {mean, std} applied to pixel/255, output name,
temperature, plus hyperparameters and metrics that serving ignores).

A tarball is outside data: members are checked before anything is written (no absolute
paths, no `..`, no links or devices, only the two known names, size limits), and they are
extracted by reading each member ourselves rather than with `tarfile.extractall`.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sconeflow.errors import ModelError, UnsafeArchiveError

ONNX_NAME = "model.onnx"
META_NAME = "model.json"
MAX_ONNX_BYTES = 1 << 30  # 1 GiB: far above any CNN we serve, well below a hostile tarball
MAX_META_BYTES = 16 << 20  # 16 MiB of JSON
_LIMITS = {ONNX_NAME: MAX_ONNX_BYTES, META_NAME: MAX_META_BYTES}
MAX_IMAGE_SIDE = 4096  # image_shape sanity bound (pixels per side)


@dataclass(frozen=True)
class ModelMeta:
    """What serving needs from model.json; `raw` keeps the whole document."""

    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]  # per channel, applied to pixel / 255
    std: tuple[float, ...]
    output: str = "probabilities"
    input: str = "input"
    temperature: float = 1.0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_meta(doc: Any, source: str = META_NAME) -> ModelMeta:
    """Validate a model.json document; errors name the key, the value and the fix."""
    if not isinstance(doc, dict):
        raise ModelError(f"{source}: expected a JSON object, got {type(doc).__name__}")

    def bad(key: str, expected: str) -> ModelError:
        return ModelError(f"{source}: {key} is {doc.get(key)!r}; expected {expected}")

    classes = doc.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 1
        or not all(isinstance(c, str) and c for c in classes)
    ):
        raise bad("classes", 'a non-empty list of class names in label order, e.g. ["bicycle"]')
    shape = doc.get("image_shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
        or shape[0] not in (1, 3)
        or not (1 <= shape[1] <= MAX_IMAGE_SIDE and 1 <= shape[2] <= MAX_IMAGE_SIDE)
    ):
        raise bad("image_shape", "[channels (1 or 3), height, width], e.g. [3, 32, 32]")
    norm = doc.get("normalization")
    if not isinstance(norm, dict):
        raise bad("normalization", '{"mean": [r, g, b], "std": [r, g, b]}')
    channels = shape[0]
    vectors: dict[str, tuple[float, ...]] = {}
    for name in ("mean", "std"):
        values = norm.get(name)
        if (
            not isinstance(values, list)
            or len(values) != channels
            or not all(_finite(v) for v in values)
        ):
            raise ModelError(
                f"{source}: normalization.{name} is {values!r}; expected {channels} finite "
                "numbers (one per channel, for pixel/255), e.g. [0.5, 0.5, 0.5]"
            )
        vectors[name] = tuple(float(v) for v in values)
    if any(v <= 0 for v in vectors["std"]):
        raise ModelError(
            f"{source}: normalization.std is {list(vectors['std'])!r}; every value must be > 0"
        )
    output = doc.get("output", "probabilities")
    if output != "probabilities":
        raise bad("output", '"probabilities" (the graph must end in calibrated probabilities)')
    temperature = doc.get("temperature", 1.0)
    if not _finite(temperature) or temperature <= 0:
        raise bad("temperature", "a positive number")
    return ModelMeta(
        classes=tuple(classes),
        image_shape=(shape[0], shape[1], shape[2]),
        mean=vectors["mean"],
        std=vectors["std"],
        output=output,
        temperature=float(temperature),
        raw=doc,
    )


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def read_meta(model_dir: Path) -> ModelMeta:
    """Read and validate `<model_dir>/model.json` (and check model.onnx is there)."""
    model_dir = Path(model_dir)
    meta_path, onnx_path = model_dir / META_NAME, model_dir / ONNX_NAME
    for path in (meta_path, onnx_path):
        if not path.is_file():
            raise ModelError(
                f"{path} is missing; a model folder holds {ONNX_NAME} and {META_NAME} "
                "(as written by `sconeflow train`, or unpacked from model.tar.gz)"
            )
    if meta_path.stat().st_size > MAX_META_BYTES:
        raise ModelError(f"{meta_path} is larger than {MAX_META_BYTES} bytes")
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{meta_path} is not valid JSON: {err}") from err
    return parse_meta(doc, str(meta_path))


def extract_artifact(tar_path: Path, dest: Path) -> Path:
    """Unpack model.tar.gz into `dest` (created) after checking every member; returns dest.

    Refused (UnsafeArchiveError): absolute names, `..`, links, devices, folders other than
    `.`, names other than model.onnx / model.json, duplicates, members over the size limits.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    if not tar_path.is_file():
        raise ModelError(f"{tar_path} does not exist; expected a model.tar.gz file")
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            members = _checked_members(tar, tar_path)
            dest.mkdir(parents=True, exist_ok=True)
            for name, member in members.items():
                src = tar.extractfile(member)
                if src is None:  # regular files always have a stream; defensive
                    raise UnsafeArchiveError(f"{tar_path}: member {name!r} has no data")
                tmp = dest / f".{name}.part"
                with src, open(tmp, "wb") as out:
                    # Copy with our own limit: the header's size could lie about the stream.
                    copied = 0
                    while chunk := src.read(1 << 20):
                        copied += len(chunk)
                        if copied > _LIMITS[name]:
                            raise UnsafeArchiveError(
                                f"{tar_path}: {name} is larger than {_LIMITS[name]} bytes"
                            )
                        out.write(chunk)
                os.replace(tmp, dest / name)
    except (tarfile.TarError, EOFError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"{tar_path} is not a readable tar.gz archive: {reason}") from err
    missing = [n for n in _LIMITS if n not in members]
    if missing:
        raise ModelError(
            f"{tar_path} lacks {', '.join(missing)}; a model.tar.gz holds {ONNX_NAME} and "
            f"{META_NAME} at its top level"
        )
    return dest


def _checked_members(tar: tarfile.TarFile, tar_path: Path) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = member.name
        norm = name[2:] if name.startswith("./") else name
        if name.startswith("/") or ".." in name.split("/") or "\\" in name or "\x00" in name:
            raise UnsafeArchiveError(
                f"{tar_path}: member {name!r} would escape the model folder; expected only "
                f"{ONNX_NAME} and {META_NAME}"
            )
        if member.isdir() and norm in ("", "."):
            continue
        if not member.isfile():
            raise UnsafeArchiveError(
                f"{tar_path}: member {name!r} is not a regular file (link, device or "
                f"folder); expected only {ONNX_NAME} and {META_NAME}"
            )
        if norm not in _LIMITS:
            raise UnsafeArchiveError(
                f"{tar_path}: unexpected member {name!r}; expected only {ONNX_NAME} and {META_NAME}"
            )
        if norm in members:
            raise UnsafeArchiveError(f"{tar_path}: member {norm!r} appears twice")
        if member.size > _LIMITS[norm]:
            raise UnsafeArchiveError(
                f"{tar_path}: {norm} is {member.size} bytes, over the {_LIMITS[norm]} limit"
            )
        members[norm] = member
    return members


def prepare_model_dir(source: Path, workdir: Path) -> Path:
    """A validated model folder for `source`: a folder is used as is, a tarball is unpacked
    into `workdir`. Raises ModelError with the fix when neither fits."""
    source = Path(source)
    try:  # stat raises on some paths, e.g. a name over 255 bytes (ENAMETOOLONG)
        is_dir, is_file = source.is_dir(), source.is_file()
    except OSError as err:
        raise ModelError(
            f"model {str(source)[:200]!r} cannot be read ({err.strerror}); expected a "
            "model.tar.gz file or a folder holding model.onnx and model.json"
        ) from err
    if is_dir:
        read_meta(source)
        return source
    if is_file:
        model_dir = extract_artifact(source, workdir)
        read_meta(model_dir)
        return model_dir
    raise ModelError(
        f"model {str(source)!r} not found; expected a training job name, a model.tar.gz "
        "file or a folder holding model.onnx and model.json"
    )


def pack_artifact(onnx_bytes: bytes, meta: Mapping[str, Any]) -> bytes:
    """model.tar.gz bytes: the two files with fixed owners and times (reproducible bytes).

    The one writer of the artifact: training packs what it trained, `sconeflow evaluate
    --save` repacks it with an updated model.json (the `selective` entry).
    """
    json_bytes = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((ONNX_NAME, onnx_bytes), (META_NAME, json_bytes)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)
