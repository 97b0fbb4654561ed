"""The official CIFAR-100 python tarball: where it lives, its checksums, and the classes
sconeflow stages by default.

Kept apart from staging.py (which needs numpy and Pillow) so that the CLI can show these
defaults in `--help` without importing either.
"""

from __future__ import annotations

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
OFFICIAL_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
OFFICIAL_MEMBER_MD5 = {
    "meta": "7973b15100ade9c7d40fb424638fde48",
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
}
DEFAULT_CLASSES = ("bicycle", "motorcycle")
