"""Endpoints as resources: deploy, list, describe, delete (SageMaker's verbs, one machine).

An endpoint is a row in the workspace database (table `endpoints`, with its
DataCaptureConfig in AWS's shape) plus a background server process on 127.0.0.1 started
with `sconeflow serve`. Files: the unpacked model in `<home>/endpoints/<name>/model/`, the
log in `<home>/logs/<name>.log`, the pid in `<home>/run/<name>.pid`.

Statuses (SageMaker's): Creating -> InService, or Failed (the process died; its log tail
is in the error). A server stopped on purpose (SIGTERM, Ctrl-C) records OutOfService
itself as it exits; `list`/`describe` report Failed for an InService row whose process is
gone without saying so (killed outright, or a crash of the master). `endpoint delete`
marks the row Deleting, stops the server and removes the row.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sconeflow import db
from sconeflow.config import Settings, default_workers
from sconeflow.errors import EndpointError, ModelError, ObjectNotFoundError
from sconeflow.serving.capture import CaptureConfig, parse_capture_config
from sconeflow.serving.model import prepare_model_dir
from sconeflow.serving.server import DEFAULT_MAX_BATCH, default_threads
from sconeflow.store import open_store

NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
MAX_NAME = 63
DEFAULT_PORT = 8080
HOST = "127.0.0.1"
# How the background process is started: the `sconeflow` CLI, with this interpreter.
_ENTRY = "import sys; from sconeflow.cli import main; main(sys.argv[1:])"


@dataclass(frozen=True)
class Endpoint:
    """One endpoints row, parsed."""

    name: str
    status: str
    model: str
    url: str
    port: int
    pid: int | None
    workers: int
    capture: CaptureConfig
    created_at: str
    updated_at: str

    def describe(self, settings: Settings) -> dict[str, Any]:
        """DescribeEndpoint's shape, plus the local details (Url, Pid, LogFile...)."""
        cap = self.capture
        return {
            "EndpointName": self.name,
            "EndpointArn": f"arn:aws:sagemaker:local:000000000000:endpoint/{self.name.lower()}",
            "EndpointStatus": self.status,
            "CreationTime": self.created_at,
            "LastModifiedTime": self.updated_at,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "CurrentInstanceCount": 1,
                    "CurrentWeight": 1.0,
                    "ModelServerWorkers": self.workers,
                }
            ],
            "DataCaptureConfig": {
                "EnableCapture": cap.enabled,
                "CaptureStatus": "Started" if cap.enabled else "Stopped",
                "CurrentSamplingPercentage": cap.sampling_percentage,
                "DestinationS3Uri": cap.destination,
                "CaptureOptions": cap.to_aws()["CaptureOptions"],
            },
            "Model": self.model,
            "Url": self.url,
            "Pid": self.pid,
            "LogFile": str(log_path(settings, self.name)),
        }


def validate_name(name: str) -> str:
    """SageMaker's endpoint name rules: <= 63 characters of [a-zA-Z0-9-], no edge hyphens."""
    if not name or len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise EndpointError(
            f"endpoint name {name!r} is invalid; use 1-{MAX_NAME} letters, digits and "
            "hyphens, starting and ending with a letter or digit, e.g. 'scones-endpoint'"
        )
    return name


def log_path(settings: Settings, name: str) -> Path:
    return settings.logs_dir / f"{name}.log"


