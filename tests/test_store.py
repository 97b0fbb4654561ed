"""The same behaviour on both backends: the embedded store and a real S3 API (moto server)."""

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sconeflow.config import load_settings
from sconeflow.errors import InvalidKeyError, ObjectNotFoundError, StoreError
from sconeflow.store import LocalStore, S3Store, Store, open_store, validate_key
from sconeflow.synthetic import make_cifar_tarball
from test_serving_support import free_port

REPO = Path(__file__).resolve().parents[1]


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


# ------------------------------------------------- failures at the S3 boundary, in words


def _aws_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The process environment without any AWS credentials, profile, region or config
    file, and no instance-metadata lookup (which would go to the network)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SCONEFLOW_"))}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="1",  # a refused connection fails at once instead of retrying
        **extra,
    )
    return env


def _stage_to_s3(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tarball = make_cifar_tarball(tmp_path / "tiny.tar.gz", n_train=200, n_test=100)
    return subprocess.run(
        [sys.executable, "-m", "sconeflow", "--home", str(tmp_path / "home"),
         "--store", "s3://scones", "stage", "--source", str(tarball)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def _one_line_error(proc: subprocess.CompletedProcess[str], start: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "botocore" not in proc.stderr.split(":")[0]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), proc.stderr
    return lines[0]


def test_s3_without_credentials_says_to_set_them(s3_server: str, tmp_path: Path) -> None:
    proc = _stage_to_s3(tmp_path, _aws_env(tmp_path, AWS_ENDPOINT_URL=s3_server))
    line = _one_line_error(proc, "StoreError: cannot ")
    assert "no AWS credentials" in line
    assert "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test" in line


def test_s3_connection_refused_names_the_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = _aws_env(tmp_path, AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="test",
                   AWS_SECRET_ACCESS_KEY="test")  # fmt: skip
    line = _one_line_error(_stage_to_s3(tmp_path, env), "StoreError: cannot ")
    assert f"nothing answers at {url}" in line and "AWS_ENDPOINT_URL" in line


def test_s3_bad_region_is_a_config_error(tmp_path: Path) -> None:
    env = _aws_env(tmp_path, AWS_DEFAULT_REGION="not a region", AWS_ACCESS_KEY_ID="test",
                   AWS_SECRET_ACCESS_KEY="test")  # fmt: skip
    line = _one_line_error(_stage_to_s3(tmp_path, env), "ConfigError: cannot create an S3 ")
    assert "AWS_DEFAULT_REGION" in line and "us-east-1" in line


@pytest.mark.parametrize("region", [None, "eu-west-1"])
def test_s3_works_without_a_region_and_outside_us_east_1(
    s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, region: str | None
) -> None:
    """S3 needs no region (botocore uses us-east-1); elsewhere a new bucket is created
    with the LocationConstraint S3 requires."""
    for key, value in _aws_env(tmp_path, AWS_ACCESS_KEY_ID="test",
                               AWS_SECRET_ACCESS_KEY="test").items():  # fmt: skip
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    for key in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    if region:
        monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    store = S3Store(endpoint_url=s3_server)
    bucket = f"region-{region or 'none'}"
    store.put(bucket, "a/b.txt", b"x")
    assert store.get(bucket, "a/b.txt") == b"x"
    if region:
        location = store.client.get_bucket_location(Bucket=bucket)["LocationConstraint"]
        assert location == region


@pytest.mark.slow
def test_readme_s3_example_works_as_written(dev_tarball: Path, tmp_path: Path) -> None:
    """The README's S3 block, run by bash as a user pastes it: only its port is swapped
    for a free one. It runs in a folder beside a `shared` link, as a clone does, so that
    nothing is written into this checkout."""
    if shutil.which("moto_server") is None:
        pytest.skip("moto_server is not installed (pip install -e '.[dev]')")
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    block = next(b for b in blocks if "--store s3://" in b and "moto_server" in b)
    assert "AWS_ACCESS_KEY_ID=" in block and "AWS_SECRET_ACCESS_KEY=" in block
    assert "moto_server" in block and ":9000" in block
    port = free_port()
    script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + block.replace(
        "9000", str(port)
    )
    clone = tmp_path / "clone"
    clone.mkdir()
    (tmp_path / "shared").symlink_to(dev_tarball.parents[1], target_is_directory=True)
    env = _aws_env(tmp_path)
    del env["AWS_MAX_ATTEMPTS"]  # as a user has it: retries cover the server's start-up
    proc = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Uploaded 1000 images" in proc.stdout and "s3://scones/data/" in proc.stdout


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
