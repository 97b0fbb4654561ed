"""Synthetic CIFAR-100-format tarballs, for tests and benchmarks that must not download.

The files have the official layout and pickle structure (protocol 2, bytes keys), so
they go through exactly the same staging code as the real tarball. Pixels are random.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# CIFAR-100's fine label names, in label order (from the official `meta` member).
FINE_LABEL_NAMES = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
]


def split_dict(n: int, labels: list[int] | None = None, seed: int = 0) -> dict[bytes, Any]:
    """A train/test member's dict with n random rows (labels cycle over all 100 classes)."""
    rng = np.random.default_rng(seed)
    labels = labels if labels is not None else [i % 100 for i in range(n)]
    return {
        b"batch_label": b"synthetic",
        b"filenames": [
            f"{FINE_LABEL_NAMES[lab]}_s_{i:06d}.png".encode() for i, lab in enumerate(labels)
        ],
        b"fine_labels": labels,
        b"coarse_labels": [0] * n,
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
    }


def meta_dict() -> dict[bytes, Any]:
    return {
        b"fine_label_names": [n.encode() for n in FINE_LABEL_NAMES],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }


def write_tarball(
    path: Path,
    members: Mapping[str, object],
    *,
    raw: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a gzip tarball whose members are pickled objects (or raw bytes)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        items: dict[str, bytes] = {
            name: pickle.dumps(obj, protocol=2) for name, obj in members.items()
        }
        items.update(raw or {})
        for name, data in items.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_cifar_tarball(path: Path, n_train: int = 50_000, n_test: int = 10_000) -> Path:
    """A CIFAR-100-shaped tarball with random pixels, all 100 classes equally often."""
    return write_tarball(
        path,
        {
            "cifar-100-python/meta": meta_dict(),
            "cifar-100-python/train": split_dict(n_train, seed=1),
            "cifar-100-python/test": split_dict(n_test, seed=2),
        },
    )
