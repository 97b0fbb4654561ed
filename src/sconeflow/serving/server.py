"""Run a model server: a pre-fork master (supervisor.py) with N worker processes.

Stack: uvicorn with httptools (HTTP parsing in C) and uvloop (libuv event loop) under the
bare ASGI app of app.py. This was chosen for per-request cost: it keeps HTTP handling at a
few tens of microseconds per request, next to 0.1-0.3 ms of model time, while uvicorn
supplies the parts that are easy to get wrong (keep-alive, pipelining, graceful shutdown
on SIGTERM, lifespan). connections.py adds the deadlines uvicorn lacks for slow clients.
With one onnxruntime thread per worker (the default) the model runs on the worker's
event loop thread between I/O passes; with more, on a batcher thread of its own
(inference.py explains the choice).

Workers (SAGEMAKER_MODEL_SERVER_WORKERS): the master binds one listening socket per worker
with SO_REUSEPORT, so the kernel spreads new connections evenly over the workers. One
socket shared by all workers was tried first and is unfair: when wrk opened 64 keep-alive
connections at once, the worker that happened to be waiting in accept took every one of
them, and the other worker sat idle for the whole run (1,374 req/s instead of ~2,500). A
port that any SO_REUSEPORT socket may join could let a second endpoint silently share it,
so the master first binds the port exclusively (no SO_REUSEPORT) to prove it is free, then
replaces that probe with the workers' sockets. Workers load the model after the fork (no
onnxruntime threads cross a fork). Even one worker runs under the master, so that an
endpoint outlives its workers: supervisor.py says how a dead worker is told from a broken
model, and how the master stops on SIGTERM. Before forking, the master also maps the
shared memory the workers write into: the metrics table and one capture ring per worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sconeflow.config import ServingSettings, Settings
from sconeflow.errors import EndpointError
from sconeflow.serving.capture import CaptureConfig, CaptureWriter
from sconeflow.serving.inference import Predictor
from sconeflow.serving.metrics import SharedMetrics
from sconeflow.serving.model import read_meta
from sconeflow.serving.spool import Ring, make_rings
from sconeflow.serving.supervisor import EXIT_START_FAILED, supervise

log = logging.getLogger("sconeflow.serving")


def default_threads(workers: int) -> int:
    """onnxruntime threads per worker so that the workers together use every core.

    The default is one worker per core with one thread each. Measured on the 2-core machine
    with the trained model at concurrency 64, side by side in alternation: 1 worker x 2
    threads 1,920-2,280 req/s, 2 workers x 1 thread 2,420-2,600. One thread per session
    avoids intra-op synchronisation, and this small net is as fast per image at batch 1 as
    at batch 64 (543 vs 576 us on one thread), so splitting the load costs no batching gain.
    """
    return max(1, (os.cpu_count() or 1) // max(1, workers))


# The most images one onnxruntime call takes. Small on purpose: measured on the 2-core
# machine with the trained model, one 1-thread session per core runs 3,950-4,150 img/s at
# batch 4-8 but 3,640-3,680 at batch 64 (a batch of 8 keeps the activations in the core's
# L2 cache), and the endpoint at concurrency 64 served 3,070-3,190 req/s with batches of
# at most 8 against 2,920-3,020 with 64, in alternating runs. Larger models may want more:
# `--max-batch`.
DEFAULT_MAX_BATCH = 8


@dataclass(frozen=True)
class ServerSpec:
    """Everything one server needs, built at the edge (CLI) and passed down."""

    model_dir: Path
    serving: ServingSettings
    host: str = "127.0.0.1"
    name: str | None = None  # endpoint name; None answers any /endpoints/{name}/...
    capture: CaptureConfig | None = None
    settings: Settings | None = None  # where capture goes (the store); needed with capture
    threads: int = 1  # onnxruntime intra-op threads per worker
    max_batch: int = DEFAULT_MAX_BATCH
    capture_flush_records: int = 1000


def _listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise EndpointError(
            f"cannot listen on {host}:{port}: {err.strerror}; choose another port "
            "(--port, or SAGEMAKER_BIND_TO_PORT for `serve`)"
        ) from err
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def bind_sockets(host: str, port: int, count: int = 1) -> list[socket.socket]:
    """Listening sockets on one port, one per worker; workers inherit theirs (module doc)."""
    if count == 1:
        return [_listen(host, port, reuse_port=False)]
    if port != 0:
        _listen(host, port, reuse_port=False).close()  # fails if anyone holds the port
    first = _listen(host, port, reuse_port=True)
    port = first.getsockname()[1]  # the kernel's choice when port was 0
    socks = [first]
    try:
        socks += [_listen(host, port, reuse_port=True) for _ in range(count - 1)]
    except EndpointError:
        for sock in socks:
            sock.close()
        raise
    return socks


def run_server(spec: ServerSpec, ready: Callable[[int], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT and return 0; `ready(port)` runs once bound. Raises
    EndpointError when the workers cannot start (a model that does not load)."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    meta = read_meta(spec.model_dir)  # fail before binding if the model folder is wrong
    capture_on = spec.capture is not None and spec.capture.enabled
    if capture_on and spec.settings is None:
        raise EndpointError("data capture needs the workspace settings (store) to write to")
    workers = spec.serving.workers
    socks = bind_sockets(spec.host, spec.serving.port, workers)
    port = socks[0].getsockname()[1]
    rings = make_rings(workers, spec.serving.capture_buffer_bytes) if capture_on else []
    metrics = SharedMetrics(workers, spec.name or "local", rings=rings)
    log.info(
        "endpoint %s: model %s (%d classes) on http://%s:%d with %d worker(s)",
        spec.name or "-",
        spec.model_dir,
        len(meta.classes),
        spec.host,
        port,
        workers,
    )
    if ready is not None:
        ready(port)

    def work(row: int, sock: socket.socket, report: Callable[[str], None]) -> int:
        return _serve_worker(spec, sock, metrics, row, rings[row] if rings else None, report)

    def rebind() -> socket.socket:
        return _listen(spec.host, port, reuse_port=True)

    return supervise(socks, work, rebind if workers > 1 else None, metrics.restart)


def _serve_worker(
    spec: ServerSpec,
    sock: socket.socket,
    metrics: SharedMetrics,
    row: int,
    ring: Ring | None,
    report: Callable[[str], None],
) -> int:
    """One worker: load the model, serve until SIGTERM, write capture; its exit status."""
    import uvicorn

    from sconeflow.serving.app import App
    from sconeflow.serving.connections import Deadlines, guarded_protocol

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                report("ready")  # the master now knows a later death is not a bad model

    metrics.row = row
    capture = None
    try:
        if ring is not None and spec.capture is not None and spec.settings is not None:
            from sconeflow.store import open_store  # after the fork: boto3 clients don't fork

            capture = CaptureWriter(
                spec.capture,
                open_store(spec.settings),
                spec.name or "local",
                flush_records=spec.capture_flush_records,
                flush_seconds=spec.serving.capture_flush_s,
                ring=ring,
            )
    except Exception as err:
        log.exception("data capture cannot start")
        report(f"fail data capture cannot start: {type(err).__name__}: {err}")
        return EXIT_START_FAILED
    deadlines = Deadlines(min(1.0, spec.serving.read_timeout_s / 4))
    app = App(
        load=lambda: Predictor(spec.model_dir, threads=spec.threads),
        serving=spec.serving,
        metrics=metrics,
        endpoint=spec.name,
        capture=capture,
        max_batch=spec.max_batch,
    )
    config = uvicorn.Config(
        app,
        loop=_available("uvloop", "asyncio"),
        http=guarded_protocol(spec.serving.read_timeout_s, deadlines, metrics.read_timeout),
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,  # no proxy in front: skip the X-Forwarded-* middleware per request
        timeout_keep_alive=spec.serving.keep_alive_s,  # type: ignore[arg-type]  # float works
        timeout_graceful_shutdown=25,  # SageMaker sends SIGKILL 30 s after SIGTERM
    )
    server = Server(config)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the
    # previous handler: make that a clean exit rather than death by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass  # our SIGTERM handler, or uvicorn's exit when the lifespan startup failed
    finally:
        app.shutdown()  # idempotent: writes capture even if lifespan shutdown did not run
    if not server.started and app.startup_error is not None:
        report(f"fail {app.startup_error}")
        return EXIT_START_FAILED
    return 0


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _available(module: str, fallback: str) -> str:
    import importlib.util

    return module if importlib.util.find_spec(module) is not None else fallback
