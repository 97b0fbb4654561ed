"""FunctionConfig: how the three handlers find the image store, the endpoint and the threshold.

Why this module reads environment variables although house style keeps that to
`sconeflow.config`: on AWS Lambda the environment *is* the configuration interface, and the
handler file is the edge where it enters, as the CLI is for commands. `from_env` takes the
mapping as an argument (the handler passes `os.environ` once, at cold start), so everything
below the edge gets a typed object, and the runner builds one directly from its Settings.

Variables (all optional):
    THRESHOLD               minimum top probability to pass (default 0.93, the reference's),
                            or `model`: the threshold stored in the deployed model's
                            model.json (`selective.threshold`, chosen for a target selective
                            accuracy by `sconeflow evaluate --target-accuracy ... --save`)
    MODEL_DATA_URL          with THRESHOLD=model: the model.tar.gz the endpoint serves
                            (SageMaker's ModelDataUrl, e.g. s3://sconeflow/models/<job>/
                            output/model.tar.gz); read once, at cold start, from S3 (or the
                            sconeflow store locally). The function needs s3:GetObject on it.
    ENDPOINT_NAME           SageMaker endpoint to invoke (`ENDPOINT`, the reference's name, too)
    SCONEFLOW_ENDPOINT_URL  base URL of a local endpoint server, e.g. http://127.0.0.1:8080;
                            unset: the AWS SageMaker runtime of AWS_REGION
    ALLOWED_PREFIX          the only key prefix serializeImageData may read (default data/),
                            as an IAM policy on `arn:aws:s3:::<bucket>/data/*` would allow:
                            model artifacts, captures and monitoring output stay out of reach
    SCONEFLOW_HOME / SCONEFLOW_STORE / SCONEFLOW_BUCKET
                            read images from that sconeflow store (see sconeflow.config);
                            unset on Lambda (AWS_LAMBDA_FUNCTION_NAME set): S3 with boto3
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sconeflow.config import Settings, load_settings
from sconeflow.errors import ConfigError, InvalidKeyError
from sconeflow.store import validate_key

DEFAULT_THRESHOLD = 0.93
THRESHOLD_FROM_MODEL = "model"  # THRESHOLD=model: read it from the model's model.json
MAX_META_BYTES = 16 << 20  # model.json larger than this is not a model.json
DEFAULT_REGION = "us-east-1"
DEFAULT_ALLOWED_PREFIX = "data/"  # where staging puts the images
# SageMaker's endpoint name rule (CreateEndpoint): 1-63 chars, hyphens only between letters/digits.
_ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True)
class FunctionConfig:
    """Configuration shared by the three handlers; each uses the fields it needs.

    settings:      the sconeflow store to read images from; None reads S3 with boto3 (AWS).
    endpoint_url:  base URL of a local SageMaker-compatible server; None is AWS itself.
    allowed_prefix: serializeImageData reads only keys that start with it.
    threshold_from_model: THRESHOLD=model; `resolve_threshold` replaces `threshold` with the
                   one in model_data_url's model.json before any handler runs.
    """

    threshold: float = DEFAULT_THRESHOLD
    endpoint_name: str | None = None
    endpoint_url: str | None = None
    settings: Settings | None = None
    region: str = DEFAULT_REGION
    allowed_prefix: str = DEFAULT_ALLOWED_PREFIX
    threshold_from_model: bool = False
    model_data_url: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(
                f"THRESHOLD: {self.threshold!r} is not a probability; expected a number "
                "between 0 and 1, e.g. THRESHOLD=0.93"
            )
        if self.endpoint_name is not None and not _ENDPOINT_NAME_RE.fullmatch(self.endpoint_name):
            raise ConfigError(
                f"ENDPOINT_NAME: {self.endpoint_name!r} is not a SageMaker endpoint name; "
                "expected 1-63 letters, digits and inner hyphens, e.g. 'scones-endpoint'"
            )
        if self.endpoint_url is not None and not re.match(r"^https?://", self.endpoint_url):
            raise ConfigError(
                f"SCONEFLOW_ENDPOINT_URL: {self.endpoint_url!r} is not an http(s) URL, "
                "e.g. http://127.0.0.1:8080"
            )
        prefix = self.allowed_prefix
        try:
            ok = prefix.endswith("/") and bool(validate_key(prefix[:-1]))
        except InvalidKeyError:
            ok = False
        if not ok:
            raise ConfigError(
                f"ALLOWED_PREFIX: {prefix!r} is not a folder prefix; expected '/'-separated "
                "names ending in '/', e.g. ALLOWED_PREFIX=data/ (the prefix serializeImageData "
                "may read, as an IAM policy on <bucket>/data/* would allow)"
            )
        if self.threshold_from_model:
            split_s3_url(self.model_data_url or "", "MODEL_DATA_URL")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FunctionConfig:
        """Build the config from a Lambda-style environment (see the module docstring)."""
        raw = env.get("THRESHOLD", "").strip()
        from_model = raw.lower() == THRESHOLD_FROM_MODEL
        try:
            threshold = DEFAULT_THRESHOLD if from_model or not raw else float(raw)
        except ValueError as err:
            raise ConfigError(
                f"THRESHOLD: {raw!r} is not a number; expected e.g. THRESHOLD=0.93, or "
                "THRESHOLD=model with MODEL_DATA_URL=s3://bucket/models/<job>/output/"
                "model.tar.gz"
            ) from err
        on_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        wants_store = any(env.get(k) for k in ("SCONEFLOW_HOME", "SCONEFLOW_STORE"))
        settings = load_settings(env) if wants_store or not on_lambda else None
        return cls(
            threshold=threshold,
            endpoint_name=env.get("ENDPOINT_NAME") or env.get("ENDPOINT") or None,
            endpoint_url=env.get("SCONEFLOW_ENDPOINT_URL") or None,
            settings=settings,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            allowed_prefix=env.get("ALLOWED_PREFIX", "").strip() or DEFAULT_ALLOWED_PREFIX,
            threshold_from_model=from_model,
            model_data_url=env.get("MODEL_DATA_URL") or None,
        )


def split_s3_url(url: str, what: str = "MODEL_DATA_URL") -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); ConfigError shows a correct example."""
    m = re.fullmatch(r"s3://([^/]+)/(.+)", url.strip())
    if not m:
        raise ConfigError(
            f"{what}: {url!r} is not an s3://bucket/key URL; THRESHOLD=model needs the model "
            "the endpoint serves, e.g. MODEL_DATA_URL=s3://sconeflow/models/<job>/output/"
            "model.tar.gz"
        )
    return m.group(1), m.group(2)


