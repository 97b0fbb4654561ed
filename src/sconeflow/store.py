"""Object store: the embedded local store (default) or any S3 API, same behaviour on both.

Objects are addressed by bucket and key, as in S3. The local store keeps an object at
`<root>/<bucket>/<key>`; writes go to a temporary file under `<root>/.tmp/` and are renamed
into place, so a crashed writer never leaves a half-written object and a reader never sees
one (rename is atomic on POSIX). Keys are validated on both backends, so a key that would
escape the store locally is refused on S3 too and data moves between them unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from sconeflow.config import Settings
from sconeflow.errors import ConfigError, InvalidKeyError, ObjectNotFoundError, StoreError

MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_key(key: str) -> str:
    """Return `key` if it is safe on every backend, else raise InvalidKeyError.

    Refused: empty keys, absolute paths, `.`/`..` or empty segments, backslashes, NUL and
    other control characters, and keys over 1024 UTF-8 bytes.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"object key {key!r} is empty; expected e.g. 'data/train/x.png'")
    problem = None
    if key.startswith("/"):
        problem = "is an absolute path"
    elif _CONTROL.search(key):
        problem = "contains a NUL or control character"
    elif "\\" in key:
        problem = "contains a backslash"
    elif any(seg in ("", ".", "..") for seg in key.split("/")):
        problem = "has an empty, '.' or '..' path segment"
    elif len(key.encode("utf-8")) > MAX_KEY_BYTES:
        problem = f"is longer than {MAX_KEY_BYTES} bytes"
    if problem:
        raise InvalidKeyError(
            f"object key {key!r} {problem}; expected a relative path of '/'-separated "
            "names such as 'data/train/bicycle_s_000513.png'"
        )
    return key


class Store(Protocol):
    """What both backends offer. `uri()` names an object for people and logs."""

    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None: ...
    def get(self, bucket: str, key: str) -> bytes: ...
    def exists(self, bucket: str, key: str) -> bool: ...
    def delete(self, bucket: str, key: str) -> None: ...
    def list(self, bucket: str, prefix: str = "") -> list[str]: ...
    def uri(self, bucket: str, key: str = "") -> str: ...


class LocalStore:
    """Objects as files under a root folder; atomic writes by rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / _checked_bucket(bucket) / validate_key(key)

    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None:
        target = self._path(bucket, key)
        tmp_dir = self.root / ".tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
        try:
            tmp.write_bytes(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise StoreError(
                    f"cannot write {self.uri(bucket, key)}: a folder of objects already "
                    "uses that key as a prefix; choose another key"
                )
            os.replace(tmp, target)
        except OSError as err:
            raise StoreError(f"cannot write {self.uri(bucket, key)}: {err}") from err
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
            raise ObjectNotFoundError(f"no object at {self.uri(bucket, key)}") from err

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def delete(self, bucket: str, key: str) -> None:
        """Delete one object; deleting a missing object is not an error (as in S3)."""
        path = self._path(bucket, key)
        path.unlink(missing_ok=True)
        # Drop folders left empty, so listings and disk stay tidy.
        parent, top = path.parent, self.root / bucket
        while parent != top and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys starting with `prefix`, sorted, like S3's ListObjectsV2."""
        base = self.root / _checked_bucket(bucket)
        # Walk only the folder the prefix names, not the whole bucket.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = base / folder if folder else base
        if folder:
            validate_key(folder)
        if not start.is_dir():
            return []
        keys = [k for k in _walk(start, base) if k.startswith(prefix)]
        return sorted(keys)

    def uri(self, bucket: str, key: str = "") -> str:
        return str(self.root / bucket / key) if key else str(self.root / bucket)


def _walk(start: Path, base: Path) -> Iterator[str]:
    for dirpath, _dirs, files in os.walk(start):
        rel = os.path.relpath(dirpath, base)
        for name in files:
            yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")


