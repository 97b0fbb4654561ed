"""The two outside services the handlers use: an object store and a SageMaker runtime.

One `Services` per handler container (or per runner), built from a FunctionConfig. Clients
are created on first use and then reused, as a Lambda keeps them across warm invocations;
creation is locked because the runner calls handlers from several threads.

The endpoint is always called through boto3's `sagemaker-runtime` client, on AWS and
locally alike (locally with `endpoint_url` = the local server), so the request on the wire
is the one AWS sends: `POST /endpoints/<name>/invocations`, `Content-Type: image/png`.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

from sconeflow.errors import InvalidKeyError, ObjectNotFoundError, StoreError
from sconeflow.functions.config import FunctionConfig, runtime_base_url
from sconeflow.functions.errors import (
    AccessDeniedError,
    EndpointInvocationError,
    ImageNotFoundError,
    InvalidEventError,
)
from sconeflow.store import S3Store, Store, open_store, validate_key

# Local servers accept any SigV4 signature; boto3 still needs something to sign with.
_LOCAL_CREDENTIALS = {"aws_access_key_id": "sconeflow", "aws_secret_access_key": "sconeflow"}


class Services:
    """Lazily built store and runtime clients for one FunctionConfig."""

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._runtime: Any = None

    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                if self.config.settings is not None:
                    self._store = open_store(self.config.settings)
                else:
                    import boto3

                    self._store = S3Store(client=boto3.client("s3"))
            return self._store

    def runtime(self) -> Any:
        with self._lock:
            if self._runtime is None:
                import boto3
                from botocore.config import Config

                kwargs: dict[str, Any] = {
                    "region_name": self.config.region,
                    # Step Functions' Retry owns retrying; boto3 adds at most one quick retry.
                    "config": Config(
                        connect_timeout=5,
                        read_timeout=65,  # the container contract: answer within 60 s
                        retries={"mode": "standard", "max_attempts": 2},
                    ),
                }
                if self.config.endpoint_url is not None:
                    kwargs["endpoint_url"] = runtime_base_url(self.config.endpoint_url)
                    session = boto3.session.Session()
                    if session.get_credentials() is None:
                        kwargs.update(_LOCAL_CREDENTIALS)
                    self._runtime = session.client("sagemaker-runtime", **kwargs)
                else:
                    self._runtime = boto3.client("sagemaker-runtime", **kwargs)
            return self._runtime

    def read_image(self, bucket: str, key: str) -> bytes:
        """The object's bytes; ImageNotFoundError if absent, InvalidEventError if unsafe,
        AccessDeniedError outside the allowed prefix (checked before the store is asked)."""
        try:
            validate_key(key)
        except InvalidKeyError as err:
            raise InvalidEventError(f"event key 's3_key' is not a safe object key: {err}") from err
        prefix = self.config.allowed_prefix
        if not key.startswith(prefix):
            raise AccessDeniedError(
                f"s3_key {key[:200]!r} in bucket {bucket[:70]!r} is outside {prefix!r}, the only "
                f"prefix this function may read (as its IAM policy on {bucket[:70]}/{prefix}* "
                f"would allow); send a key under {prefix}, e.g. {prefix}test/bicycle_s_000513.png, "
                "or set ALLOWED_PREFIX"
            )
        try:
            return self.store().get(bucket, key)
        except ObjectNotFoundError as err:
            raise ImageNotFoundError(
                f"no image at bucket {bucket!r} key {key!r} ({err}); staged test images are "
                "under data/test/, e.g. data/test/bicycle_s_000513.png"
            ) from err
        except StoreError as err:  # an unsafe key or bucket name, or the store failed
            raise InvalidEventError(
                f"cannot read s3_bucket {bucket!r} s3_key {key!r}: {err}"
            ) from err

    def invoke_endpoint(
        self, body: bytes, content_type: str = "image/png", inference_id: str | None = None
    ) -> list[float]:
        """Class probabilities for one image, as the endpoint answers with Accept JSON.

        `inference_id` goes out as X-Amzn-SageMaker-Inference-Id, so the captured record
        can be tied back to the workflow execution that sent it."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = self.config.endpoint_name
        if not name:
            raise EndpointInvocationError(
                "no endpoint configured; set ENDPOINT_NAME (and SCONEFLOW_ENDPOINT_URL for a "
                "local server), or pass --endpoint to `sconeflow workflow run`"
            )
        where = self.config.endpoint_url or f"SageMaker runtime in {self.config.region}"
        try:
            extra = {"InferenceId": inference_id} if inference_id else {}
            response = self.runtime().invoke_endpoint(
                EndpointName=name, ContentType=content_type, Accept="application/json",
                Body=body, **extra,
            )  # fmt: skip
            raw = response["Body"].read()
        except ClientError as err:
            info = err.response.get("Error", {})
            raise EndpointInvocationError(
                f"endpoint {name!r} at {where} answered {info.get('Code', '?')}: "
                f"{info.get('Message', err)}"
            ) from err
        except BotoCoreError as err:
            raise EndpointInvocationError(
                f"cannot reach endpoint {name!r} at {where}: {err}; is it in service "
                "(`sconeflow deploy`)?"
            ) from err
        return parse_probabilities(raw, name)


def parse_probabilities(raw: bytes, endpoint: str = "endpoint") -> list[float]:
    """A JSON array of probabilities (or `{"prediction": [...]}`) into a list of floats."""
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise EndpointInvocationError(
            f"endpoint {endpoint!r} answered {raw[:80]!r}, which is not JSON; expected a JSON "
            "array of class probabilities such as [0.9972, 0.0028]"
        ) from err
    if isinstance(doc, dict) and "prediction" in doc:
        doc = doc["prediction"]
    if (
        not isinstance(doc, list)
        or not doc
        or not all(
            isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) for p in doc
        )
    ):
        raise EndpointInvocationError(
            f"endpoint {endpoint!r} answered {raw[:80]!r}; expected a non-empty JSON array "
            "of class probabilities such as [0.9972, 0.0028]"
        )
    return [float(p) for p in doc]
