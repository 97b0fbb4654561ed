"""FunctionConfig: how the three handlers find the image store, the endpoint and the threshold.

Why this module reads environment variables although house style keeps that to
`sconeflow.config`: on AWS Lambda the environment *is* the configuration interface, and the
handler file is the edge where it enters, as the CLI is for commands. `from_env` takes the
mapping as an argument (the handler passes `os.environ` once, at cold start), so everything
below the edge gets a typed object, and the runner builds one directly from its Settings.

Variables (all optional):
    THRESHOLD               minimum top probability to pass (default 0.93, the reference's)
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

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sconeflow.config import Settings, load_settings
from sconeflow.errors import ConfigError, InvalidKeyError
from sconeflow.store import validate_key

DEFAULT_THRESHOLD = 0.93
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
    """

    threshold: float = DEFAULT_THRESHOLD
    endpoint_name: str | None = None
    endpoint_url: str | None = None
    settings: Settings | None = None
    region: str = DEFAULT_REGION
    allowed_prefix: str = DEFAULT_ALLOWED_PREFIX

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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FunctionConfig:
        """Build the config from a Lambda-style environment (see the module docstring)."""
        raw = env.get("THRESHOLD", "").strip()
        try:
            threshold = float(raw) if raw else DEFAULT_THRESHOLD
        except ValueError as err:
            raise ConfigError(
                f"THRESHOLD: {raw!r} is not a number; expected e.g. THRESHOLD=0.93"
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
        )


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