class S3Store:
    """The same operations over the S3 API with boto3 (AWS, MinIO, moto, ...).

    botocore's failures (no credentials, a bad region, nothing listening at the endpoint,
    a refused request) leave here as StoreError or ConfigError naming the fix, never as a
    botocore traceback; `_s3_call` does that for every request.
    """

    def __init__(self, endpoint_url: str | None = None, client: Any = None) -> None:
        if client is None:
            import boto3  # imported here: the local store needs no AWS SDK at start-up

            try:
                client = boto3.client("s3", endpoint_url=endpoint_url)
            except Exception as err:  # InvalidRegionError, a ValueError for a bad endpoint
                raise ConfigError(
                    f"cannot create an S3 client: {err}. Set AWS_DEFAULT_REGION to a region "
                    "name such as us-east-1 and AWS_ENDPOINT_URL to an http(s) URL such as "
                    "http://127.0.0.1:9000 (or unset it for AWS itself)"
                ) from err
        self.client = client
        self._known_buckets: set[str] = set()

    @contextlib.contextmanager
    def _s3_call(self, action: str, uri: str) -> Iterator[None]:
        """Run one request, turning botocore's exceptions into StoreError with the fix.

        ClientErrors a method handles itself (NoSuchKey...) are raised as sconeflow errors
        inside and pass through untouched."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as err:
            raise StoreError(f"cannot {action} {uri}: {_client_error_text(err)}") from err
        except BotoCoreError as err:
            where = getattr(self.client.meta, "endpoint_url", None) or "the S3 API"
            raise StoreError(f"cannot {action} {uri}: {_botocore_error_text(err, where)}") from err

    def _ensure_bucket(self, bucket: str) -> None:
        if bucket in self._known_buckets:
            return
        from botocore.exceptions import ClientError

        with self._s3_call("reach bucket", f"s3://{bucket}"):
            try:
                self.client.head_bucket(Bucket=bucket)
            except ClientError as err:
                if _code(err) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                region = getattr(self.client.meta, "region_name", None)
                if region and region != "us-east-1":  # S3 wants the region named elsewhere
                    self.client.create_bucket(
                        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
                    )
                else:
                    self.client.create_bucket(Bucket=bucket)
        self._known_buckets.add(bucket)

    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None:
        validate_key(key)
        self._ensure_bucket(_checked_bucket(bucket))
        with self._s3_call("write", self.uri(bucket, key)):
            self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, bucket: str, key: str) -> bytes:
        validate_key(key)
        from botocore.exceptions import ClientError

        with self._s3_call("read", self.uri(bucket, key)):
            try:
                response = self.client.get_object(Bucket=_checked_bucket(bucket), Key=key)
            except ClientError as err:
                if _code(err) in ("NoSuchKey", "404", "NoSuchBucket"):
                    raise ObjectNotFoundError(f"no object at {self.uri(bucket, key)}") from err
                raise
            body: bytes = response["Body"].read()
        return body

    def exists(self, bucket: str, key: str) -> bool:
        validate_key(key)
        from botocore.exceptions import ClientError

        with self._s3_call("check", self.uri(bucket, key)):
            try:
                self.client.head_object(Bucket=_checked_bucket(bucket), Key=key)
            except ClientError as err:
                if _code(err) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                    return False
                raise
        return True

    def delete(self, bucket: str, key: str) -> None:
        validate_key(key)
        if self.exists(bucket, key):
            with self._s3_call("delete", self.uri(bucket, key)):
                self.client.delete_object(Bucket=bucket, Key=key)

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        from botocore.exceptions import ClientError

        keys: list[str] = []
        with self._s3_call("list", self.uri(bucket, prefix)):
            try:
                pages = self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=_checked_bucket(bucket), Prefix=prefix
                )
                for page in pages:
                    keys.extend(obj["Key"] for obj in page.get("Contents", []))
            except ClientError as err:
                if _code(err) == "NoSuchBucket":
                    return []
                raise
        return sorted(keys)

    def uri(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code"))


# S3 error codes that mean "who you are or what you may do", not "what you asked for".
_AUTH_CODES = {
    "403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled",
}  # fmt: skip


def _client_error_text(err: Any) -> str:
    """An S3 error response in words, with the fix for the credential ones."""
    code = _code(err)
    message = err.response.get("Error", {}).get("Message") or str(err)
    text = f"{code}: {message}"
    if code in _AUTH_CODES:
        text += (
            "; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that "
            "they may use this bucket"
        )
    return text


def _botocore_error_text(err: Exception, where: str) -> str:
    """A botocore failure before any S3 answer (credentials, region, network) with its fix."""
    from botocore import exceptions as bx

    if isinstance(err, bx.NoCredentialsError | bx.PartialCredentialsError):
        return (
            f"no AWS credentials ({err}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE; a local S3 server (moto, MinIO) needs them too, and any values "
            "do: export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test"
        )
    if isinstance(err, bx.NoRegionError | bx.InvalidRegionError):
        return f"no usable AWS region ({err}); set AWS_DEFAULT_REGION, e.g. us-east-1"
    if isinstance(err, bx.EndpointConnectionError | bx.ConnectTimeoutError):
        return (
            f"nothing answers at {where} ({err}). Start the S3 server there, or set "
            "AWS_ENDPOINT_URL to the URL it listens on (unset it to use AWS itself)"
        )
    if isinstance(err, bx.ReadTimeoutError | bx.ConnectionClosedError):
        return f"{where} stopped answering ({err}); check that the S3 server is healthy"
    if isinstance(err, bx.SSLError):
        return (
            f"TLS failed with {where} ({err}); for a local server use an http:// URL in "
            "AWS_ENDPOINT_URL, or point AWS_CA_BUNDLE at its certificate"
        )
    return f"{type(err).__name__}: {err}"


def _checked_bucket(bucket: str) -> str:
    if not bucket or "/" in bucket or bucket in (".", "..") or _CONTROL.search(bucket):
        raise InvalidKeyError(f"bucket name {bucket!r} is invalid; expected e.g. 'sconeflow'")
    return bucket


def open_store(settings: Settings) -> Store:
    """The store the settings name: LocalStore for file://, S3Store for s3://."""
    if settings.is_s3:
        return S3Store(endpoint_url=settings.endpoint_url)
    root = Path(urlparse(settings.store_uri).path)
    return LocalStore(root)


def copy_prefix(src: Store, dst: Store, bucket: str, prefix: str) -> int:
    """Copy every object under a prefix from one store to another (e.g. local -> S3)."""
    keys = src.list(bucket, prefix)
    for key in keys:
        dst.put(bucket, key, src.get(bucket, key))
    return len(keys)


__all__ = [
    "LocalStore",
    "S3Store",
    "Store",
    "copy_prefix",
    "open_store",
    "validate_key",
]
