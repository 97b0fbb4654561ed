"""Staging: the dev tarball end to end, S3 over HTTP, and every kind of bad input."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import pickle
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from sconeflow.cli import main
from sconeflow.config import Settings, load_settings
from sconeflow.errors import DataError, InvalidKeyError, StoreError, UnsafeArchiveError
from sconeflow.staging import (
    download_cifar,
    parse_lst,
    read_cifar,
    stage_cifar,
)
from sconeflow.store import LocalStore, Store, open_store
from sconeflow.synthetic import (
    FINE_LABEL_NAMES,
    make_cifar_tarball,
    meta_dict,
    split_dict,
    write_tarball,
)


def _cifar_members(train: object | None = None) -> dict[str, object]:
    return {
        "cifar-100-python/meta": meta_dict(),
        "cifar-100-python/train": train if train is not None else split_dict(20, seed=1),
        "cifar-100-python/test": split_dict(10, seed=2),
    }


def _assert_no_data(store: Store, bucket: str) -> None:
    assert store.list(bucket, "data/") == []


# ------------------------------------------------------------- the dev tarball


def test_dev_tarball_stages_800_train_200_test_pixel_exact(
    dev_tarball: Path, settings: Settings
) -> None:
    store = open_store(settings)
    result = stage_cifar(store, settings.bucket, dev_tarball)
    assert result.counts == {
        "train": {"bicycle": 400, "motorcycle": 400},
        "test": {"bicycle": 100, "motorcycle": 100},
    }
    assert result.load.uploaded == 1000
    cifar = read_cifar(dev_tarball)
    assert cifar.fine_label_names == list(FINE_LABEL_NAMES)
    for split in ("train", "test"):
        rows = parse_lst(store.get(settings.bucket, f"data/{split}.lst").decode())
        assert len(rows) == (800 if split == "train" else 200)
        src = cifar.splits[split]
        for index, label, name in rows:
            # index = CIFAR row, label = position in --classes (bicycle 0, motorcycle 1)
            assert src.filenames[index] == name
            assert label == {8: 0, 48: 1}[int(src.fine_labels[index])]
            png = store.get(settings.bucket, f"data/{split}/{name}")
            pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            planar = src.images[index]  # (32, 32, 3) view of the original planar row
            assert np.array_equal(pixels, planar)
        # the raw planar layout: R plane then G then B
        index = rows[0][0]
        with tarfile.open(dev_tarball) as tar:
            member = tar.extractfile(f"cifar-100-python/{split}")
            assert member is not None
            raw = pickle.loads(member.read(), encoding="bytes")[b"data"][index]
        png = store.get(settings.bucket, f"data/{split}/{rows[0][2]}")
        decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert np.array_equal(decoded.transpose(2, 0, 1).reshape(-1), raw)
    manifest = json.loads(store.get(settings.bucket, "data/manifest.json"))
    assert len(manifest["files"]) == 1000
    entry = manifest["files"][0]
    assert set(entry) >= {"file", "split", "label", "class", "sha256"}
    assert entry["sha256"] == hashlib.sha256(store.get(settings.bucket, entry["key"])).hexdigest()


def test_second_run_uploads_nothing_and_says_so(
    dev_tarball: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    args = ["--home", home, "stage", "--source", str(dev_tarball)]
    main(args)
    first = capsys.readouterr().out
    assert "Uploaded 1000 images" in first
    main(args)
    second = capsys.readouterr().out
    assert "Nothing to upload" in second
    main([*args, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["uploaded"] == 0 and doc["skipped"] == 1000
    assert doc["counts"]["train"] == {"bicycle": 400, "motorcycle": 400}


def test_restaging_other_classes_removes_only_stale_staged_images(
    tmp_path: Path, settings: Settings
) -> None:
    tarball = write_tarball(tmp_path / "c.tar.gz", _cifar_members())
    store = open_store(settings)
    store.put(settings.bucket, "data/unrelated.txt", b"keep me")
    stage_cifar(store, settings.bucket, tarball, ["apple", "baby"])
    pngs = lambda: {k for k in store.list(settings.bucket, "data/") if k.endswith(".png")}  # noqa: E731
    before = pngs()
    result = stage_cifar(store, settings.bucket, tarball, ["apple"])
    after = pngs()
    assert after < before and result.load.removed == len(before - after)
    assert all("apple" in k for k in after)
    assert store.get(settings.bucket, "data/unrelated.txt") == b"keep me"


def test_any_fine_label_names_work_and_label_is_position(
    tmp_path: Path, settings: Settings
) -> None:
    tarball = write_tarball(tmp_path / "c.tar.gz", _cifar_members())
    store = open_store(settings)
    stage_cifar(store, settings.bucket, tarball, ["baby", "apple"])
    rows = parse_lst(store.get(settings.bucket, "data/train.lst").decode())
    labels = {name.split("_s_")[0]: label for _, label, name in rows}
    assert labels == {"baby": 0, "apple": 1}


# ------------------------------------------------------------- S3 over HTTP


def test_staging_into_s3_over_http(
    dev_tarball: Path, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    import boto3

    s = load_settings(env=s3_env, home=tmp_path, store_uri="s3://staging-test")
    result = stage_cifar(open_store(s), s.bucket, dev_tarball)
    assert result.load.uploaded == 1000
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="staging-test")
        for o in page.get("Contents", [])
    ]
    assert len([k for k in keys if k.startswith("data/train/")]) == 800
    assert len([k for k in keys if k.startswith("data/test/")]) == 200
    assert {"data/train.lst", "data/test.lst", "data/manifest.json"} <= set(keys)
    again = stage_cifar(open_store(s), s.bucket, dev_tarball)
    assert again.load.uploaded == 0


# ------------------------------------------------------------- bad input


def _expect_failure(
    tarball: Path, settings: Settings, error: type[Exception], match: str, **kw: object
) -> None:
    store = open_store(settings)
    with pytest.raises(error, match=match):
        stage_cifar(store, settings.bucket, tarball, **kw)  # type: ignore[arg-type]
    _assert_no_data(store, settings.bucket)


def test_truncated_tarball(tmp_path: Path, settings: Settings) -> None:
    good = make_cifar_tarball(tmp_path / "good.tar.gz", n_train=200, n_test=50)
    bad = tmp_path / "truncated.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect_failure(bad, settings, DataError, "not a complete gzip tar archive")


def test_a_file_that_is_not_gzip_is_named_for_what_it_is(
    tmp_path: Path, settings: Settings
) -> None:
    """A PNG, a text file or an empty file is not called a truncated download."""
    from PIL import Image

    png = tmp_path / "photo.png"
    Image.new("RGB", (32, 32)).save(png)
    expected = (r"photo\.png is a PNG image, not a gzip tar archive; expected the CIFAR-100 "
                r"python tarball cifar-100-python\.tar\.gz \(pass it with --source")
    _expect_failure(png, settings, DataError, expected)
    text = tmp_path / "not.tar.gz"
    text.write_text("hello, I am not a tarball")
    _expect_failure(text, settings, DataError, "is a text file, not a gzip tar archive")
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(b"")
    _expect_failure(empty, settings, DataError, r"is an empty file \(0 bytes\)")
    tar = tmp_path / "plain.tar"
    with tarfile.open(tar, "w") as t:
        t.add(png, arcname="x.png")
    _expect_failure(tar, settings, DataError, "is an uncompressed tar archive")


def test_missing_file(tmp_path: Path, settings: Settings) -> None:
    _expect_failure(tmp_path / "nope.tar.gz", settings, DataError, "no such file")


def test_missing_member(tmp_path: Path, settings: Settings) -> None:
    members = _cifar_members()
    del members["cifar-100-python/test"]
    bad = write_tarball(tmp_path / "m.tar.gz", members)
    _expect_failure(bad, settings, DataError, "lacks member.*cifar-100-python/test")


def test_wrong_array_shape(tmp_path: Path, settings: Settings) -> None:
    train = split_dict(20)
    train[b"data"] = np.zeros((20, 1024), dtype=np.uint8)
    bad = write_tarball(tmp_path / "s.tar.gz", _cifar_members(train))
    _expect_failure(bad, settings, DataError, r"shape \(20, 1024\).*expected uint8 \(N, 3072\)")


def test_labels_out_of_range(tmp_path: Path, settings: Settings) -> None:
    train = split_dict(20)
    train[b"fine_labels"] = [200] * 20
    bad = write_tarball(tmp_path / "l.tar.gz", _cifar_members(train))
    _expect_failure(bad, settings, DataError, "fine_labels must be integers from 0 to 99")


def test_unknown_class_name(tmp_path: Path, settings: Settings) -> None:
    tarball = write_tarball(tmp_path / "c.tar.gz", _cifar_members())
    _expect_failure(
        tarball,
        settings,
        DataError,
        "unknown class name.*'unicorn'",
        classes=["bicycle", "unicorn"],
    )


class _RunsCode:
    """Pickles into a call of os.system: loading it would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_tries_to_run_code_is_refused_and_never_runs(
    tmp_path: Path, settings: Settings
) -> None:
    marker = tmp_path / "pwned"
    train = split_dict(20)
    train[b"batch_label"] = _RunsCode(marker)
    bad = write_tarball(tmp_path / "evil.tar.gz", _cifar_members(train))
    _expect_failure(bad, settings, UnsafeArchiveError, "posix.system|os.system")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../../etc/evil", "/abs/evil", "cifar-100-python/../../x"])
