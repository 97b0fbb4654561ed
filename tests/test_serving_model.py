"""Reading model artifacts without torch: model.tar.gz validation and model.json checks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from sconeflow.errors import ModelError, UnsafeArchiveError
from sconeflow.serving.model import extract_artifact, parse_meta, prepare_model_dir, read_meta
from test_serving_support import META, write_artifact, write_model_dir


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_artifact_round_trip(tmp_path: Path) -> None:
    tar = write_artifact(tmp_path / "model.tar.gz")
    model_dir = extract_artifact(tar, tmp_path / "out")
    meta = read_meta(model_dir)
    assert meta.classes == ("bicycle", "motorcycle")
    assert meta.image_shape == (3, 32, 32)
    assert meta.std == tuple(META["normalization"]["std"])
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json", "model.onnx"]
    assert prepare_model_dir(tar, tmp_path / "again") == tmp_path / "again"


@pytest.mark.parametrize(
    "name",
    ["/etc/model.onnx", "../model.onnx", "sub/../../model.json", "evil.py", "a/model.onnx"],
)
def test_unsafe_or_unexpected_member_names_are_refused(tmp_path: Path, name: str) -> None:
    tar = _tar(tmp_path / "m.tar.gz", [_file(name, b"x"), _file("model.json", b"{}")])
    with pytest.raises(UnsafeArchiveError) as err:
        extract_artifact(tar, tmp_path / "out")
    assert name in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_links_and_duplicates_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("model.onnx")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(UnsafeArchiveError, match="not a regular file"):
        extract_artifact(_tar(tmp_path / "l.tar.gz", [(link, None)]), tmp_path / "o1")
    dup = _tar(tmp_path / "d.tar.gz", [_file("model.json", b"{}"), _file("./model.json", b"{}")])
    with pytest.raises(UnsafeArchiveError, match="twice"):
        extract_artifact(dup, tmp_path / "o2")


def test_oversized_metadata_is_refused_from_the_header(tmp_path: Path) -> None:
    big = b" " * (16 * 1024 * 1024 + 1)
    tar = _tar(tmp_path / "big.tar.gz", [_file("model.json", big)])
    with pytest.raises(UnsafeArchiveError, match="over the"):
        extract_artifact(tar, tmp_path / "out")


def test_missing_member_and_not_a_tarball(tmp_path: Path) -> None:
    tar = _tar(tmp_path / "m.tar.gz", [_file("model.json", json.dumps(META).encode())])
    with pytest.raises(ModelError, match=r"lacks model\.onnx"):
        extract_artifact(tar, tmp_path / "out")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball at all")
    with pytest.raises(ModelError, match="not a readable"):
        extract_artifact(junk, tmp_path / "out2")
    with pytest.raises(ModelError, match="not found"):
        prepare_model_dir(tmp_path / "nothing-here", tmp_path / "o3")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"classes": []}, "classes"),
        ({"classes": "bicycle"}, "classes"),
        ({"image_shape": [3, 32]}, "image_shape"),
        ({"image_shape": [3, 0, 32]}, "image_shape"),
        ({"normalization": {"mean": [0.5, 0.5], "std": [1, 1, 1]}}, "normalization.mean"),
        ({"normalization": {"mean": [0.5] * 3, "std": [1, 0, 1]}}, "normalization.std"),
        ({"normalization": {"mean": [0.5] * 3, "std": [1, float("nan"), 1]}}, "std"),
        ({"output": "logits"}, "output"),
        ({"temperature": -1}, "temperature"),
    ],
)
def test_bad_metadata_names_the_key(change: dict[str, object], key: str) -> None:
    with pytest.raises(ModelError, match=key):
        parse_meta({**META, **change})


def test_model_folder_needs_both_files(tmp_path: Path) -> None:
    folder = write_model_dir(tmp_path / "m")
    (folder / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"model\.onnx is missing"):
        read_meta(folder)


def test_serving_never_imports_torch(tmp_path: Path) -> None:
    """The whole serving path, model load and a prediction included, runs without torch."""
    folder = write_model_dir(tmp_path / "m")
    code = (
        "import sys, numpy as np\n"
        "import sconeflow.serving.app, sconeflow.serving.server, sconeflow.serving.endpoints\n"
        "import sconeflow.cli.endpoint\n"
        "from sconeflow.serving.inference import load_predictor\n"
        f"p = load_predictor({str(folder)!r})\n"
        "p.predict_batch(np.zeros((2, 3, 32, 32), np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
