"""The three Lambda handlers: happy paths and every kind of invalid event, against a real
local store and a real HTTP endpoint on 127.0.0.1 speaking the SageMaker runtime route."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sconeflow.config import Settings
from sconeflow.errors import ConfigError
from sconeflow.functions import (
    AccessDeniedError,
    EndpointInvocationError,
    FunctionConfig,
    ImageNotFoundError,
    InvalidEventError,
    Services,
    ThresholdConfidenceNotMet,
    classify_image,
    filter_low_confidence,
    make_handlers,
    serialize_image_data,
)
from sconeflow.functions.config import runtime_base_url
from sconeflow.functions.package import build_lambda_zip
from sconeflow.store import LocalStore

PNG = b"\x89PNG\r\n\x1a\n" + b"fake image body"
KEY = "data/test/bicycle_s_000513.png"


class FakeEndpoint:
    """A stdlib HTTP server answering POST /endpoints/<name>/invocations with `reply`."""

    def __init__(self, reply: bytes = b"[0.97, 0.03]", status: int = 200) -> None:
        self.reply, self.status = reply, status
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append(
                    {
                        "path": self.path,
                        "type": self.headers.get("Content-Type"),
                        "body": body,
                        "inference_id": self.headers.get("X-Amzn-SageMaker-Inference-Id"),
                    }
                )
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.reply)))
                self.end_headers()
                self.wfile.write(outer.reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[FakeEndpoint]:
    server = FakeEndpoint()
    yield server
    server.close()


@pytest.fixture
def store(local_store: LocalStore, settings: Settings) -> LocalStore:
    local_store.put(settings.bucket, KEY, PNG)
    return local_store


def _services(settings: Settings, endpoint_url: str | None = None) -> Services:
    return Services(
        FunctionConfig(settings=settings, endpoint_name="scones", endpoint_url=endpoint_url)
    )


def test_serialize_reads_the_object_into_base64(store: LocalStore, settings: Settings) -> None:
    event = {"s3_bucket": settings.bucket, "s3_key": KEY, "image_data": "", "label": 0}
    out = serialize_image_data.handle(event, _services(settings))
    assert base64.b64decode(out["image_data"]) == PNG
    assert out["s3_bucket"] == settings.bucket and out["s3_key"] == KEY
    assert out["inferences"] == [] and out["label"] == 0  # extra keys ride along


def test_serialize_unwraps_the_reference_body_wrapper(
    store: LocalStore, settings: Settings
) -> None:
    event = {"statusCode": 200, "body": {"s3_bucket": settings.bucket, "s3_key": KEY}}
    out = serialize_image_data.handle(event, _services(settings))
    assert base64.b64decode(out["image_data"]) == PNG and "body" not in out


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ({"s3_key": KEY}, "no key 's3_bucket'"),
        ({"s3_bucket": "sconeflow"}, "no key 's3_key'"),
        ({"s3_bucket": "sconeflow", "s3_key": ""}, "'s3_key' is empty"),
        ({"s3_bucket": "sconeflow", "s3_key": 7}, "'s3_key' is a int"),
        ({"s3_bucket": "sconeflow", "s3_key": "../../etc/passwd"}, "'..'"),
        (["not", "a", "dict"], "not a JSON object"),
    ],
)
def test_serialize_rejects_invalid_events(settings: Settings, event: object, fragment: str) -> None:
    with pytest.raises(InvalidEventError, match=fragment):
        serialize_image_data.handle(event, _services(settings))


def test_serialize_names_the_missing_object(store: LocalStore, settings: Settings) -> None:
    event = {"s3_bucket": settings.bucket, "s3_key": "data/test/nope.png"}
    with pytest.raises(ImageNotFoundError, match=r"data/test/nope\.png"):
        serialize_image_data.handle(event, _services(settings))


def test_classify_invokes_the_runtime_route(settings: Settings, endpoint: FakeEndpoint) -> None:
    event = {"image_data": base64.b64encode(PNG).decode(), "s3_bucket": "b", "s3_key": KEY}
    out = classify_image.handle(event, _services(settings, endpoint.url))
    assert out["inferences"] == [0.97, 0.03]
    (request,) = endpoint.requests
    assert request["path"] == "/endpoints/scones/invocations"
    assert request["type"] == "image/png" and request["body"] == PNG


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ({"s3_key": KEY}, "no key 'image_data'"),
        ({"image_data": ""}, "'image_data' is empty"),
        ({"image_data": "not base64!!"}, "not valid base64"),
        ({"image_data": "aGVsbG8=", "inferences": "0.9"}, "'inferences' is a str"),
    ],
)
def test_classify_rejects_invalid_events(
    settings: Settings, endpoint: FakeEndpoint, event: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidEventError, match=fragment):
        classify_image.handle(event, _services(settings, endpoint.url))
    assert endpoint.requests == []  # nothing was sent for a bad event


@pytest.mark.parametrize(
    ("status", "reply", "fragment"),
    [
        (424, b'{"ErrorCode": "ModelError", "Message": "bad model"}', "answered"),
        (200, b"not json", "not JSON"),
        (200, b'{"label": 1}', "expected a non-empty JSON array"),
        (200, b"[]", "expected a non-empty JSON array"),
    ],
)
def test_classify_reports_bad_endpoint_answers(
    settings: Settings, status: int, reply: bytes, fragment: str
) -> None:
    server = FakeEndpoint(reply, status)
    try:
        with pytest.raises(EndpointInvocationError, match=fragment):
            classify_image.handle({"image_data": "aGVsbG8="}, _services(settings, server.url))
    finally:
        server.close()


def test_classify_reports_an_unreachable_endpoint(settings: Settings) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EndpointInvocationError, match="cannot reach endpoint 'scones'"):
        classify_image.handle({"image_data": "aGVsbG8="}, _services(settings, url))


def test_filter_passes_confident_events_unchanged() -> None:
    event = {"image_data": "x", "s3_bucket": "b", "s3_key": KEY, "inferences": [0.05, 0.95]}
    assert filter_low_confidence.handle(event, 0.93) == event


def test_filter_raises_the_named_error_below_threshold() -> None:
    with pytest.raises(ThresholdConfidenceNotMet, match=r"0\.9000 is below the threshold 0\.9300"):
        filter_low_confidence.handle({"inferences": [0.9, 0.1]}, 0.93)


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ({"image_data": "x"}, "no key 'inferences'"),
        ({"inferences": []}, "'inferences' is empty"),
        ({"inferences": {"a": 1}}, "'inferences' is a dict"),
        ({"inferences": [0.5, "high"]}, "item 1"),
        ({"inferences": [True]}, "item 0"),
    ],
)
def test_filter_rejects_invalid_events(event: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidEventError, match=fragment):
        filter_low_confidence.handle(event, 0.93)


def test_make_handlers_chains_the_three_functions(
    store: LocalStore, settings: Settings, endpoint: FakeEndpoint
) -> None:
    handlers = make_handlers(
        FunctionConfig(settings=settings, endpoint_name="scones", endpoint_url=endpoint.url)
    )
    event: Any = {"image_data": "", "s3_bucket": settings.bucket, "s3_key": KEY}
    for name in ("serializeImageData", "classifyImage", "filterLowConfidence"):
        event = handlers[name](event, None)
    assert event["inferences"] == [0.97, 0.03] and base64.b64decode(event["image_data"]) == PNG


def test_config_from_env_and_its_errors(tmp_path: Path) -> None:
    cfg = FunctionConfig.from_env(
        {"THRESHOLD": "0.8", "ENDPOINT": "scones-ep", "SCONEFLOW_HOME": str(tmp_path)}
    )
    assert cfg.threshold == 0.8 and cfg.endpoint_name == "scones-ep"
    assert cfg.settings is not None and cfg.settings.home == tmp_path.resolve()
    on_aws = FunctionConfig.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_REGION": "eu-west-1"})
    assert on_aws.settings is None and on_aws.region == "eu-west-1"
    with pytest.raises(ConfigError, match="THRESHOLD: 'high'"):
        FunctionConfig.from_env({"THRESHOLD": "high", "AWS_LAMBDA_FUNCTION_NAME": "f"})
    with pytest.raises(ConfigError, match=r"THRESHOLD: 1\.5"):
        FunctionConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="ENDPOINT_NAME"):
        FunctionConfig(endpoint_name="bad_name!")
    assert runtime_base_url("http://h:1/endpoints/x/invocations") == "http://h:1"
    assert runtime_base_url("http://h:1/invocations") == "http://h:1"


def test_lambda_zip_runs_the_handlers_with_only_the_zip_on_the_path(
    tmp_path: Path, store: LocalStore, settings: Settings, endpoint: FakeEndpoint
) -> None:
    """The deployment zip is self-sufficient: the handlers run from it, configured by env,
    with sconeflow's installed copy out of reach (-I isolates from site + cwd)."""
    zip_path = tmp_path / "functions.zip"
    zip_path.write_bytes(build_lambda_zip())
    assert "sconeflow/functions/classify_image.py" in zipfile.ZipFile(zip_path).namelist()
    script = (
        "import json, sys; sys.path[:0] = [sys.argv[1]] + sys.argv[2:];"
        "from sconeflow.functions import serialize_image_data as s, classify_image as c,"
        " filter_low_confidence as f;"
        "e = {'s3_bucket': 'sconeflow', 's3_key': '" + KEY + "'};"
        "e = f.lambda_handler(c.lambda_handler(s.lambda_handler(e, None), None), None);"
        "import sconeflow; print(json.dumps([sconeflow.__file__, e['inferences']]))"
    )
    import boto3

    # boto3 lives in site-packages; expose only its own folders, not sconeflow's install.
    deps = sorted({str(Path(boto3.__file__).parents[1])})
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SCONEFLOW_HOME": str(settings.home),
        "ENDPOINT_NAME": "scones",
        "SCONEFLOW_ENDPOINT_URL": endpoint.url,
        "THRESHOLD": "0.9",
    }
    out = subprocess.run(
        [sys.executable, "-I", "-c", script, str(zip_path), *deps],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    origin, inferences = json.loads(out.stdout)
    assert origin.startswith(str(zip_path)) and inferences == [0.97, 0.03]


# ------------------------------------------------------------- least privilege, bad keys


@pytest.mark.parametrize(
    "key",
    [
        "models/test-job/output/model.tar.gz",  # a model artifact
        "data_capture/ep/AllTraffic/2025/01/01/00/x.jsonl",  # captured traffic
        "database/x.png",  # starts with "data" but is not under data/
        "test/bicycle_s_000513.png",  # the reference's layout: needs ALLOWED_PREFIX=test/
    ],
)
def test_serialize_reads_only_under_the_allowed_prefix(
    local_store: LocalStore, settings: Settings, key: str
) -> None:
    local_store.put(settings.bucket, key, b"secret")
    event = {"s3_bucket": settings.bucket, "s3_key": key}
    with pytest.raises(AccessDeniedError, match=f"{key!r}.* outside 'data/'.*ALLOWED_PREFIX"):
        serialize_image_data.handle(event, _services(settings))


def test_the_allowed_prefix_comes_from_the_environment_and_is_checked(
    local_store: LocalStore, settings: Settings
) -> None:
    local_store.put(settings.bucket, "test/bicycle_s_000513.png", PNG)
    env = {"SCONEFLOW_HOME": str(settings.home), "ALLOWED_PREFIX": "test/"}
    cfg = FunctionConfig.from_env(env)
    assert cfg.allowed_prefix == "test/"
    event = {"s3_bucket": settings.bucket, "s3_key": "test/bicycle_s_000513.png"}
    out = serialize_image_data.handle(event, Services(cfg))
    assert base64.b64decode(out["image_data"]) == PNG
    with pytest.raises(AccessDeniedError, match="outside 'test/'"):
        serialize_image_data.handle({**event, "s3_key": KEY}, Services(cfg))
    assert FunctionConfig.from_env({"SCONEFLOW_HOME": str(settings.home)}).allowed_prefix == "data/"
    for bad in ("data", "../", "/abs/", "a//"):
        with pytest.raises(ConfigError, match=f"ALLOWED_PREFIX: {bad!r} is not a folder prefix"):
            FunctionConfig.from_env({**env, "ALLOWED_PREFIX": bad})


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("data/test/" + "x" * 300 + ".png", "segment of 304 bytes"),  # was OSError: too long
        ("data/test/caf\udce9.png", "not valid Unicode"),  # JSON may carry "\udce9"
        ("data/../models/job/output/model.tar.gz", "'..'"),  # no way round the prefix
        ("data/a\nb.png", "control character"),
    ],
)
def test_serialize_turns_keys_no_store_can_hold_into_invalid_events(
    settings: Settings, key: str, fragment: str
) -> None:
    event = {"s3_bucket": settings.bucket, "s3_key": key}
    with pytest.raises(InvalidEventError, match=fragment):
        serialize_image_data.handle(event, _services(settings))


@pytest.mark.parametrize("bucket", [".tmp", "A", "x" * 64, "b\udcff"])
def test_serialize_refuses_buckets_that_are_not_bucket_names(
    settings: Settings, bucket: str
) -> None:
    with pytest.raises(InvalidEventError, match="bucket name .* is invalid"):
        serialize_image_data.handle({"s3_bucket": bucket, "s3_key": KEY}, _services(settings))


@pytest.mark.parametrize(
    ("key", "sent"),
    [(KEY, KEY), ("data/test/vélo.png", None), ("data/test/" + "x" * 60 + ".png", None)],
)
def test_classify_sends_the_key_as_inference_id_only_when_a_header_can_carry_it(
    settings: Settings, endpoint: FakeEndpoint, key: str, sent: str | None
) -> None:
    event = {"image_data": base64.b64encode(PNG).decode(), "s3_key": key}
    out = classify_image.handle(event, _services(settings, endpoint.url))
    assert out["inferences"] == [0.97, 0.03]
    assert endpoint.requests[0]["inference_id"] == sent
