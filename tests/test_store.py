"""The same behaviour on both backends: the embedded store and a real S3 API (moto server)."""

from pathlib import Path

import pytest

from sconeflow.config import load_settings
from sconeflow.errors import InvalidKeyError, ObjectNotFoundError
from sconeflow.store import LocalStore, S3Store, Store, open_store, validate_key


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    env = request.getfixturevalue("s3_env")
    s = load_settings(env=env, home=tmp_path, store_uri="s3://")
    st = open_store(s)
    assert isinstance(st, S3Store)
    return st


def test_put_get_exists_list_delete(store: Store) -> None:
    store.put("bkt", "data/train/a.png", b"A")
    store.put("bkt", "data/train/b.png", b"B" * 10)
    store.put("bkt", "data/test.lst", b"0\t0\ta.png\n")
    assert store.get("bkt", "data/train/a.png") == b"A"
    assert store.exists("bkt", "data/train/b.png")
    assert not store.exists("bkt", "data/train/c.png")
    assert store.list("bkt", "data/train/") == ["data/train/a.png", "data/train/b.png"]
    assert store.list("bkt", "data/t") == [
        "data/test.lst",
        "data/train/a.png",
        "data/train/b.png",
    ]
    assert store.list("bkt") == sorted(store.list("bkt", "data/"))
    assert store.list("bkt", "nothing/") == []
    store.put("bkt", "data/train/a.png", bytearray(b"overwritten"))  # as capture writes
    assert store.get("bkt", "data/train/a.png") == b"overwritten"
    store.delete("bkt", "data/train/a.png")
    store.delete("bkt", "data/train/a.png")  # deleting a missing object is fine, as in S3
    assert not store.exists("bkt", "data/train/a.png")
    with pytest.raises(ObjectNotFoundError, match="no object"):
        store.get("bkt", "data/train/a.png")


def test_listing_an_unknown_bucket_is_empty(store: Store) -> None:
    assert store.list("never-created") == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../b",
        "a//b",
        "./a",
        "a\x00b",
        "a\nb",
        "a\\b",
        "x" * 1025,
    ],
)
def test_unsafe_keys_are_refused_on_every_operation(store: Store, key: str) -> None:
    for op in (
        lambda: store.put("bkt", key, b"x"),
        lambda: store.get("bkt", key),
        lambda: store.exists("bkt", key),
        lambda: store.delete("bkt", key),
    ):
        with pytest.raises(InvalidKeyError, match="expected"):
            op()


def test_validate_key_accepts_ordinary_keys() -> None:
    assert validate_key("data_capture/ep/AllTraffic/2025/08/22/04/07-39-123-x.jsonl")


def test_local_writes_are_atomic_and_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("bkt", "k/obj", b"1" * 1000)
    # The temporary file lives outside the bucket and is gone after the rename.
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []
    assert store.list("bkt") == ["k/obj"]


def test_a_failed_local_write_leaves_the_old_object_intact(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("bkt", "k/obj", b"old")

    # A write that fails half-way (here: the data is not bytes-like for write_bytes after
    # the temp file is opened) must not replace the object.
    with pytest.raises(TypeError):
        store.put("bkt", "k/obj", object())  # type: ignore[arg-type]
    assert store.get("bkt", "k/obj") == b"old"
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []


def test_delete_prunes_empty_folders(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("bkt", "a/b/c/d.txt", b"x")
    store.delete("bkt", "a/b/c/d.txt")
    assert not (tmp_path / "store" / "bkt" / "a").exists()