def test_tar_member_path_escaping_the_target(tmp_path: Path, settings: Settings, name: str) -> None:
    bad = write_tarball(tmp_path / "esc.tar.gz", _cifar_members(), raw={name: b"boo"})
    _expect_failure(bad, settings, UnsafeArchiveError, "escapes the archive")
    assert not (tmp_path / "evil").exists()


def test_member_that_is_a_symlink(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "link.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in _cifar_members().items():
            if name.endswith("test"):
                info = tarfile.TarInfo(name)
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                tar.addfile(info)
            else:
                data = pickle.dumps(obj, protocol=2)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    _expect_failure(path, settings, UnsafeArchiveError, "link or special file")


def test_unsafe_file_name_inside_the_pickle_is_an_unsafe_store_key(
    tmp_path: Path, settings: Settings
) -> None:
    train = split_dict(20)
    train[b"filenames"][0] = b"..\x00evil.png"
    bad = write_tarball(tmp_path / "k.tar.gz", _cifar_members(train))
    _expect_failure(bad, settings, InvalidKeyError, "control character")


def test_cli_prints_error_name_and_message_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_text("nope")
    with pytest.raises(SystemExit) as exit_info:
        main(["--home", str(tmp_path / "h"), "stage", "--source", str(bad)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("DataError: ") and "Traceback" not in err


# ------------------------------------------------------------- download


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    requests: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tarball_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    payload = make_cifar_tarball(tmp_path / "served.tar.gz", 100, 20).read_bytes()
    _RangeHandler.payload = payload
    _RangeHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cifar-100-python.tar.gz", payload
    finally:
        server.shutdown()


def test_download_verifies_md5_and_resumes_a_partial_file(
    tmp_path: Path, tarball_server: tuple[str, bytes]
) -> None:
    url, payload = tarball_server
    md5 = hashlib.md5(payload).hexdigest()
    dest = tmp_path / "dl" / "cifar.tar.gz"
    dest.parent.mkdir()
    dest.with_name("cifar.tar.gz.part").write_bytes(payload[:1000])
    assert download_cifar(dest, url=url, md5=md5) == dest
    assert dest.read_bytes() == payload
    assert _RangeHandler.requests == ["bytes=1000-"]
    # complete and verified: reused without a request
    download_cifar(dest, url=url, md5=md5)
    assert len(_RangeHandler.requests) == 1


def test_download_with_wrong_md5_is_deleted_and_refused(
    tmp_path: Path, tarball_server: tuple[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = tarball_server
    home = tmp_path / "home"
    with pytest.raises(SystemExit):
        main(["--home", str(home), "stage", "--url", url, "--md5", "0" * 32])
    err = capsys.readouterr().err
    assert err.startswith("ChecksumError: ") and "expected 00000000" in err
    assert list((home / "downloads").iterdir()) == []
    assert not (home / "store" / "sconeflow" / "data").exists()


def test_download_failure_says_how_to_work_offline(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--source") as err:
        download_cifar(tmp_path / "x.tar.gz", url="http://127.0.0.1:9/nothing", md5="0" * 32)
    assert "partial" not in str(err.value)  # nothing was downloaded, so nothing is kept


def test_parse_lst_rejects_malformed_lines() -> None:
    assert parse_lst("3\t1\ta.png\n") == [(3, 1, "a.png")]
    with pytest.raises(DataError, match="line 2"):
        parse_lst("3\t1\ta.png\nbroken line\n")
    with pytest.raises(DataError, match="twice"):
        parse_lst("3\t1\ta.png\n3\t0\tb.png\n")


def test_store_is_local_by_default(settings: Settings) -> None:
    assert isinstance(open_store(settings), LocalStore)


# ------------------------------------------------------------- never partial, never stale


def _objects(store: Store, bucket: str) -> dict[str, bytes]:
    return {k: store.get(bucket, k) for k in store.list(bucket)}


def test_a_name_too_long_for_a_file_fails_before_any_write_and_the_next_stage_is_true(
    tmp_path: Path, settings: Settings
) -> None:
    """The reported bug: a bad tarball whose one long file name failed only when written
    left its other images behind, and the good tarball then said 'already current'."""
    store = open_store(settings)
    good = write_tarball(tmp_path / "good.tar.gz", _cifar_members())
    stage_cifar(store, settings.bucket, good, ["apple", "baby"])
    before = _objects(store, settings.bucket)
    train = split_dict(20, seed=99)  # other pixels under the same names
    train[b"filenames"][-1] = b"apple_" + b"x" * 300 + b".png"
    bad = write_tarball(tmp_path / "bad.tar.gz", _cifar_members(train))
    with pytest.raises(InvalidKeyError, match="row 19.*segment of 310 bytes.*at most 255"):
        stage_cifar(store, settings.bucket, bad, ["apple", "baby"])
    assert _objects(store, settings.bucket) == before
    again = stage_cifar(store, settings.bucket, good, ["apple", "baby"])
    assert again.load.current and _objects(store, settings.bucket) == before


def test_stage_repairs_objects_that_differ_from_the_manifest(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    tarball = write_tarball(tmp_path / "c.tar.gz", _cifar_members())
    args = ["--home", str(settings.home), "stage", "--source", str(tarball)]
    args += ["--classes", "apple,baby"]
    main(args)
    capsys.readouterr()
    store = open_store(settings)
    before = _objects(store, settings.bucket)
    png = next(k for k in before if k.endswith(".png"))
    store.put(settings.bucket, png, before[png][:-1] + b"\x00")  # same size, other bytes
    store.put(settings.bucket, "data/test.lst", b"")
    store.delete(settings.bucket, next(k for k in reversed(before) if k.endswith(".png")))
    main(args)
    out = capsys.readouterr().out
    assert "Repaired 3 objects" in out and "Nothing to upload" not in out
    assert _objects(store, settings.bucket) == before
    main(args)
    assert "Nothing to upload" in capsys.readouterr().out


def test_new_labels_for_the_same_images_are_not_already_current(
    tmp_path: Path, settings: Settings
) -> None:
    tarball = write_tarball(tmp_path / "c.tar.gz", _cifar_members())
    store = open_store(settings)
    stage_cifar(store, settings.bucket, tarball, ["apple", "baby"])
    swapped = stage_cifar(store, settings.bucket, tarball, ["baby", "apple"])
    assert swapped.load.uploaded == 0 and swapped.load.written == 3  # 2 .lst + manifest
    assert not swapped.load.current
    rows = parse_lst(store.get(settings.bucket, "data/train.lst").decode())
    assert {name.split("_s_")[0]: label for _, label, name in rows} == {"baby": 0, "apple": 1}


def test_an_object_where_staging_needs_a_folder_is_refused_before_any_write(
    tmp_path: Path, settings: Settings
) -> None:
    tarball = write_tarball(tmp_path / "c.tar.gz", _cifar_members())
    store = open_store(settings)
    store.put(settings.bucket, "data/train", b"an object named like the folder")
    with pytest.raises(StoreError, match="the object 'data/train' exists"):
        stage_cifar(store, settings.bucket, tarball, ["apple"])
    assert store.list(settings.bucket) == ["data/train"]


@pytest.mark.parametrize(
    ("name", "error", "fragment"),
    [
        (b"caf\xe9.png", DataError, r"row 0 \(b'caf\\xe9.png'\) is not UTF-8"),
        ("vélo.png".encode(), DataError, r"row 0 \('vélo.png'\) is not printable ASCII"),
        (b"a\x7fb.png", InvalidKeyError, "control character"),
        (b"../../x.png", InvalidKeyError, r"'\.\.' path segment"),
        (b"sub/x.png", DataError, "not a plain"),
        (12, DataError, "is a int"),
    ],
)
def test_file_names_that_are_not_plain_ascii_png_names_are_clear_errors(
    tmp_path: Path, settings: Settings, name: object, error: type[Exception], fragment: str
) -> None:
    train = split_dict(20)
    train[b"filenames"][0] = name
    bad = write_tarball(tmp_path / "n.tar.gz", _cifar_members(train))
    _expect_failure(bad, settings, error, fragment)


@pytest.mark.parametrize("label", [b"v\xe9lo", "vélo".encode(), b"new\nline", 7])
def test_a_fine_label_name_that_is_not_printable_ascii_is_a_clear_error(
    tmp_path: Path, settings: Settings, label: object
) -> None:
    members = _cifar_members()
    meta = meta_dict()
    meta[b"fine_label_names"][3] = label
    members["cifar-100-python/meta"] = meta
    bad = write_tarball(tmp_path / "m.tar.gz", members)
    _expect_failure(bad, settings, DataError, "fine label name 3 .* is not a printable ASCII")


def test_non_ascii_and_undecodable_classes_on_the_command_line_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tarball = write_tarball(tmp_path / "c.tar.gz", _cifar_members())
    home = str(tmp_path / "h")
    # "\udcff" is how Python hands over an argv byte that is not UTF-8.
    for classes in ("bicycle,vélo", "bicycle,\udcff"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--home", home, "stage", "--source", str(tarball), "--classes", classes])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("DataError: unknown class name") and "Traceback" not in err
    assert not (tmp_path / "h" / "store" / "sconeflow" / "data").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE])
def test_a_link_or_special_member_anywhere_refuses_the_archive(
    tmp_path: Path, settings: Settings, kind: bytes
) -> None:
    """Even a member staging would skip: the README promises links are refused."""
    path = write_tarball(tmp_path / "ok.tar.gz", _cifar_members())
    with tarfile.open(path) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("cifar-100-python/readme")
        link.type, link.linkname = kind, "cifar-100-python/meta"
        tar.addfile(link)
    _expect_failure(path, settings, UnsafeArchiveError, "is a (link|special file); an archive")


def test_a_stage_on_s3_skips_objects_whose_etag_is_not_an_md5_only_if_bytes_match(
    dev_tarball: Path, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    """A multipart upload's ETag is no md5: staging then compares the bytes instead of
    uploading the object again on every run."""
    import boto3

    s = load_settings(env=s3_env, home=tmp_path, store_uri="s3://etag-test")
    tarball = write_tarball(tmp_path / "c.tar.gz", _cifar_members())
    store = open_store(s)
    stage_cifar(store, s.bucket, tarball, ["apple"])
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    key = "data/train.lst"
    body = store.get(s.bucket, key)
    upload = client.create_multipart_upload(Bucket=s.bucket, Key=key)
    part = client.upload_part(
        Bucket=s.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=body
    )
    client.complete_multipart_upload(
        Bucket=s.bucket, Key=key, UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )  # fmt: skip
    assert "-" in store.list_etags(s.bucket, key)[key]
    assert stage_cifar(store, s.bucket, tarball, ["apple"]).load.current
