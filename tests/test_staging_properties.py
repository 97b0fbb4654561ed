"""Property: whatever the tarball, the classes asked for and what the store held before,
`stage` either succeeds completely or raises a SconeflowError and leaves the store exactly
as it was, byte for byte. Never a traceback, never a partial staging.

Hypothesis builds tarballs from a valid CIFAR-100-shaped one and a few hostile changes
(long, undecodable, non-ASCII, escaping or duplicate file names; links, special files and
escaping member paths; bad pickles; wrong shapes, dtypes and labels; missing members;
truncated gzip), stores holding a previous staging plus objects at generated keys (some of
them where staging needs a folder, some at staged keys), and class lists (valid,
unknown, non-ASCII). Examples are few and small, so the whole property runs in seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sconeflow.errors import InvalidKeyError, SconeflowError
from sconeflow.staging import (
    DATA_PREFIX,
    MANIFEST_KEY,
    build_manifest,
    read_cifar,
    stage_cifar,
    transform,
)
from sconeflow.store import LocalStore, Store
from sconeflow.synthetic import meta_dict, split_dict

BUCKET = "sconeflow"
LABELS = [0, 2, 8, 48]  # apple, baby, bicycle, motorcycle
CLASS_NAMES = ["apple", "baby", "bicycle", "motorcycle", "vélo", "unicorn", "bicycle\udcff"]

file_names = st.one_of(
    st.binary(max_size=300),  # any bytes, mostly not UTF-8
    st.text(max_size=40).map(lambda t: (t + ".png").encode("utf-8")),  # any Unicode
    st.integers(240, 270).map(lambda n: b"a" * n + b".png"),  # around NAME_MAX
    st.sampled_from([b"../x.png", b"/abs.png", b"a/b.png", b".png", b"x.jpg", b"a\x00.png"]),
)
store_keys = st.one_of(
    st.sampled_from(
        [
            "data/train",  # an object where staging needs a folder
            "data/train/apple_s_000000.png",  # an object at a staged key
            "data/train.lst/x",  # a folder where staging puts an object
            "data/notes.txt",
            "models/job/output/model.tar.gz",
        ]
    ),
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3).map("/".join),
)


@dataclass(frozen=True)
class Drawn:
    """A drawn tarball: its bytes (left out of reports) and what was done to it."""

    change: str
    detail: str
    raw: bytes = field(repr=False)


CHANGES = [
    "none", "file name", "duplicate name", "label name", "link", "escape", "bad pickle",
    "evil pickle", "shape", "dtype", "labels", "missing", "truncate", "long member",
]  # fmt: skip


@st.composite
def tarballs(draw: st.DrawFn, changes: list[str]) -> Drawn:
    """A gzip tarball from a valid one with at most one hostile change from `changes`."""
    n_train, n_test = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 3))  # other pixels under the same names: overwrites
    train = split_dict(n_train, [LABELS[i % 4] for i in range(n_train)], seed=seed)
    test = split_dict(n_test, [LABELS[i % 4] for i in range(n_test)], seed=9)
    meta: dict[bytes, Any] = meta_dict()
    members: dict[str, bytes | None] = {}
    extra: list[tarfile.TarInfo] = []
    change = draw(st.sampled_from(changes))
    split = draw(st.sampled_from([train, test]))
    detail = ""
    if change == "file name":
        name = draw(file_names)
        split[b"filenames"][draw(st.integers(0, len(split[b"filenames"]) - 1))] = name
        detail = repr(name)
    elif change == "duplicate name" and len(split[b"filenames"]) > 1:
        split[b"filenames"][1] = split[b"filenames"][0]
    elif change == "label name":
        meta[b"fine_label_names"][8] = draw(file_names)
        detail = repr(meta[b"fine_label_names"][8])
    elif change == "shape":
        split[b"data"] = split[b"data"].reshape(-1, 1024)
    elif change == "dtype":
        split[b"data"] = split[b"data"].astype(np.float32)
    elif change == "labels":
        split[b"fine_labels"] = draw(
            st.sampled_from([[200] * len(split[b"fine_labels"]), [0], [[1, 2]] * 3, ["x"]])
        )
    members["cifar-100-python/meta"] = pickle.dumps(meta, protocol=2)
    members["cifar-100-python/train"] = pickle.dumps(train, protocol=2)
    members["cifar-100-python/test"] = pickle.dumps(test, protocol=2)
    target = draw(st.sampled_from(sorted(members)))
    if change == "bad pickle":
        members[target] = members[target][: draw(st.integers(0, 50))]
    elif change == "evil pickle":
        members[target] = b"cos\nsystem\n(S'true'\ntR."
    elif change == "missing":
        del members[target]
    elif change == "link":
        info = tarfile.TarInfo(draw(st.sampled_from(["cifar-100-python/x", target])))
        info.type = draw(st.sampled_from([tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE]))
        info.linkname = "/etc/passwd"
        extra.append(info)
        if info.name == target:
            del members[target]
    elif change == "escape":
        members[draw(st.sampled_from(["../evil", "/abs/evil", "cifar-100-python/../../x"]))] = b"!"
    elif change == "long member":
        members["cifar-100-python/" + "m" * draw(st.integers(100, 300))] = b"ignored"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            assert data is not None
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    raw = buf.getvalue()
    if change == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    return Drawn(change, detail, raw)


def _snapshot(store: LocalStore) -> dict[str, bytes]:
    tmp = store.root / ".tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    return {k: store.get(BUCKET, k) for k in store.list(BUCKET)}


def _expected_after(
    before: dict[str, bytes], tarball: Path, classes: list[str]
) -> dict[str, bytes]:
    """What a complete staging leaves: everything before, less the images the previous
    manifest staged that this one does not, plus this staging's objects."""
    staged = transform(read_cifar(tarball), classes)
    new = {f.key: f.data for f in staged.files}
    new.update({f"{DATA_PREFIX}{s}.lst": c for s, c in staged.lst.items()})
    new[MANIFEST_KEY] = build_manifest(staged)
    old = json.loads(before[MANIFEST_KEY])["files"] if MANIFEST_KEY in before else []
    stale = {f["key"] for f in old} - set(new)
    return {**{k: v for k, v in before.items() if k not in stale}, **new}