def resolve_threshold(
    config: FunctionConfig, read: Callable[[str, str], bytes]
) -> FunctionConfig:
    """THRESHOLD=model made concrete: `config` with the threshold of the model.json inside
    MODEL_DATA_URL's model.tar.gz (`read(bucket, key)` fetches it). Other configs unchanged.

    Read once per container (cold start), like the rest of the configuration, so a model
    redeployed with a new threshold takes effect when the function's environment changes.
    """
    if not config.threshold_from_model:
        return config
    url = config.model_data_url or ""
    bucket, key = split_s3_url(url)
    try:
        data = read(bucket, key)
    except Exception as err:  # the store's own errors say what failed; add what was wanted
        raise ConfigError(f"THRESHOLD=model: cannot read MODEL_DATA_URL {url}: {err}") from err
    threshold = threshold_from_artifact(data, url)
    return replace(config, threshold=threshold, threshold_from_model=False)


def threshold_from_artifact(data: bytes, source: str) -> float:
    """`selective.threshold` of the model.json in model.tar.gz bytes.

    Only model.json is read, in memory (nothing is extracted, so member paths cannot
    escape anywhere); it must be a regular file of at most 16 MiB.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            member = next((m for m in tar.getmembers()
                           if m.name in ("model.json", "./model.json")), None)  # fmt: skip
            if member is None or not member.isfile() or member.size > MAX_META_BYTES:
                raise ConfigError(f"THRESHOLD=model: {source} holds no model.json (a regular "
                                  "file of at most 16 MiB); is it a sconeflow model.tar.gz?")
            raw = tar.extractfile(member)
            meta: Any = json.loads(raw.read(MAX_META_BYTES + 1) if raw else b"")
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile, ValueError) as err:
        raise ConfigError(f"THRESHOLD=model: {source} is not a readable model.tar.gz with "
                          f"a JSON model.json: {err}") from err
    entry = meta.get("selective") if isinstance(meta, dict) else None
    value = entry.get("threshold") if isinstance(entry, dict) else None
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not math.isfinite(value) or not 0.0 <= value <= 1.0 + 1e-9):
        raise ConfigError(
            f"THRESHOLD=model: the model.json in {source} has no valid selective.threshold "
            f"(found {value!r}); choose one with `sconeflow evaluate --model <job> "
            "--target-accuracy 0.99 --split <split> --save`, or set THRESHOLD to a number"
        )
    return min(float(value), 1.0)


def runtime_base_url(url: str) -> str:
    """The server's base URL from what an endpoint row or a user gives.

    Accepts `http://h:p`, `http://h:p/invocations` or `http://h:p/endpoints/<name>/invocations`
    and returns `http://h:p`, which boto3's sagemaker-runtime client takes as endpoint_url
    (it appends `/endpoints/<name>/invocations` itself).
    """
    base = url.rstrip("/")
    for tail in ("/invocations",):
        if base.endswith(tail):
            base = base[: -len(tail)]
    if "/endpoints/" in base:
        base = base.split("/endpoints/", 1)[0]
    return base