def pid_path(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _db(
    settings: Settings, conn: sqlite3.Connection | None = None
) -> contextlib.AbstractContextManager[sqlite3.Connection]:
    return db.using(settings.db_path, conn)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row_to_endpoint(row: sqlite3.Row) -> Endpoint:
    return Endpoint(
        name=row["name"],
        status=row["status"],
        model=row["model"],
        url=row["url"],
        port=row["port"],
        pid=row["pid"],
        workers=row["workers"],
        capture=parse_capture_config(json.loads(row["capture_config"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def resolve_model(settings: Settings, model: str, workdir: Path) -> Path:
    """A validated model folder for `model`: a training job name, a model.tar.gz or a folder.

    A path that exists wins; otherwise `model` is looked up in `training_jobs` and its
    artifact fetched from `models/<job>/output/model.tar.gz` in the store.
    """
    path = Path(model).expanduser()
    try:
        exists = path.exists()
    except OSError:  # e.g. a name over 255 bytes: no such file, so perhaps a job name
        exists = False
    if exists:
        if workdir.exists():
            shutil.rmtree(workdir)
        return prepare_model_dir(path, workdir)
    with _db(settings) as conn:
        row = conn.execute("SELECT status FROM training_jobs WHERE name = ?", (model,)).fetchone()
    if row is None:
        raise ModelError(
            f"model {model!r} is neither a file, a folder nor a training job in "
            f"{settings.db_path}; pass a training job name (see `sconeflow train`), a "
            "model.tar.gz or a model folder"
        )
    if row["status"] != "Completed":
        raise ModelError(
            f"training job {model!r} is {row['status']}; only a Completed job has a model to deploy"
        )
    key = f"models/{model}/output/model.tar.gz"
    store = open_store(settings)
    try:
        data = store.get(settings.bucket, key)
    except ObjectNotFoundError as err:
        raise ModelError(
            f"training job {model!r} has no artifact at {store.uri(settings.bucket, key)}"
        ) from err
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    tarball = workdir.parent / "model.tar.gz"
    tarball.write_bytes(data)
    return prepare_model_dir(tarball, workdir)


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on `port` now, by binding it as the server will.

    SO_REUSEADDR as the server sets it, so that the TIME_WAIT left by the connections of an
    endpoint just deleted does not count as "in use"; a socket that listens there still
    does, even one with SO_REUSEPORT (this probe does not set it, so it cannot join).
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(port: int | None) -> int:
    if port is not None:
        if not port_is_free(port):
            raise EndpointError(
                f"port {port} on {HOST} is in use; choose another with --port "
                "or leave it out to pick a free one"
            )
        return port
    if port_is_free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def default_name(model: str) -> str:
    base = re.sub(r"[^a-zA-Z0-9]+", "-", Path(model.rstrip("/")).name).strip("-")
    base = base.removesuffix("-tar-gz") or "model"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{base[: MAX_NAME - len(stamp) - 1].strip('-')}-{stamp}"


def deploy(
    settings: Settings,
    model: str,
    capture: CaptureConfig,
    name: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    max_batch: int | None = None,
    wait_seconds: float = 120.0,
) -> Endpoint:
    """Create an endpoint: resolve the model, record the row, start the server, wait for
    /ping. On failure the row is marked Failed and the error carries the log tail."""
    name = validate_name(name or default_name(model))
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise EndpointError(f"workers: {workers} must be at least 1")
    with _db(settings) as conn:
        if conn.execute("SELECT 1 FROM endpoints WHERE name = ?", (name,)).fetchone():
            raise EndpointError(
                f"endpoint {name!r} already exists; delete it first with "
                f"`sconeflow endpoint delete {name}` or choose another --name"
            )
    model_dir = resolve_model(settings, model, settings.home / "endpoints" / name / "model")
    port = _pick_port(port)
    url = f"http://{HOST}:{port}"
    now = _now()
    with _db(settings) as conn:
        conn.execute(
            "INSERT INTO endpoints (name, status, model, url, port, pid, workers, "
            "capture_config, created_at, updated_at) VALUES (?, 'Creating', ?, ?, ?, NULL, ?, "
            "?, ?, ?)",
            (name, model, url, port, workers, json.dumps(capture.to_aws()), now, now),
        )
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-c",
        _ENTRY,
        "--home",
        str(settings.home),
        "--store",
        settings.store_uri,
        "--bucket",
        settings.bucket,
        "serve",
        "--model-dir",
        str(model_dir),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads or default_threads(workers)),
        "--max-batch",
        str(max_batch or DEFAULT_MAX_BATCH),
        "--name",
        name,
        "--capture-config",
        json.dumps(capture.to_aws()),
    ]
    with open(log_path(settings, name), "ab") as log_file:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_path(settings, name).write_text(f"{proc.pid}\n")
    _update(settings, name, pid=proc.pid)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if proc.returncode == 0:  # stopped on purpose while starting: OutOfService
                raise EndpointError(
                    f"endpoint {name!r} was stopped (SIGTERM) while starting; delete it with "
                    f"`sconeflow endpoint delete {name}` and deploy again"
                )
            _update(settings, name, status="Failed")
            raise EndpointError(
                f"endpoint {name!r} exited with status {proc.returncode} while starting"
                f"{_why(log_path(settings, name))}; log {log_path(settings, name)}:\n"
                f"{_tail(log_path(settings, name))}"
            )
        if ping(url):
            _update(settings, name, status="InService")
            return describe_endpoint_row(settings, name)
        time.sleep(0.05)
    _stop_process(proc.pid, name, 5.0)
    _update(settings, name, status="Failed")
    raise EndpointError(
        f"endpoint {name!r} did not answer /ping within {wait_seconds:g} s; "
        f"log:\n{_tail(log_path(settings, name))}"
    )


def ping(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _update(settings: Settings, name: str, **fields: Any) -> None:
    cols = ", ".join(f"{k} = ?" for k in fields)
    with _db(settings) as conn:
        conn.execute(
            f"UPDATE endpoints SET {cols}, updated_at = ? WHERE name = ?",
            (*fields.values(), _now(), name),
        )


def _why(path: Path) -> str:
    """The master's own reason for stopping (`worker N could not start: ...`), if it logged
    one: with several workers, the others' tracebacks can follow it past the log's tail."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        at = line.find("worker ")
        if at >= 0 and "could not start:" in line:
            return ": " + line[at:].split("; stopping")[0]
    return ""


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _alive(pid: int | None, name: str) -> bool:
    """True if `pid` runs and is this endpoint's server (pids get reused)."""
    if pid is None:
        return False
    try:  # reap it if it is our own child that exited (a zombie still answers kill 0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return False
        return state != "Z" and b"serve" in cmdline and name.encode() in cmdline
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def record_stopped(settings: Settings, name: str, pid: int) -> None:
    """The server `pid` of endpoint `name` stopped on purpose: OutOfService, not Failed.
    Leaves the row alone if it belongs to another server or is being deleted."""
    with _db(settings) as conn:
        conn.execute(
            "UPDATE endpoints SET status = 'OutOfService', updated_at = ? WHERE name = ? "
            "AND pid = ? AND status IN ('Creating', 'InService')",
            (_now(), name, pid),
        )


def _stop_process(pid: int, name: str, timeout: float) -> None:
    """SIGTERM (the server finishes requests and flushes capture), then SIGKILL to the
    server's whole process group (the master and its workers)."""
    if not _alive(pid, name):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, name):
            return
        time.sleep(0.05)
    try:
        if os.getpgid(pid) == pid:  # deploy starts it as a group leader
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid, name):
        time.sleep(0.05)


def list_endpoints(
    settings: Settings, *, conn: sqlite3.Connection | None = None
) -> list[Endpoint]:
    """Every endpoint, oldest first, read through `conn` when given (the console's
    per-thread connection), else through a connection opened for this call."""
    with _db(settings, conn) as c:
        rows = c.execute("SELECT * FROM endpoints ORDER BY created_at, name").fetchall()
    return [_live_status(_row_to_endpoint(r)) for r in rows]


def _live_status(ep: Endpoint) -> Endpoint:
    if ep.status == "InService" and not _alive(ep.pid, ep.name):
        return Endpoint(**{**ep.__dict__, "status": "Failed"})
    return ep


def describe_endpoint_row(
    settings: Settings, name: str, *, conn: sqlite3.Connection | None = None
) -> Endpoint:
    """One endpoint (EndpointError when there is none), read as `list_endpoints` reads."""
    with _db(settings, conn) as c:
        row = c.execute("SELECT * FROM endpoints WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise EndpointError(f"endpoint {name!r} not found; see `sconeflow endpoint list`")
    return _live_status(_row_to_endpoint(row))


def delete_endpoint(settings: Settings, name: str, timeout: float = 30.0) -> Endpoint:
    """Stop the server (SIGTERM: it finishes requests and flushes capture; SIGKILL after
    `timeout`), then remove the row, the pid file and the unpacked model. Logs are kept."""
    ep = describe_endpoint_row(settings, name)
    _update(settings, name, status="Deleting")
    if ep.pid is not None:
        _stop_process(ep.pid, name, timeout)
    with _db(settings) as conn:
        conn.execute("DELETE FROM endpoints WHERE name = ?", (name,))
    pid_path(settings, name).unlink(missing_ok=True)
    shutil.rmtree(settings.home / "endpoints" / name, ignore_errors=True)
    return ep
