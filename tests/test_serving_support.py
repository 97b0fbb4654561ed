"""Helpers for the serving tests (no tests here): a tiny model artifact built with the onnx
helper API (no torch), PNG bytes, and a real server process on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CLASSES = ["bicycle", "motorcycle"]
META: dict[str, Any] = {
    "classes": CLASSES,
    "image_shape": [3, 32, 32],
    "normalization": {"mean": [0.507, 0.487, 0.441], "std": [0.267, 0.256, 0.276]},
    "output": "probabilities",
    "temperature": 1.5,
    "hyperparameters": {"epochs": "1"},
    "metrics": {"validation:accuracy": 0.5},
    "version": "test",
}


def build_onnx(seed: int = 0, width: int = 8) -> bytes:
    """A small CNN with flip TTA and temperature inside the graph, like training's export:
    probabilities = softmax(mean(f(x), f(flip_w(x))) / T)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        w = rng.normal(0, (2.0 / fan_in) ** 0.5, size=shape).astype(np.float32)
        return numpy_helper.from_array(w, name)

    inits = [
        init("w1", width, 3, 3, 3),
        init("b1", width),
        init("w2", 2 * width, width, 3, 3),
        init("b2", 2 * width),
        init("fc", 2, 2 * width),
        init("fcb", 2),
        numpy_helper.from_array(np.array([0], np.int64), "s_start"),
        numpy_helper.from_array(np.array([-(2**62)], np.int64), "s_end"),  # to the front
        numpy_helper.from_array(np.array([3], np.int64), "s_axis"),
        numpy_helper.from_array(np.array([-1], np.int64), "s_step"),
        numpy_helper.from_array(np.array([-1], np.int64), "s_begin"),
        numpy_helper.from_array(np.array(2.0 * META["temperature"], np.float32), "two_t"),
    ]
    nodes = [
        helper.make_node("Slice", ["input", "s_begin", "s_end", "s_axis", "s_step"], ["flipped"])
    ]
    for tag, src in (("a", "input"), ("b", "flipped")):
        nodes += [
            helper.make_node("Conv", [src, "w1", "b1"], [f"c1{tag}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c1{tag}"], [f"r1{tag}"]),
            helper.make_node(
                "MaxPool", [f"r1{tag}"], [f"p1{tag}"], kernel_shape=[2, 2], strides=[2, 2]
            ),
            helper.make_node("Conv", [f"p1{tag}", "w2", "b2"], [f"c2{tag}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c2{tag}"], [f"r2{tag}"]),
            helper.make_node("GlobalAveragePool", [f"r2{tag}"], [f"g{tag}"]),
            helper.make_node("Flatten", [f"g{tag}"], [f"f{tag}"]),
            helper.make_node("Gemm", [f"f{tag}", "fc", "fcb"], [f"l{tag}"], transB=1),
        ]
    nodes += [
        helper.make_node("Add", ["la", "lb"], ["lsum"]),
        helper.make_node("Div", ["lsum", "two_t"], ["scaled"]),  # mean of 2, then / T
        helper.make_node("Softmax", ["scaled"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_model_dir(folder: Path, meta: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(build_onnx())
    (folder / "model.json").write_text(json.dumps(meta or META))
    return folder


def write_artifact(path: Path, meta: dict[str, Any] | None = None) -> Path:
    """model.tar.gz as training writes it: model.onnx and model.json at the top level."""
    folder = write_model_dir(path.parent / "_model_src", meta)
    with tarfile.open(path, "w:gz") as tar:
        for name in ("model.onnx", "model.json"):
            tar.add(folder / name, arcname=name)
    return path


def png_bytes(seed: int = 0, size: tuple[int, int] = (32, 32), mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def padded_png(png: bytes, size: int, kind: bytes = b"tEXt") -> bytes:
    """A valid PNG of exactly `size` bytes: `png` with ancillary chunks of `kind` after its
    IHDR. tEXt: one text chunk; zTXt: compressed text, each chunk inflating to ~1 MB (as
    much as Pillow allows), the rest private; anything else: one chunk of that type."""

    def chunk(ctype: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(ctype + data))
        return struct.pack(">I", len(data)) + ctype + data + crc

    head, rest = png[:33], png[33:]  # signature + IHDR, then the image data
    extra = b""
    if kind == b"zTXt":
        extra = chunk(b"zTXt", b"k\0\0" + zlib.compress(b"x" * 1_000_000, 9)) * 60
        kind = b"prIv"
    n = size - len(png) - len(extra) - 12
    data = b"Comment\0" + b"x" * (n - 8) if kind == b"tEXt" else b"\0" * n
    out = head + extra + chunk(kind, data) + rest
    assert len(out) == size
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`sconeflow serve` as a real child process on 127.0.0.1; stop() sends SIGTERM."""

    def __init__(self, home: Path, model: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"serve-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-c",
            "import sys; from sconeflow.cli import main; main()",
            "--home",
            str(home),
            "serve",
            "--model-dir",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *args,
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None, path: str = "/invocations"
) -> tuple[int, dict[str, str], bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(
            "POST", path, body=body, headers={"Content-Type": "image/png", **(headers or {})}
        )
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
