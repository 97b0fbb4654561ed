"""The sweep of issue 13: every entry point outside the workflow (command-line arguments and
files of stage, train, evaluate, deploy, serve, invoke, monitor; objects read back from the
store) answers each class of bad input with `ErrorName: message` and exit status 1, never a
traceback. One test per class, over the entry points where it was seen or could be; the
Lambda events' share is in test_functions.py, tarball names in test_staging.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sconeflow.cli import main
from sconeflow.config import Settings
from sconeflow.store import open_store

LONG = "x" * 300  # a name no filesystem takes (NAME_MAX is 255 bytes)
UNDECODABLE = "\udcff\udcfe"  # what Python makes of argv bytes that are not UTF-8


@pytest.fixture
def home(settings: Settings, tmp_path: Path) -> str:
    """A workspace with a small synthetic staging, so commands get past "stage first"."""
    from sconeflow.staging import stage_cifar
    from sconeflow.synthetic import make_cifar_tarball

    tarball = make_cifar_tarball(tmp_path / "staged.tar.gz", 300, 100)
    stage_cifar(open_store(settings), settings.bucket, tarball)
    return str(settings.home)


def _fails_cleanly(capsys: pytest.CaptureFixture[str], args: list[str], error: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err
    assert err.startswith(f"{error}: ") and "Traceback" not in err, err
    assert len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["train", "describe", UNDECODABLE], "ConfigError"),
        (["train", "--job-name", UNDECODABLE], "ConfigError"),
        (["evaluate", "--model", UNDECODABLE], "ConfigError"),
        (["evaluate", "--model", "m", "--split", UNDECODABLE], "InvalidKeyError"),
        (["deploy", "--model", UNDECODABLE], "ConfigError"),
        (["endpoint", "describe", UNDECODABLE], "ConfigError"),
        (["endpoint", "delete", UNDECODABLE], "ConfigError"),
        (["invoke", "--endpoint", UNDECODABLE, __file__], "ConfigError"),
        (["monitor", "run", "--endpoint", UNDECODABLE], "ConfigError"),
        (["stage", "--url", f"https://{UNDECODABLE}/c.tar.gz"], "DataError"),
        (["--bucket", UNDECODABLE, "stage"], "ConfigError"),
    ],
)
def test_arguments_that_are_not_utf8(
    home: str, capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    _fails_cleanly(capsys, ["--home", home, *args], error)


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (["--home", f"/tmp/{LONG}", "train", "list"], "ConfigError", "home: .*File name too long"),
        (["--store", f"file:///tmp/{LONG}/s", "stage"], "ConfigError", "store: .* too long"),
        (["train", "--job-name", LONG], "ConfigError", "not a training job name"),
        (["train", "describe", LONG], "ConfigError", "not found"),
        (["evaluate", "--model", LONG], "ModelError", "neither a file"),
        (["evaluate", "--model", "m", "--split", LONG], "InvalidKeyError", "segment of 304"),
        (["train", "--validation-channel", LONG], "InvalidKeyError", "segment of 304"),
        (["deploy", "--model", LONG], "ModelError", "neither a file"),
        (["deploy", "--model", "m", "--name", LONG], "EndpointError", "invalid"),
        (["deploy", "--model", "m", "--capture-destination", f"s3://b-1/{LONG}"],
         "ConfigError", "DestinationS3Uri: .* cannot hold objects"),
        (["serve", "--model-dir", f"/tmp/{LONG}"], "ModelError", "File name too long"),
        (["monitor", "run", "--endpoint", LONG], "MonitoringError", "segment of"),
        (["stage", "--source", f"/tmp/{LONG}.tar.gz"], "DataError", "File name too long"),
    ],
)  # fmt: skip
def test_names_longer_than_a_filesystem_allows(
    home: str, capsys: pytest.CaptureFixture[str], args: list[str], error: str, fragment: str
) -> None:
    full = args if args[0].startswith("--") else ["--home", home, *args]
    err = _fails_cleanly(capsys, full, error)
    assert re.search(fragment, err), err


@pytest.mark.parametrize("classes", ["bicycle,vélo", "自転車", f"bicycle,{UNDECODABLE}"])
def test_non_ascii_class_names(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], classes: str
) -> None:
    from sconeflow.synthetic import make_cifar_tarball

    tarball = make_cifar_tarball(tmp_path / "c.tar.gz", 10, 5)
    args = ["--home", str(settings.home), "stage", "--source", str(tarball), "--classes", classes]
    assert "unknown class name" in _fails_cleanly(capsys, args, "DataError")


@pytest.mark.parametrize(
    ("args", "error", "fragment"),
    [
        (["--store", "file://{afile}", "stage", "--source", "{tarball}"], "StoreError",
         "is a file, where the store keeps a folder"),
        (["--store", "file:///proc/sconeflow", "stage", "--source", "{tarball}"], "StoreError",
         "cannot write"),
        (["stage", "--url", "file:///etc/passwd"], "DataError", "not an http"),
        (["stage", "--url", "http://[::1"], "DataError", "not an http"),
        (["stage", "--md5", "nope"], "DataError", "not an md5"),
        (["train", "--hyperparameters", "{latin1}"], "ConfigError", "cannot read JSON"),
        (["serve", "--model-dir", "{afile}"], "ModelError", "not a readable tar.gz"),
    ],
)  # fmt: skip
def test_os_errors_and_unreadable_files(
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    error: str,
    fragment: str,
) -> None:
    from sconeflow.synthetic import make_cifar_tarball

    afile = tmp_path / "afile"
    afile.write_text("a file, not a folder")
    latin1 = tmp_path / "hp.json"
    latin1.write_bytes(b'{"epochs": "caf\xe9"}')
    tarball = make_cifar_tarball(tmp_path / "c.tar.gz", 10, 5)
    paths = {"afile": str(afile), "latin1": str(latin1), "tarball": str(tarball)}
    filled = [a.format(**paths) for a in args]
    full = ["--home", str(settings.home), *filled]
    err = _fails_cleanly(capsys, full, error)
    assert re.search(fragment, err), err


def test_store_objects_that_are_not_utf8_are_named(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Objects read back from the store are input too: a `.lst` or a baseline that is not
    UTF-8 (a hand edit, another tool) is named, and `stage` repairs the `.lst`."""
    from sconeflow.channels import read_lst
    from sconeflow.errors import DataError, MonitoringError
    from sconeflow.monitoring.baseline import load_baseline
    from sconeflow.staging import stage_cifar
    from sconeflow.synthetic import make_cifar_tarball

    store = open_store(settings)
    tarball = make_cifar_tarball(tmp_path / "c.tar.gz", 300, 100)
    stage_cifar(store, settings.bucket, tarball)
    store.put(settings.bucket, "data/test.lst", b"0\t0\tcaf\xe9.png\n")
    with pytest.raises(DataError, match="data/test.lst is not UTF-8 text; run `sconeflow stage`"):
        read_lst(store, settings.bucket, "test")
    args = ["--home", str(settings.home), "evaluate", "--model", "any"]
    assert "not UTF-8" in _fails_cleanly(capsys, args, "DataError")
    assert stage_cifar(store, settings.bucket, tarball).load.repaired == 1
    assert read_lst(store, settings.bucket, "test")[1]
    for name in ("statistics.json", "constraints.json", "baseline_sample.json"):
        store.put(settings.bucket, f"monitoring/s/baseline/{name}", b"\xff\xfe{")
    with pytest.raises(MonitoringError, match="is not JSON"):
        load_baseline(store, settings.bucket, "monitoring/s/baseline/")
