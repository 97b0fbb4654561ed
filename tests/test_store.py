"""The same behaviour on both backends: the embedded store and a real S3 API (moto server)."""

import uuid
from pathlib import Path

import pytest

from sconeflow.config import load_settings
from sconeflow.errors import InvalidKeyError, ObjectNotFoundError, StoreError
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
        "data/" + "x" * 256 + ".png",  # a segment no filesystem can name
        "data/caf\udce9.png",  # an undecodable byte, as os.fsdecode hands it over
    ],
)
def test_unsafe_keys_are_refused_on_every_operation(store: Store, key: str) -> None:
    for op in (
        lambda: store.put("bkt", key, b"x"),
        lambda: store.get("bkt", key),
        lambda: store.exists("bkt", key),
        lambda: store.delete("bkt", key),
        lambda: store.check_writable("bkt", ["data/ok.png", key]),
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


def test_a_segment_of_255_bytes_is_fine_and_the_error_for_256_is_short(store: Store) -> None:
    name = "é" * 127 + "x.png"  # 127 * 2 + 5 = 259 bytes
    with pytest.raises(InvalidKeyError, match=r"segment of 259 bytes .* at most 255") as err:
        store.put("bkt", f"data/{name}", b"x")
    assert len(str(err.value)) < 400  # the key is cut short in the message
    ok = "data/" + "x" * 251 + ".png"
    store.put("bkt", ok, b"x")
    assert store.get("bkt", ok) == b"x"


@pytest.mark.parametrize("bucket", [".tmp", "..", "a", "Upper", "x/y", "a" * 64])
def test_bad_bucket_names_are_refused_and_the_local_temp_folder_is_out_of_reach(
    store: Store, bucket: str
) -> None:
    with pytest.raises(InvalidKeyError, match="bucket name .* is invalid"):
        store.get(bucket, "x.part")
    with pytest.raises(InvalidKeyError, match="bucket name"):
        store.list(bucket)


def test_list_etags_gives_the_md5_of_each_object_on_both_backends(store: Store) -> None:
    import hashlib

    bucket = f"etags-{uuid.uuid4().hex[:12]}"  # the S3 server lives for the whole session
    store.put(bucket, "data/a.png", b"A")
    store.put(bucket, "data/sub/b.png", b"B" * 100)
    store.put(bucket, "other/c", b"C")
    assert store.list_etags(bucket, "data/") == {
        "data/a.png": hashlib.md5(b"A").hexdigest(),
        "data/sub/b.png": hashlib.md5(b"B" * 100).hexdigest(),
    }
    assert store.list_etags("never-made", "data/") == {}


def test_local_check_writable_finds_folder_and_object_conflicts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put("bkt", "data/train", b"an object")
    store.put("bkt", "data/test/x.png", b"x")
    store.check_writable("bkt", ["data/other/y.png", "data/train.lst"])
    with pytest.raises(StoreError, match="the object 'data/train' exists"):
        store.check_writable("bkt", ["data/ok.png", "data/train/a.png"])
    with pytest.raises(StoreError, match="already use that key as a folder"):
        store.check_writable("bkt", ["data/test"])
    with pytest.raises(StoreError, match="the object 'data/train' exists"):
        store.put("bkt", "data/train/a.png", b"x")
    store.delete("bkt", "data/test")  # a folder is not an object: nothing to delete
    store.delete("bkt", "data/train/a.png")  # under an object: holds nothing
    assert store.list("bkt") == ["data/test/x.png", "data/train"]


def test_a_local_path_too_long_for_the_filesystem_is_an_invalid_key(tmp_path: Path) -> None:
    long_key = "/".join(["k" * 250] * 4)  # 1003 bytes: a fine key on its own
    LocalStore(tmp_path / "store").put("bkt", long_key, b"fits")
    deep = LocalStore(tmp_path.joinpath(*["p" * 250] * 13))  # a root of over 3,000 bytes
    with pytest.raises(InvalidKeyError, match="longer than the 4096 bytes a path may have"):
        deep.put("bkt", long_key, b"x")
    with pytest.raises(InvalidKeyError, match="--home"):
        deep.check_writable("bkt", [long_key])
