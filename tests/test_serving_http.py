"""Acceptance tests of the HTTP endpoint: a real `sconeflow serve` process on 127.0.0.1, real
files, boto3's unmodified sagemaker-runtime client, hostile and fuzzed bodies, and data
capture counted after a graceful stop."""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import struct
import time
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from sconeflow.config import Settings
from sconeflow.serving.inference import load_predictor, predict
from sconeflow.store import open_store
from test_serving_support import (
    META,
    ServerProcess,
    padded_png,
    png_bytes,
    post,
    write_artifact,
    write_model_dir,
)

pytestmark = pytest.mark.slow
MAX_BODY = 6_291_456
CAPTURE_100 = json.dumps(
    {"EnableCapture": True, "InitialSamplingPercentage": 100,
     "DestinationS3Uri": "s3://sconeflow/data_capture"}
)  # fmt: skip
LINE_RE = re.compile(
    r'^\{"captureData":\{"endpointInput":\{"observedContentType":"image/png","mode":"INPUT",'
    r'"data":"[A-Za-z0-9+/=]+","encoding":"BASE64"\},"endpointOutput":\{"observedContentType":'
    r'"application/json","mode":"OUTPUT","data":"\[[-0-9.e, ]+\]","encoding":"JSON"\}\},'
    r'"eventMetadata":\{"eventId":"[0-9a-f-]{36}","inferenceTime":'
    r'"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"(,"inferenceId":"[^"]+")?\},"eventVersion":"0"\}$'
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("home"), model_dir, "--name", "scones-ep")
    yield srv
    assert srv.stop() == 0


def _runtime(url: str) -> object:
    return boto3.client(
        "sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def test_boto3_invoke_endpoint_equals_offline_prediction(
    server: ServerProcess, model_dir: Path
) -> None:
    runtime = _runtime(server.url)
    offline = load_predictor(model_dir)
    for seed in range(5):
        data = png_bytes(seed)
        resp = runtime.invoke_endpoint(  # type: ignore[attr-defined]
            EndpointName="scones-ep", Body=data, ContentType="image/png",
            Accept="application/json", CustomAttributes="trace=abc", InferenceId=f"inf-{seed}",
        )  # fmt: skip
        probs = json.loads(resp["Body"].read())
        assert probs == predict(offline, [data])[0].tolist()  # bit for bit
        assert resp["ContentType"] == "application/json"
        assert resp["InvokedProductionVariant"] == "AllTraffic"
        assert resp["CustomAttributes"] == "trace=abc"
    lines = runtime.invoke_endpoint(  # type: ignore[attr-defined]
        EndpointName="scones-ep", Body=png_bytes(0), ContentType="application/x-image",
        Accept="application/jsonlines",
    )  # fmt: skip
    assert list(json.loads(lines["Body"].read())) == ["prediction"]


def test_boto3_sees_aws_error_codes(server: ServerProcess) -> None:
    runtime = _runtime(server.url)
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName="scones-ep", Body=b"nope", ContentType="image/png")  # type: ignore[attr-defined]
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert "not a PNG or JPEG" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName="other", Body=png_bytes(0), ContentType="image/png")  # type: ignore[attr-defined]
    assert "Endpoint other not found" in err.value.response["Error"]["Message"]


def test_staged_cifar_pngs_match_offline(
    server: ServerProcess, model_dir: Path, staged_home: Settings
) -> None:
    store = open_store(staged_home)
    keys = store.list(staged_home.bucket, "data/test/")[:20]
    images = [store.get(staged_home.bucket, k) for k in keys if k.endswith(".png")]
    offline = predict(load_predictor(model_dir), images)
    for data, expected in zip(images, offline, strict=True):
        status, _, body = post(server.url, data)
        assert status == 200 and json.loads(body) == expected.tolist()


