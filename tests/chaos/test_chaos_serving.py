"""Chaos for the endpoint: real server processes on 127.0.0.1, real signals, real load.

"Acknowledged" for capture (capture.py): a sampled request whose 200 answer the client
received. Its record is in the worker's shared-memory ring before the answer is sent, so
whatever happens to the worker afterwards, the store ends up holding that record, once.
A request whose answer never arrived (its worker was killed mid-flight) may or may not be
captured, and the client retries it under a new id. Each test injects one fault:
- kill -9 of a worker, again and again, under load;
- SIGTERM to the endpoint while a capture object is being written;
- 1,000 connections that send nothing, or headers or a body too slowly.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import selectors
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from test_serving_support import ServerProcess, png_bytes, post, write_model_dir

pytestmark = pytest.mark.slow
CAPTURE_100 = json.dumps(
    {"EnableCapture": True, "InitialSamplingPercentage": 100,
     "DestinationS3Uri": "s3://sconeflow/data_capture"}
)  # fmt: skip


class Load:
    """`clients` threads posting images with unique inference ids until stop(); each
    reconnects now and then (so connections keep spreading over the workers) and after
    any connection error, as a client with retries would."""

    def __init__(self, port: int, clients: int = 8, reconnect_every: int = 20) -> None:
        self.port, self.reconnect_every = port, reconnect_every
        self.answered: set[str] = set()  # ids that got 200
        self.other: list[int] = []  # any other status
        self.errors = 0  # requests whose answer never came
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bodies = [png_bytes(i) for i in range(8)]
        self._threads = [threading.Thread(target=self._run, args=(c,)) for c in range(clients)]
        for t in self._threads:
            t.start()

    def wait_for(self, answered: int, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while len(self.answered) < answered:
            assert time.monotonic() < deadline, f"only {len(self.answered)} answers"
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, client: int) -> None:
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            ident = f"c{client}-{n}"
            n += 1
            try:
                headers = {"Content-Type": "image/png", "X-Amzn-SageMaker-Inference-Id": ident}
                conn.request("POST", "/invocations", self._bodies[n % 8], headers)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                with self._lock:
                    self.errors += 1
                conn.close()
                conn = None
                time.sleep(0.02)
                continue
            with self._lock:
                if resp.status == 200:
                    self.answered.add(ident)
                else:
                    self.other.append(resp.status)
            if n % self.reconnect_every == 0:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _workers(srv: ServerProcess, count: int = 2, seconds: float = 60) -> list[int]:
    """The master's children once there are `count` of them. The children file can miss a
    child while the list changes, and a replacement can be waiting out its back-off, so
    this waits; on timeout the assertion carries the server's log."""
    deadline = time.monotonic() + seconds
    while len(found := _children(srv.proc.pid)) != count:
        assert time.monotonic() < deadline, f"{found} after {seconds} s:\n{srv.log.read_text()}"
        time.sleep(0.02)
    return found


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        found = re.search(rf"^{name}\{{.*\}} (\S+)$", resp.read().decode(), re.M)
    assert found, name
    return float(found.group(1))


def _captured_ids(home: Path, name: str) -> list[str]:
    """inferenceIds of every captured line; every line must be a whole JSON record."""
    root = home / "store" / "sconeflow" / "data_capture" / name / "AllTraffic"
    ids = []
    for path in sorted(root.rglob("*.jsonl")):
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path} ends mid-line"
        for line in data.decode().splitlines():
            ids.append(json.loads(line)["eventMetadata"]["inferenceId"])
    return ids


def test_kill_9_of_workers_under_load_loses_no_acknowledged_record(tmp_path: Path) -> None:
    home = tmp_path / "home"
    srv = ServerProcess(home, write_model_dir(tmp_path / "m"), "--workers", "2", "--threads",
                        "1", "--name", "chaos", "--capture-config", CAPTURE_100,
                        env={"SCONEFLOW_CAPTURE_FLUSH_SECONDS": "0.2"})  # fmt: skip
    load = Load(srv.port)
    kills = 6
    try:
        for kill in range(kills):
            load.wait_for(len(load.answered) + 100)  # serving, on both workers by now
            victim = _workers(srv)[kill % 2]
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while victim in _workers(srv):
                assert time.monotonic() < deadline, f"no replacement:\n{srv.log.read_text()}"
                time.sleep(0.02)
        load.wait_for(len(load.answered) + 200)  # still answering after the last kill
        assert _metric(srv.url, "WorkerRestarts_total") == kills
    finally:
        load.stop()
        assert srv.stop() == 0  # the master survived every kill and stops cleanly
    assert load.other == []  # no 5xx, no 4xx: a kill costs connections, not wrong answers
    # Each kill costs the victim's connections in flight, and those the kernel had queued
    # for it before the master closed its socket: a few per client, never more.
    assert load.errors <= kills * 8 * 2
    ids = _captured_ids(home, "chaos")
    assert len(ids) == len(set(ids)), "a record was stored twice"
    missing = load.answered - set(ids)
    assert not missing, f"{len(missing)} answered requests were not captured"
    assert len(set(ids) - load.answered) <= load.errors  # processed, answer lost in the kill
    log = srv.log.read_text()
    assert log.count("was killed by SIGKILL") == kills and "could not start" not in log


