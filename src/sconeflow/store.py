"""Object store: the embedded local store (default) or any S3 API, same behaviour on both.

Objects are addressed by bucket and key, as in S3. The local store keeps an object at
`<root>/<bucket>/<key>`; writes go to a temporary file under `<root>/.tmp/` and are renamed
into place, so a crashed writer never leaves a half-written object and a reader never sees
one (rename is atomic on POSIX). `.tmp` can never be a bucket: bucket names follow S3's rule,
which forbids a leading dot. Keys are validated on both backends by the same rule, so a key
that would escape the store or that a filesystem cannot hold (a segment over 255 bytes) is
refused on S3 too, and data moves between them unchanged.

`check_writable` answers, before anything is written, whether a put would fail for a reason
the key itself carries (its syntax, the local path's length, an object where the key needs a
folder); staging runs it over every key first. `list_etags` gives each object's md5 (S3's
ETag for a single-part upload), so a caller can tell cheaply which objects differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from sconeflow.config import BUCKET_NAME_RE, Settings
from sconeflow.errors import ConfigError, InvalidKeyError, ObjectNotFoundError, StoreError

MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length
# NAME_MAX of ext4, XFS, btrfs, APFS and NTFS. S3 has no such limit, but a key with a longer
# segment could never come back from S3 into the embedded store.
MAX_SEGMENT_BYTES = 255
LOCAL_PATH_MAX = 4096  # Linux's PATH_MAX, including the store root
TMP_DIR = ".tmp"  # the local store's temporary folder, beside the buckets
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _shown(text: str, limit: int = 80) -> str:
    """repr() of a name, cut short: an over-long key must not make an unreadable message."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def validate_key(key: str) -> str:
    """Return `key` if it is safe on every backend, else raise InvalidKeyError.

    Refused: empty keys, absolute paths, `.`/`..` or empty segments, backslashes, NUL and
    other control characters, text that is not valid Unicode (lone surrogates, as Python
    makes of undecodable file-name bytes), a segment over 255 UTF-8 bytes, and keys over
    1024 UTF-8 bytes.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"object key {key!r} is empty; expected e.g. 'data/train/x.png'")
    problem = _key_problem(key)
    if problem:
        raise InvalidKeyError(
            f"object key {_shown(key)} {problem}; expected a relative path of '/'-separated "
            f"names of at most {MAX_SEGMENT_BYTES} bytes each, such as "
            "'data/train/bicycle_s_000513.png'"
        )
    return key


def _key_problem(key: str) -> str | None:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return (
            "is not valid Unicode text (it holds undecodable bytes, e.g. a file name in "
            "another encoding)"
        )
    segments = key.split("/")
    if key.startswith("/"):
        return "is an absolute path"
    if _CONTROL.search(key):
        return "contains a NUL or control character"
    if "\\" in key:
        return "contains a backslash"
    if any(seg in ("", ".", "..") for seg in segments):
        return "has an empty, '.' or '..' path segment"
    if size > MAX_KEY_BYTES:
        return f"is {size} bytes long, more than S3's {MAX_KEY_BYTES}"
    for seg in segments:
        if len(seg.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return (
                f"has a path segment of {len(seg.encode('utf-8'))} bytes ({_shown(seg, 40)}), "
                f"more than the {MAX_SEGMENT_BYTES} a file name may have"
            )
    return None


class Store(Protocol):
    """What both backends offer. `uri()` names an object for people and logs."""

    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None: ...
    def get(self, bucket: str, key: str) -> bytes: ...
    def exists(self, bucket: str, key: str) -> bool: ...
    def delete(self, bucket: str, key: str) -> None: ...
    def list(self, bucket: str, prefix: str = "") -> list[str]: ...
    def list_etags(self, bucket: str, prefix: str = "") -> dict[str, str]: ...
    def check_writable(self, bucket: str, keys: Iterable[str]) -> None: ...
    def uri(self, bucket: str, key: str = "") -> str: ...


class LocalStore:
    """Objects as files under a root folder; atomic writes by rename.

    Writes are not fsynced: a power cut can leave a renamed object empty or short. Staging
    verifies every object against its manifest on each run (`list_etags`), which repairs
    that; per-object fsync would cost more than the whole staging.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, bucket: str, key: str) -> Path:
        path = self.root / validate_bucket(bucket) / validate_key(key)
        if len(os.fsencode(path)) >= LOCAL_PATH_MAX:
            raise InvalidKeyError(
                f"object key {_shown(key)} makes the local path {_shown(str(path))} longer "
                f"than the {LOCAL_PATH_MAX} bytes a path may have; use a shorter key or a "
                "store root with a shorter path (--home)"
            )
        return path

    def check_writable(self, bucket: str, keys: Iterable[str]) -> None:
        """Raise (InvalidKeyError, StoreError) for the first key a put would fail on: bad
        syntax, a path too long, a folder already at the key or an object where the key
        needs a folder (S3 allows `a` and `a/b` side by side; a filesystem cannot)."""
        folders_ok: set[Path] = set()
        for key in keys:
            conflict = self._conflict(bucket, key, folders_ok)
            if conflict is not None:
                raise conflict

    def _conflict(self, bucket: str, key: str, folders_ok: set[Path]) -> StoreError | None:
        top = self.root / validate_bucket(bucket)
        path = self._path(bucket, key)
        for folder in (self.root, self.root / TMP_DIR, top):
            if folder not in folders_ok and folder.exists() and not folder.is_dir():
                return StoreError(
                    f"cannot write {self.uri(bucket, key)}: {folder} is a file, where the "
                    "store keeps a folder; pass --store (or --home) naming a folder"
                )
            folders_ok.add(folder)
        if path.is_dir():
            return StoreError(
                f"cannot write {self.uri(bucket, key)}: objects already use that key as a "
                "folder; remove them or choose another key"
            )
        parent = path.parent
        while parent != top and parent not in folders_ok:
            if parent.exists() and not parent.is_dir():
                blocker = parent.relative_to(top).as_posix()
                return StoreError(
                    f"cannot write {self.uri(bucket, key)}: the object {blocker!r} exists, "
                    "so no object can live under it here; remove it or choose another key"
                )
            folders_ok.add(parent)
            parent = parent.parent
        return None

    def put(self, bucket: str, key: str, data: bytes | bytearray) -> None:
        target = self._path(bucket, key)
        tmp_dir = self.root / TMP_DIR
        tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        except OSError as err:
            conflict = self._conflict(bucket, key, set())
            raise conflict or StoreError(f"cannot write {self.uri(bucket, key)}: {err}") from err
        finally:
            with contextlib.suppress(OSError):  # gone after the rename, or never made
                tmp.unlink()

    def get(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
            raise ObjectNotFoundError(f"no object at {self.uri(bucket, key)}") from err
        except OSError as err:
            raise StoreError(f"cannot read {self.uri(bucket, key)}: {err}") from err

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def delete(self, bucket: str, key: str) -> None:
        """Delete one object; deleting a missing object is not an error (as in S3)."""
        path = self._path(bucket, key)
        try:
            if path.is_dir():
                return  # a folder of other objects, not an object: nothing to delete
            path.unlink(missing_ok=True)
            # Drop folders left empty, so listings and disk stay tidy.
            parent, top = path.parent, self.root / bucket
            while parent != top and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        except NotADirectoryError:
            return  # an object sits where the key needs a folder: the key holds nothing
        except OSError as err:
            raise StoreError(f"cannot delete {self.uri(bucket, key)}: {err}") from err

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys starting with `prefix`, sorted, like S3's ListObjectsV2."""
        base = self.root / validate_bucket(bucket)
        # Walk only the folder the prefix names, not the whole bucket.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = base / folder if folder else base
        if folder:
            validate_key(folder)
        if not start.is_dir():
            return []
        keys = [k for k in _walk(start, base) if k.startswith(prefix)]
        return sorted(keys)

    def list_etags(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """Key -> hex md5 of its bytes, for every object under `prefix` (S3's ETag of a
        single-part upload). Reads each file: the cost of knowing, not trusting."""
        out: dict[str, str] = {}
        base = self.root / validate_bucket(bucket)
        for key in self.list(bucket, prefix):
            try:  # the key came from walking the bucket itself: no need to validate it
                out[key] = hashlib.md5((base / key).read_bytes()).hexdigest()
            except FileNotFoundError:
                continue  # deleted since the listing
            except OSError as err:
                raise StoreError(f"cannot read {self.uri(bucket, key)}: {err}") from err
        return out

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
        self._ensure_bucket(validate_bucket(bucket))
        with self._s3_call("write", self.uri(bucket, key)):
            self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, bucket: str, key: str) -> bytes:
        validate_key(key)
        from botocore.exceptions import ClientError

        with self._s3_call("read", self.uri(bucket, key)):
            try:
                response = self.client.get_object(Bucket=validate_bucket(bucket), Key=key)
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
                self.client.head_object(Bucket=validate_bucket(bucket), Key=key)
            except ClientError as err:
                if _code(err) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                    return False
                raise
        return True

    def delete(self, bucket: str, key: str) -> None:
        validate_key(key)
        if self.exists(bucket, key):
            with self._s3_call("delete", self.uri(bucket, key)):
                self.client.delete_object(Bucket=validate_bucket(bucket), Key=key)

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(self.list_etags(bucket, prefix))

    def list_etags(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """Key -> ETag (quotes stripped) from the listing itself: no object is read. For a
        single-part upload without SSE-KMS that is the hex md5 of the bytes; otherwise it
        differs, and a caller comparing md5s sees the object as changed."""
        from botocore.exceptions import ClientError

        out: dict[str, str] = {}
        with self._s3_call("list", self.uri(bucket, prefix)):
            try:
                pages = self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=validate_bucket(bucket), Prefix=prefix
                )
                for page in pages:
                    for obj in page.get("Contents", []):
                        out[obj["Key"]] = str(obj.get("ETag", "")).strip('"')
            except ClientError as err:
                if _code(err) == "NoSuchBucket":
                    return {}
                raise
        return out

    def check_writable(self, bucket: str, keys: Iterable[str]) -> None:
        """Raise InvalidKeyError for the first key refused by the shared rule. S3 itself
        would take `a` and `a/b` side by side, so nothing else can stop a put here."""
        validate_bucket(bucket)
        for key in keys:
            validate_key(key)

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


def validate_bucket(bucket: str) -> str:
    """Return `bucket` if it follows S3's bucket naming rule, else raise InvalidKeyError.

    The same rule on both backends; it also keeps the local store's own `.tmp` folder (and
    any other dot name beside the buckets) out of reach of a bucket name from outside."""
    if not isinstance(bucket, str) or not BUCKET_NAME_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidKeyError(
            f"bucket name {_shown(str(bucket), 70)} is invalid; expected 3-63 lowercase "
            "letters, digits, dots and hyphens, starting and ending with a letter or digit "
            "(S3's rule), e.g. 'sconeflow'"
        )
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
    "MAX_SEGMENT_BYTES",
    "LocalStore",
    "S3Store",
    "Store",
    "copy_prefix",
    "open_store",
    "validate_bucket",
    "validate_key",
]
