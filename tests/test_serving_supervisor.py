"""The master and its workers, with real processes and real signals: a model that cannot
load stops the endpoint with the reason; a killed worker is replaced (with back-off when
it keeps dying) while the other serves; SIGTERM stops cleanly; workers die with a master
that is killed outright."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_serving_support import ServerProcess, free_port, png_bytes, write_model_dir

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_for(predicate: object, seconds: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        found = re.search(rf"^{name}\{{.*\}} (\S+)$", resp.read().decode(), re.M)
    assert found, name
    return float(found.group(1))


def invoke(port: int, attempts: int = 5) -> int:
    """POST one image as a client with retries would (a connection the kernel had queued
    for a killed worker is reset)."""
    for attempt in range(attempts):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/invocations", png_bytes(attempt), {"Content-Type": "image/png"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except (ConnectionError, http.client.HTTPException):
            time.sleep(0.1)
        finally:
            conn.close()
    raise AssertionError(f"no answer in {attempts} attempts")


def test_a_model_that_cannot_load_stops_the_endpoint_and_says_why(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "m")
    (model / "model.onnx").write_bytes(b"not onnx")  # model.json is fine: only workers see it
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from sconeflow.cli import main; main()",
         "--home", str(tmp_path / "home"), "serve", "--model-dir", str(model),
         "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("EndpointError: worker ") and "could not start: ModelError" in last
    assert "cannot be loaded" in last and "restarting" not in proc.stderr


def test_killed_workers_are_replaced_with_back_off_while_the_other_serves(
    tmp_path: Path,
) -> None:
    model = write_model_dir(tmp_path / "m")
    srv = ServerProcess(tmp_path / "home", model, "--workers", "2", "--threads", "1")
    try:
        wait_for(lambda: len(children(srv.proc.pid)) == 2, what="two workers")
        victim, other = children(srv.proc.pid)
        for kill in range(1, 4):  # the same slot, each replacement killed soon after it starts
            os.kill(victim, signal.SIGKILL)
            # Meanwhile the endpoint answers (the other worker, or the replacement).
            assert [invoke(srv.port) for _ in range(10)] == [200] * 10
            wait_for(lambda: len(children(srv.proc.pid)) == 2, what="a replacement")
            (victim,) = set(children(srv.proc.pid)) - {other}
            wait_for(lambda k=kill: metric(srv.url, "WorkerRestarts_total") == k, what="count")
            wait_for(lambda: b"Healthy" in urllib.request.urlopen(f"{srv.url}/ping").read())
        assert srv.proc.poll() is None  # the master kept the endpoint up
        assert metric(srv.url, "Invocations_total") >= 30
    finally:
        assert srv.stop() == 0
    log = srv.log.read_text()
    delays = re.findall(r"killed by SIGKILL after [\d.]+ s; starting another in ([\d.]+) s", log)
    assert delays == ["0.5", "1.0", "2.0"]  # short-lived workers: exponential back-off


def test_sigterm_stops_cleanly_and_workers_die_with_a_killed_master(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "m")
    srv = ServerProcess(tmp_path / "home", model, "--workers", "2")
    wait_for(lambda: len(children(srv.proc.pid)) == 2, what="two workers")
    assert srv.stop() == 0 and "Traceback" not in srv.log.read_text()

    srv = ServerProcess(tmp_path / "home2", model, "--workers", "2")
    wait_for(lambda: len(children(srv.proc.pid)) == 2, what="two workers")
    workers = children(srv.proc.pid)
    srv.proc.kill()
    srv.proc.wait(10)

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_for(lambda: all(gone(w) for w in workers), what="the workers to exit")
    with pytest.raises(OSError):  # nobody serves the port any more
        http.client.HTTPConnection("127.0.0.1", srv.port, timeout=2).request("GET", "/ping")