PROPERTY = settings(
    deadline=None,  # no timing in tests: the machine is shared
    database=None,
    derandomize=True,  # the same examples on every run, so CI is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
stores = {
    "previous": st.booleans(),
    "extra_keys": st.lists(store_keys, max_size=3),
    "classes": st.lists(st.sampled_from(CLASS_NAMES), min_size=1, max_size=3) | st.just(["all"]),
}


@pytest.mark.parametrize("change", CHANGES)
@settings(PROPERTY, max_examples=5)
@given(data=st.data(), **stores)
def test_any_hostile_tarball_stages_completely_or_leaves_the_store_byte_for_byte(
    change: str, data: st.DataObject, previous: bool, extra_keys: list[str], classes: list[str]
) -> None:
    _check_all_or_nothing(data.draw(tarballs([change])), previous, extra_keys, classes)


@settings(PROPERTY, max_examples=40)
@given(tarball=tarballs(["file name", "label name", "none"]), **stores)
def test_any_file_name_and_store_key_stage_completely_or_leave_the_store_byte_for_byte(
    tarball: Drawn, previous: bool, extra_keys: list[str], classes: list[str]
) -> None:
    _check_all_or_nothing(tarball, previous, extra_keys, classes)


def _check_all_or_nothing(
    tarball: Drawn, previous: bool, extra_keys: list[str], classes: list[str]
) -> None:
    """The property itself: stage raises a SconeflowError and changes nothing, or it leaves
    exactly the complete staging. Anything else (another exception) fails the test."""
    raw, change = tarball.raw, tarball.change
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = LocalStore(folder / "store")
        if previous:
            good = folder / "previous.tar.gz"
            good.write_bytes(_valid_tarball())
            stage_cifar(store, BUCKET, good, ["apple", "baby"])
        for key in extra_keys:
            _try_put(store, key)
        before = _snapshot(store)
        path = folder / "drawn.tar.gz"
        path.write_bytes(raw)
        try:
            result = stage_cifar(store, BUCKET, path, classes)
        except SconeflowError as err:
            event(f"{change}: {type(err).__name__}")
            assert _snapshot(store) == before
            return
        event(f"{change}: staged")
        assert _snapshot(store) == _expected_after(before, path, classes)
        assert result.classes


def _try_put(store: Store, key: str) -> None:
    # A key no store takes, or one that clashes with an earlier drawn key, is left out.
    with contextlib.suppress(InvalidKeyError, SconeflowError):
        store.put(BUCKET, key, b"placed by hand: " + key.encode("utf-8", "replace"))


_VALID: list[bytes] = []


def _valid_tarball() -> bytes:
    if not _VALID:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, obj in {
                "cifar-100-python/meta": meta_dict(),
                "cifar-100-python/train": split_dict(6, [LABELS[i % 4] for i in range(6)], seed=5),
                "cifar-100-python/test": split_dict(3, [LABELS[i % 4] for i in range(3)], seed=6),
            }.items():
                data = pickle.dumps(obj, protocol=2)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        _VALID.append(buf.getvalue())
    return _VALID[0]