def test_sigterm_while_capture_is_being_written_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    srv = ServerProcess(home, write_model_dir(tmp_path / "m"), "--workers", "2", "--threads",
                        "1", "--name", "flush", "--capture-config", CAPTURE_100,
                        env={"SCONEFLOW_CAPTURE_FLUSH_SECONDS": "0.02"})  # fmt: skip
    load = Load(srv.port, reconnect_every=1000)
    parts = home / "store" / ".tmp"  # LocalStore writes each object there, then renames it
    parts.mkdir(parents=True, exist_ok=True)
    try:
        load.wait_for(300)
        deadline = time.monotonic() + 30
        while True:  # SIGTERM the moment an object is half-written
            assert time.monotonic() < deadline, "never caught a capture object being written"
            with os.scandir(parts) as entries:
                if any(e.name.endswith(".part") for e in entries):
                    srv.proc.send_signal(signal.SIGTERM)
                    break
        assert srv.proc.wait(60) == 0
    finally:
        load.stop()
        srv.stop()
    ids = _captured_ids(home, "flush")
    assert len(ids) == len(set(ids))
    missing = load.answered - set(ids)
    assert not missing, f"{len(missing)} of {len(load.answered)} answered requests lost"
    assert not [p for p in parts.iterdir() if p.name.endswith(".part")]
    assert load.other == [] and "Traceback" not in srv.log.read_text()


def test_1000_slow_connections_are_closed_and_others_still_served(tmp_path: Path) -> None:
    env = {"SCONEFLOW_READ_TIMEOUT": "2", "SCONEFLOW_KEEP_ALIVE_TIMEOUT": "2"}
    srv = ServerProcess(tmp_path / "home", write_model_dir(tmp_path / "m"), "--workers", "2",
                        env=env)  # fmt: skip
    openers = [
        b"",  # connects and sends nothing
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n",  # headers...
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Content-Length: 6291456\r\n\r\n\x89PNG",  # ...or a body, a byte at a time
    ]
    trickles = [b"", b"X-Slow: 1\r\n", b"\0"]
    sel = selectors.DefaultSelector()
    answers: dict[socket.socket, bytes] = {}
    try:
        for i in range(1000):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            sock.sendall(openers[i % 3])
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, i % 3)
            answers[sock] = b""
        # Meanwhile, ordinary requests are answered as usual.
        assert [post(srv.url, png_bytes(i))[0] for i in range(30)] == [200] * 30
        closed: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
        deadline = time.monotonic() + 60
        next_trickle = 0.0
        while sel.get_map():
            assert time.monotonic() < deadline, f"{len(sel.get_map())} slow connections open"
            if time.monotonic() >= next_trickle:
                next_trickle = time.monotonic() + 0.5
                for key in list(sel.get_map().values()):
                    if trickles[key.data]:  # a send to a closed socket: the read says so
                        with contextlib.suppress(OSError):
                            key.fileobj.send(trickles[key.data])  # type: ignore[union-attr]
            for key, _ in sel.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if data:
                    answers[sock] += data
                    continue
                closed[key.data].append(answers[sock])
                sel.unregister(sock)
                sock.close()
        assert post(srv.url, png_bytes(99))[0] == 200
        timeouts = _metric(srv.url, "RequestReadTimeouts_total")
    finally:
        for sock in answers:
            sock.close()
        assert srv.stop() == 0
    assert all(a == b"" for a in closed[0])  # idle: closed without a word
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in closed[1])  # slow headers
    # Slow bodies: 408 once the worker reads them, or 503 when they waited their read
    # timeout for room in the body budget, held by other slow bodies (or an RST, if the
    # close came while our trickled bytes were unread).
    assert all(a[:13] in (b"HTTP/1.1 408 ", b"HTTP/1.1 503 ", b"") for a in closed[2])
    assert sum(a.startswith(b"HTTP/1.1 408 ") for a in closed[2]) >= 8  # the budget's worth
    assert timeouts >= len(closed[1])
