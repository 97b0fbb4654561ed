"""Settings: the one object built at the edge (CLI, server start) and passed down.

This module is the only reader of environment variables. Every other module takes a
`Settings` (or the plain values it needs) as an argument.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from sconeflow.errors import ConfigError

DEFAULT_BUCKET = "sconeflow"
DEFAULT_HOME = ".sconeflow"
# S3's bucket naming rules (general purpose buckets), which the local store follows too so
# that a workspace moves to S3 unchanged.
BUCKET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Settings:
    """Where sconeflow keeps its things.

    home:      workspace folder: `store/` (embedded object store), `sconeflow.db`, `logs/`,
               `run/` (pid files), `downloads/`.
    store_uri: `file://<path>` for the embedded store (default `<home>/store`) or
               `s3://` for any S3 API (boto3 honours AWS_ENDPOINT_URL).
    bucket:    default bucket for staged data, models and captures.
    endpoint_url: the S3 API endpoint for `s3://` stores (None: AWS itself or
               AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL as boto3 reads them).
    """

    home: Path
    store_uri: str
    bucket: str = DEFAULT_BUCKET
    endpoint_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def db_path(self) -> Path:
        return self.home / "sconeflow.db"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"

    @property
    def is_s3(self) -> bool:
        return self.store_uri.startswith("s3://")

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields replaced, validated again."""
        return _validated(replace(self, **changes))  # type: ignore[arg-type]


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    home: str | Path | None = None,
    store_uri: str | None = None,
    bucket: str | None = None,
) -> Settings:
    """Build Settings from explicit values, then `SCONEFLOW_*` variables, then defaults.

    Variables: SCONEFLOW_HOME, SCONEFLOW_STORE, SCONEFLOW_BUCKET; AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL for s3:// stores. `env` defaults to os.environ (a seam for tests).
    """
    env = dict(os.environ if env is None else env)
    home_path = Path(home or env.get("SCONEFLOW_HOME") or DEFAULT_HOME).expanduser()
    uri = store_uri or env.get("SCONEFLOW_STORE") or ""
    if not uri:
        uri = (home_path / "store").resolve().as_uri()
    if uri.startswith("s3://") and uri.rstrip("/") != "s3:":
        # `s3://my-bucket` names the bucket too, unless one is given explicitly.
        bucket = bucket or uri[len("s3://") :].strip("/")
        uri = "s3://"
    endpoint_url = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    settings = Settings(
        home=home_path.resolve(),
        store_uri=uri,
        bucket=bucket or env.get("SCONEFLOW_BUCKET") or DEFAULT_BUCKET,
        endpoint_url=endpoint_url,
        env=env,
    )
    return _validated(settings)


def _validated(s: Settings) -> Settings:
    checks = [("home", "--home", s.home)]
    if s.store_uri.startswith("file://"):
        checks.append(("store", "--store", Path(s.store_uri[len("file://") :])))
    for setting, flag, path in checks:
        try:  # stat raises on some paths, e.g. a folder name over 255 bytes (ENAMETOOLONG)
            path.exists()
        except OSError as err:
            raise ConfigError(
                f"{setting}: {str(path)[:200]!r} cannot be used ({err.strerror}); pass {flag} "
                "with a path whose folder names are at most 255 bytes each"
            ) from err
    if s.home.exists() and not s.home.is_dir():
        raise ConfigError(
            f"home: {str(s.home)!r} exists and is not a folder; pass --home or set "
            "SCONEFLOW_HOME to a folder (it is created if missing)"
        )
    if not (s.store_uri.startswith("file://") or s.store_uri.startswith("s3://")):
        raise ConfigError(
            f"store: {s.store_uri!r} is not a store URI; expected file:///abs/path for the "
            "embedded store or s3:// (for example s3:// or s3://my-bucket) for an S3 API"
        )
    if s.store_uri.startswith("file://") and not s.store_uri[len("file://") :].startswith("/"):
        raise ConfigError(
            f"store: {s.store_uri!r} must name an absolute path, e.g. file:///data/store"
        )
    if not BUCKET_NAME_RE.fullmatch(s.bucket) or ".." in s.bucket:
        raise ConfigError(
            f"bucket: {s.bucket!r} is not a valid bucket name; expected 3-63 characters of "
            "lowercase letters, digits, dots and hyphens, starting and ending with a letter "
            "or digit (e.g. 'sconeflow')"
        )
    if s.endpoint_url is not None and not re.match(r"^https?://", s.endpoint_url):
        raise ConfigError(
            f"AWS_ENDPOINT_URL: {s.endpoint_url!r} is not an http(s) URL, "
            "e.g. http://127.0.0.1:9000"
        )
    return s


# --- Serving: the SageMaker inference container contract (AWS_FORMATS.md section 3) ---------

DEFAULT_MODEL_DIR = "/opt/ml/model"
_MIB = 1024 * 1024


