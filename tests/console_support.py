"""Start the console as a real process on 127.0.0.1 for tests, and boto3 clients for it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from conftest import free_port

# TestState and StartSyncExecution carry endpoint.hostPrefix "sync-" in botocore's model;
# a local endpoint_url has no sync-<host> to resolve, so clients leave the prefix out.
CLIENT_CONFIG = Config(inject_host_prefix=False, max_pool_connections=32,
                       retries={"mode": "standard", "max_attempts": 1})


def start_console(home: Path, *args: str, port: int | None = None,
                  log: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """`sconeflow --home HOME console --port P ARGS...`; returns (process, base URL) once
    it answers."""
    port = port or free_port()
    err = open(log or home.parent / f"console-{port}.log", "a")  # noqa: SIM115 (kept open)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sconeflow", "--home", str(home), "console", "--port", str(port),
         *args], stdout=subprocess.PIPE, stderr=err, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("sconeflow console: "), first
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/", timeout=2):
                return proc, url
        except urllib.error.HTTPError:
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the console never answered")


def stop_console(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client(url: str, service: str = "stepfunctions", key: str = "testing") -> Any:
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key="testing",
                        config=CLIENT_CONFIG)  # fmt: skip