def _bomb() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * (1 << 20))) + chunk(b"IEND", b""))  # fmt: skip


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        (b"", {}, 400, "empty"),
        (b"this is text", {}, 400, "not a PNG or JPEG"),
        (png_bytes(1)[:200], {}, 400, "truncated or corrupt"),
        (png_bytes(1, size=(48, 32)), {}, 400, "48x32 pixels"),
        (_bomb(), {}, 400, "header is invalid"),
        (b"\0" * (MAX_BODY + 1), {}, 413, "6291456"),
        (png_bytes(1), {"Content-Type": "text/plain"}, 415, "Content-Type 'text/plain'"),
        (png_bytes(1), {"Accept": "text/csv"}, 406, "Accept 'text/csv'"),
        (png_bytes(1), {"X-Amzn-SageMaker-Custom-Attributes": "x" * 1025}, 400, "Custom-Attr"),
        (png_bytes(1), {"X-Amzn-SageMaker-Inference-Id": "i" * 65}, 400, "Inference-Id"),
        (png_bytes(1), {"X-Amzn-SageMaker-Target-Variant": "Blue"}, 400, "variant 'Blue'"),
    ],
    ids=["empty", "text", "truncated", "wrong-size", "bomb", "too-large", "content-type",
         "accept", "attributes", "inference-id", "variant"],
)  # fmt: skip
def test_bad_requests_get_a_json_4xx_naming_the_problem(
    server: ServerProcess, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    got, resp_headers, payload = post(server.url, body, headers)
    assert got == status, payload
    error = json.loads(payload)
    assert error["code"] == resp_headers["x-amzn-errortype"] == "ValidationError"
    assert fragment in error["message"]
    assert post(server.url, png_bytes(2))[0] == 200  # the worker is still serving


def test_routes_methods_and_metrics(server: ServerProcess) -> None:
    with urllib.request.urlopen(f"{server.url}/ping") as resp:
        assert resp.status == 200 and json.loads(resp.read())["classes"] == META["classes"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/invocations")
    assert conn.getresponse().status == 405
    conn.close()
    assert post(server.url, b"x", path="/nowhere")[0] == 404
    with urllib.request.urlopen(f"{server.url}/metrics") as resp:
        text = resp.read().decode()
    for name in (
        "Invocations_total",
        "Invocation4XXErrors_total",
        "Invocation5XXErrors_total",
        "InvocationModelErrors_total",
        "InferenceBatches_total",
        "InferenceBatchImages_total",
        "ModelLatency_bucket",
        "OverheadLatency_sum",
    ):
        assert f'{name}{{EndpointName="scones-ep",VariantName="AllTraffic"' in text
    assert re.search(r"^Invocation5XXErrors_total\{.*\} 0\.0$", text, re.M)


def _mutate(rng: random.Random, seed_png: bytes) -> bytes:
    data = bytearray(seed_png)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and data:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:  # truncate
            del data[rng.randrange(len(data) + 1) :]
        elif op == 2:  # insert noise
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        elif op == 3 and len(data) > 24:  # rewrite the IHDR size (CRC left stale or fixed)
            data[16:24] = struct.pack(
                ">II",
                rng.choice([0, 1, 31, 33, 2**16, 2**31 - 1]),
                rng.choice([0, 32, 2**15, 2**31 - 1]),
            )
            if rng.random() < 0.5:
                data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
        elif op == 4:  # duplicate a slice
            a = rng.randrange(len(data) + 1)
            data[a:a] = data[a : a + rng.randint(1, 200)]
        elif op == 5:  # pure garbage
            data = bytearray(rng.randbytes(rng.randint(0, 300)))
        else:  # keep the PNG magic, random rest
            data = bytearray(b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(0, 100)))
    return bytes(data)


def _raw(port: int, pieces: list[bytes], pause: float) -> int:
    """Send a request in `pieces`, `pause` seconds apart; the status of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for n, piece in enumerate(pieces):
            if n:
                time.sleep(pause)
            sock.sendall(piece)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        resp.read()
        return resp.status


def test_fuzzed_bodies_never_give_5xx(tmp_path: Path, model_dir: Path) -> None:
    """10,000 mutated bodies, maximum-size valid images padded with ancillary chunks, and
    slow clients, all at once against one endpoint with capture on: never a 5xx."""
    srv = ServerProcess(
        tmp_path / "home", model_dir, "--workers", "2", "--name", "fuzz",
        "--capture-config", CAPTURE_100, env={"SCONEFLOW_READ_TIMEOUT": "1"},
    )  # fmt: skip
    rng = random.Random(20250822)
    seeds = [png_bytes(i) for i in range(4)]
    bodies = [_mutate(rng, rng.choice(seeds)) for _ in range(10_000)]
    types = ["image/png", "image/jpeg", "application/x-image"]
    offline = load_predictor(model_dir)

    def fuzz(chunk: list[bytes]) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        statuses = []
        for i, body in enumerate(chunk):
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": types[i % 3]})
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
        conn.close()
        return statuses

    def largest() -> list[bool]:
        ok = []
        for seed, kind in enumerate([b"tEXt", b"prIv", b"tEXt", b"prIv", b"zTXt"]):
            plain = seeds[seed % 4]
            status, _, answer = post(srv.url, padded_png(plain, MAX_BODY, kind))
            ok.append(status == 200 and json.loads(answer) == predict(offline, [plain])[0].tolist())
        ok.append(post(srv.url, padded_png(seeds[0], MAX_BODY + 1))[0] == 413)
        return ok

    def slow() -> list[int]:
        png = seeds[1]
        head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: %d\r\n\r\n" % len(png))  # fmt: skip
        answers = []
        for _ in range(3):
            quarter = len(png) // 4  # in time: four pieces, 0.1 s apart
            answers.append(_raw(srv.port, [head, *(png[k * quarter : (k + 1) * quarter]
                                                   for k in range(3)), png[3 * quarter :]], 0.1))
            answers.append(_raw(srv.port, [head + png[:100]], 0))  # stalls mid-body
            answers.append(_raw(srv.port, [head[:30]], 0))  # stalls mid-headers
        return answers

    with ThreadPoolExecutor(6) as pool:
        fuzzed = [pool.submit(fuzz, bodies[i::4]) for i in range(4)]
        large, slowed = pool.submit(largest), pool.submit(slow)
        statuses = [s for f in fuzzed for s in f.result()]
        large_ok, slow_answers = large.result(), slowed.result()
    assert len(statuses) == 10_000
    assert set(statuses) <= {200, 400}, sorted(set(statuses))
    assert statuses.count(400) > 4000  # the mutator really produced bad bodies
    assert large_ok == [True] * 6  # padded to the limit: answered as the plain image; 413 above
    assert slow_answers == [200, 408, 408] * 3  # in time, stalled in the body, in the headers
    with urllib.request.urlopen(f"{srv.url}/metrics") as resp:
        text = resp.read().decode()
    assert re.search(r"^Invocation5XXErrors_total\{.*\} 0\.0$", text, re.M)
    assert re.search(r"^CaptureDroppedRecords_total\{.*\} 0\.0$", text, re.M)
    assert srv.proc.poll() is None
    assert srv.stop() == 0
    assert "Traceback" not in srv.log.read_text()
    # Every answered request is captured; a padded body as the PNG of its pixels.
    lines = _capture_lines(tmp_path / "home", "fuzz")
    assert len(lines) == statuses.count(200) + 5 + 3
    assert max(len(ln) for ln in lines) < 20_000


def _load(url: str, n: int, concurrency: int = 8) -> list[int]:
    def run(k: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
        out = []
        for i in range(k):
            conn.request(
                "POST",
                "/invocations",
                body=png_bytes(i % 7),
                headers={"Content-Type": "image/png", "X-Amzn-SageMaker-Inference-Id": f"req-{i}"},
            )
            resp = conn.getresponse()
            resp.read()
            out.append(resp.status)
        conn.close()
        return out

    shares = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    with ThreadPoolExecutor(concurrency) as pool:
        return [s for part in pool.map(run, shares) for s in part]


def _capture_lines(home: Path, name: str) -> list[str]:
    root = home / "store" / "sconeflow" / "data_capture" / name / "AllTraffic"
    files = sorted(root.rglob("*.jsonl"))
    assert all(
        re.fullmatch(
            r"\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl",
            str(f.relative_to(root)),
        )
        for f in files
    )
    return [ln for f in files for ln in f.read_text().splitlines()]


# One worker with two onnxruntime threads runs the model on a batcher thread; two
# single-threaded workers run it on their event loops (inference.py). Both must lose nothing.
@pytest.mark.parametrize(
    ("workers", "threads"), [("1", "2"), ("2", "1")], ids=["batcher-thread", "on-the-loop"]
)
def test_capture_holds_exactly_n_records_after_sigterm(
    tmp_path: Path, model_dir: Path, workers: str, threads: str
) -> None:
    srv = ServerProcess(
        tmp_path / "home",
        model_dir,
        "--name",
        "cap-ep",
        "--workers",
        workers,
        "--threads",
        threads,
        "--capture-config",
        CAPTURE_100,
    )
    n = 500
    assert _load(srv.url, n) == [200] * n
    with urllib.request.urlopen(f"{srv.url}/metrics") as resp:  # summed over workers
        text = resp.read().decode()
    assert re.search(rf"^Invocations_total\{{.*\}} {n}\.0$", text, re.M)
    # Every image went through exactly one model call, in batches of at most 8.
    assert re.search(rf"^InferenceBatchImages_total\{{.*\}} {n}\.0$", text, re.M)
    found = re.search(r"^InferenceBatches_total\{.*\} (\d+)\.0$", text, re.M)
    assert found and n / 8 <= int(found.group(1)) <= n
    assert srv.stop() == 0
    lines = _capture_lines(tmp_path / "home", "cap-ep")
    assert len(lines) == n
    assert all(LINE_RE.match(ln) for ln in lines), next(ln for ln in lines if not LINE_RE.match(ln))
    ids = sorted(json.loads(ln)["eventMetadata"]["inferenceId"] for ln in lines)
    assert len(ids) == n and all(i.startswith("req-") for i in ids)


def test_capture_at_20_percent_is_within_the_binomial_interval(
    tmp_path: Path, model_dir: Path
) -> None:
    config = json.loads(CAPTURE_100) | {"InitialSamplingPercentage": 20}
    srv = ServerProcess(
        tmp_path / "home", model_dir, "--name", "cap20", "--capture-config", json.dumps(config)
    )
    n = 1000
    assert _load(srv.url, n) == [200] * n
    assert srv.stop() == 0
    count = len(_capture_lines(tmp_path / "home", "cap20"))
    half_width = 3.2905 * (n * 0.2 * 0.8) ** 0.5  # two-sided 99.9 %
    assert n * 0.2 - half_width <= count <= n * 0.2 + half_width, count


def test_container_environment_and_a_tarball_model(tmp_path: Path) -> None:
    """`serve` honours SAGEMAKER_* variables and takes model.tar.gz as the model dir."""
    tar = write_artifact(tmp_path / "art" / "model.tar.gz")
    env = {
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/jsonlines",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0.01",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
    }
    srv = ServerProcess(tmp_path / "home", tar, env=env)
    try:
        status, headers, body = post(srv.url, png_bytes(0))
        assert status == 200 and headers["content-type"] == "application/jsonlines"
        assert len(json.loads(body)["prediction"]) == 2
        status, _, body = post(srv.url, b"\0" * 20_000)
        assert status == 413 and b"10485" in body
        # Any endpoint name is answered in container mode (no --name).
        assert post(srv.url, png_bytes(0), path="/endpoints/whatever/invocations")[0] == 200
    finally:
        assert srv.stop() == 0


def test_probabilities_are_a_distribution(server: ServerProcess) -> None:
    probs = np.array(json.loads(post(server.url, png_bytes(9))[2]))
    assert probs.shape == (2,) and abs(probs.sum() - 1) < 1e-5 and (probs >= 0).all()


def test_workers_share_the_load(tmp_path: Path, model_dir: Path) -> None:
    # 64 keep-alive connections opened at once, as wrk does: with one socket shared by the
    # workers, the worker waiting in accept took all of them. SO_REUSEPORT spreads them.
    srv = ServerProcess(tmp_path / "home", model_dir, "--workers", "2", "--threads", "1")
    body = png_bytes(1)

    def client(_: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.connect()
        try:
            for _ in range(4):
                conn.request("POST", "/invocations", body, {"Content-Type": "image/png"})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
        finally:
            conn.close()
        return 4

    try:
        with ThreadPoolExecutor(64) as pool:
            total = sum(pool.map(client, range(64)))
        with urllib.request.urlopen(f"{srv.url}/metrics") as resp:
            text = resp.read().decode()
    finally:
        assert srv.stop() == 0
    served = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^WorkerInvocations_total\{.*worker="(\d)"\} (\S+)$', text, re.M)
    }
    assert sum(served.values()) == total == 256
    # Binomial(64 connections, 1/2): a worker with under a quarter happens ~3e-5 of the time.
    assert min(served.values()) >= total / 4, served


def test_a_second_server_cannot_join_the_port() -> None:
    from sconeflow.errors import EndpointError
    from sconeflow.serving.server import bind_sockets

    socks = bind_sockets("127.0.0.1", 0, 2)
    port = socks[0].getsockname()[1]
    try:
        assert all(s.getsockname()[1] == port for s in socks)
        for count in (1, 2):  # neither a plain nor a SO_REUSEPORT server may share it
            with pytest.raises(EndpointError, match=f"cannot listen on 127.0.0.1:{port}"):
                bind_sockets("127.0.0.1", port, count)
    finally:
        for s in socks:
            s.close()