def default_workers() -> int:
    """One server worker per core, each with one onnxruntime thread (server.py measures it)."""
    return max(1, min(64, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServingSettings:
    """How a model server runs, from the container's SAGEMAKER_* variables.

    port:             SAGEMAKER_BIND_TO_PORT (8080).
    workers:          SAGEMAKER_MODEL_SERVER_WORKERS (the machine's cores, as SageMaker's
                      inference toolkit defaults): server processes sharing the port.
    timeout_s:        SAGEMAKER_MODEL_SERVER_TIMEOUT (60): seconds one invocation may take.
    default_accept:   SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT (application/json), used when the
                      caller sends no Accept or `*/*`.
    max_payload_bytes: SAGEMAKER_MAX_PAYLOAD_IN_MB (6) in bytes: 6 MiB = 6,291,456.
    model_dir:        where the unpacked model lives: SM_MODEL_DIR, the SageMaker toolkits'
                      name for it, else /opt/ml/model (the container contract's path).

    Ours (SCONEFLOW_*), each bounding what one client can hold in a worker:
    read_timeout_s:   SCONEFLOW_READ_TIMEOUT (20): seconds a request's headers may take from
                      its first byte, and its body as long again (time the worker itself
                      stops reading does not count); a slower client is answered 408 and
                      disconnected. Also the longest a large body waits for room in the
                      body budget (then 503).
    keep_alive_s:     SCONEFLOW_KEEP_ALIVE_TIMEOUT (75): seconds an idle connection (new, or
                      between requests) is kept; longer than typical client pools, as ALBs.
    body_buffer_bytes: SCONEFLOW_BODY_BUFFER_MB (4 x the payload limit, 24 MiB): bytes of
                      request bodies over 64 KiB that one worker holds at once; more wait,
                      up to the read timeout (then 503).
    capture_buffer_bytes: SCONEFLOW_CAPTURE_BUFFER_MB (16): bytes of captured records one
                      worker holds before they are written; records beyond it are dropped
                      and counted (CaptureDroppedRecords in /metrics).
    capture_flush_s:  SCONEFLOW_CAPTURE_FLUSH_SECONDS (5): the longest a captured record
                      waits to be written.
    """

    port: int = 8080
    workers: int = field(default_factory=default_workers)
    timeout_s: float = 60.0
    default_accept: str = "application/json"
    max_payload_bytes: int = 6 * _MIB
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    read_timeout_s: float = 20.0
    keep_alive_s: float = 75.0
    body_buffer_bytes: int = 24 * _MIB
    capture_buffer_bytes: int = 16 * _MIB
    capture_flush_s: float = 5.0


def serving_settings(env: Mapping[str, str] | None = None) -> ServingSettings:
    """ServingSettings from SAGEMAKER_* variables (env defaults to os.environ)."""
    env = os.environ if env is None else env

    def number(key: str, default: float, low: float, high: float) -> float:
        raw = env.get(key, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise ConfigError(
                f"{key}: {raw!r} is not a number in [{low:g}, {high:g}]; unset it "
                f"or use e.g. {default:g}"
            )
        return value

    port = number("SAGEMAKER_BIND_TO_PORT", 8080, 1, 65535)
    workers = number("SAGEMAKER_MODEL_SERVER_WORKERS", default_workers(), 1, 64)
    if port != int(port) or workers != int(workers):
        raise ConfigError(
            "SAGEMAKER_BIND_TO_PORT and SAGEMAKER_MODEL_SERVER_WORKERS must be "
            f"whole numbers; got {port!r} and {workers!r}"
        )
    max_payload = int(number("SAGEMAKER_MAX_PAYLOAD_IN_MB", 6, 0.001, 1024) * _MIB)
    body_mb = number("SCONEFLOW_BODY_BUFFER_MB", 4 * max_payload / _MIB, 0.001, 65536)
    if body_mb * _MIB < max_payload:
        raise ConfigError(
            f"SCONEFLOW_BODY_BUFFER_MB: {body_mb:g} MiB is below the payload limit "
            f"({max_payload / _MIB:g} MiB), so the largest request could never be read; "
            f"unset it or use at least {max_payload / _MIB:g}"
        )
    return ServingSettings(
        port=int(port),
        workers=int(workers),
        timeout_s=number("SAGEMAKER_MODEL_SERVER_TIMEOUT", 60.0, 0.001, 3600),
        default_accept=env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "").strip()
        or "application/json",
        max_payload_bytes=max_payload,
        read_timeout_s=number("SCONEFLOW_READ_TIMEOUT", 20.0, 0.01, 3600),
        keep_alive_s=number("SCONEFLOW_KEEP_ALIVE_TIMEOUT", 75.0, 0.01, 3600),
        body_buffer_bytes=int(body_mb * _MIB),
        capture_buffer_bytes=int(number("SCONEFLOW_CAPTURE_BUFFER_MB", 16, 0.01, 65536) * _MIB),
        capture_flush_s=number("SCONEFLOW_CAPTURE_FLUSH_SECONDS", 5.0, 0.001, 3600),
        model_dir=Path(env.get("SM_MODEL_DIR", "").strip() or DEFAULT_MODEL_DIR),
    )
