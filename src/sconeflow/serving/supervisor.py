"""The master of a pre-fork server: start the workers, replace the ones that die, stop on
SIGTERM. It never loads the model (no onnxruntime threads cross a fork) and runs no thread.

How a worker's end is read (each worker reports over a pipe: "ready" once its model is
loaded and it is listening, or "fail <reason>" when it cannot start):
- **It could not start** (said "fail", exit status 3) and it was one of the first
  workers: the model or the configuration is wrong, and a new worker would fail the same
  way. The master stops the endpoint and raises EndpointError with the worker's reason.
- **It was killed by a signal, or crashed, at any other time** (the OOM killer, kill -9, a
  segfault, a replacement that failed to start): the master starts a replacement in the
  same slot, and the other workers keep serving meanwhile. WorkerRestarts counts them.
  A slot whose workers keep dying is restarted with exponential back-off (0.5 s doubling
  to 30 s) so that a crash loop cannot eat the machine; a worker that served for
  HEALTHY_S seconds resets it. While a slot waits, its listening socket is closed (when
  another worker is serving), so the kernel gives new connections to the live workers
  instead of queueing them for a worker that is not there; the replacement binds again.
  The first replacement after a healthy run starts at once and keeps the socket, so the
  connections already queued on it wait a moment instead of being reset.
- **It was asked to stop** (SIGTERM or SIGINT to the master, forwarded to every worker):
  each worker finishes its requests, writes its captured records and exits; workers still
  alive after STOP_GRACE_S are killed. `supervise` then returns 0.
Workers die with the master (PR_SET_PDEATHSIG: SIGTERM), so a master killed outright does
not leave them serving a port that no one supervises.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sconeflow.errors import EndpointError

log = logging.getLogger("sconeflow.serving")

EXIT_START_FAILED = 3  # a worker that could not load its model (uvicorn's STARTUP_FAILURE)
HEALTHY_S = 10.0  # a worker that lived this long resets its slot's back-off
BACKOFF_S = (0.5, 30.0)  # first and longest delay before restarting a failing slot
STOP_GRACE_S = 30.0  # SageMaker sends SIGKILL 30 s after SIGTERM; so do we, to our workers

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
# work(row, socket, report) runs in the worker and returns its exit status; it calls
# report("ready") once serving, or report("fail <reason>") before returning
# EXIT_START_FAILED.
Work = Callable[[int, socket.socket, Callable[[str], None]], int]


@dataclass
class _Slot:
    row: int
    sock: socket.socket | None
    pid: int = 0
    pipe: int = -1
    started: float = 0.0
    ready: bool = False
    reason: str = ""
    termed: bool = False  # SIGTERM sent to this worker
    first: bool = True  # the slot's first worker (a failure to start stops the endpoint)
    failures: int = 0  # consecutive short-lived workers
    due: float | None = None  # when to start the replacement


def supervise(
    socks: list[socket.socket],
    work: Work,
    rebind: Callable[[], socket.socket] | None,
    on_restart: Callable[[], None],
) -> int:
    """Run one worker per socket until SIGTERM/SIGINT (returns 0); raises EndpointError
    when a first worker cannot start. `rebind()` makes a new socket in the port's group
    (None: a slot's socket is never closed, as with a single worker)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    slots = [_Slot(row, sock) for row, sock in enumerate(socks)]
    state = {"stopping": False, "deadline": 0.0}
    failure: list[str] = []

    def stop(signum: int, _frame: object) -> None:
        # Only flags: the loop forwards SIGTERM (a handler may run in the middle of spawn).
        if not state["stopping"]:
            log.info("stopping: %s, forwarded to the workers", signal.Signals(signum).name)
            state["stopping"], state["deadline"] = True, time.monotonic() + STOP_GRACE_S

    def spawn(slot: _Slot) -> None:
        slot.due = None
        if slot.sock is None:
            try:
                slot.sock = rebind() if rebind is not None else None
            except EndpointError as err:
                log.error("worker %d: %s; trying again", slot.row, err)
                slot.due = time.monotonic() + BACKOFF_S[1]
                return
        assert slot.sock is not None
        # Blocked across the fork: the master's handlers must never run in a new worker.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pipe_r, pipe_w = os.pipe()
            pid = os.fork()
        except OSError as err:  # out of processes or memory: try again later
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            log.error("worker %d: cannot start a process (%s); trying again", slot.row, err)
            slot.due = time.monotonic() + BACKOFF_S[1]
            return
        if pid == 0:  # the worker
            status = 1
            try:
                os.close(pipe_r)
                _become_worker([wake_r, wake_w, *(s.pipe for s in slots if s.pipe >= 0)],
                               [s.sock for s in slots if s is not slot])  # fmt: skip
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                status = work(slot.row, slot.sock, _reporter(pipe_w))
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                log.exception("worker %d failed", slot.row)
            finally:
                logging.shutdown()
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        os.close(pipe_w)
        os.set_blocking(pipe_r, False)
        slot.pid, slot.pipe, slot.started, slot.ready, slot.reason, slot.termed = (
            pid, pipe_r, time.monotonic(), False, "", False)  # fmt: skip

    def ended(slot: _Slot, status: int) -> None:
        _read_reports(slot)
        if slot.pipe >= 0:
            os.close(slot.pipe)
        code = os.waitstatus_to_exitcode(status)
        lived = time.monotonic() - slot.started
        pid, slot.pid, slot.pipe = slot.pid, 0, -1
        if state["stopping"]:
            return
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
        if code == EXIT_START_FAILED and not slot.ready and slot.first:
            failure.append(f"worker {slot.row} could not start: {slot.reason or 'see the log'}")
            log.error("%s; stopping the endpoint", failure[-1])
            stop(signal.SIGTERM, None)
            return
        on_restart()
        slot.first = False
        slot.failures = 0 if slot.ready and lived >= HEALTHY_S else slot.failures + 1
        first, longest = BACKOFF_S
        delay = min(longest, first * 2 ** (slot.failures - 1)) if slot.failures else 0.0
        if slot.reason:
            how += f" ({slot.reason})"
        log.warning("worker %d (pid %d) %s after %.1f s; starting another in %.1f s",
                    slot.row, pid, how, lived, delay)  # fmt: skip
        slot.ready = False
        if delay and rebind is not None and any(s.ready for s in slots) and slot.sock is not None:
            slot.sock.close()  # new connections go to the live workers meanwhile
            slot.sock = None
        slot.due = time.monotonic() + delay

    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the loop (wakeup fd)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for slot in slots:
            spawn(slot)
        while True:
            now = time.monotonic()
            if state["stopping"]:
                if not any(s.pid for s in slots):
                    break
                late = now > state["deadline"]
                for slot in slots:
                    if slot.pid and (late or not slot.termed):
                        slot.termed = True
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(slot.pid, signal.SIGKILL if late else signal.SIGTERM)
            dues = [s.due for s in slots if s.due is not None and not state["stopping"]]
            waits = [d - now for d in dues]
            if state["stopping"]:
                waits.append(max(0.5, state["deadline"] - now))
            timeout = max(0.0, min(waits)) if waits else None
            fds = [wake_r] + [s.pipe for s in slots if s.pipe >= 0]
            readable, _, _ = select.select(fds, [], [], timeout)
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            for slot in slots:
                if slot.pipe in readable:
                    _read_reports(slot)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                for slot in slots:
                    if slot.pid == pid:
                        ended(slot, status)
            now = time.monotonic()
            for slot in slots:
                if slot.due is not None and slot.due <= now and not state["stopping"]:
                    spawn(slot)
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (wake_r, wake_w):
            os.close(fd)
        for slot in slots:
            if slot.sock is not None:
                slot.sock.close()
    if failure:
        raise EndpointError(f"{failure[0]}; fix it and start the endpoint again")
    return 0


def _read_reports(slot: _Slot) -> None:
    """Take the worker's reports from its pipe (ready, or why it failed)."""
    if slot.pipe < 0:
        return
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(slot.pipe, 4096):
            data += chunk
    for line in data.decode("utf-8", "replace").splitlines():
        if line == "ready":
            slot.ready = True
        elif line.startswith("fail "):
            slot.reason = line[5:].rstrip(". ")


def _reporter(fd: int) -> Callable[[str], None]:
    def report(message: str) -> None:
        with contextlib.suppress(OSError):
            os.write(fd, (message.replace("\n", " ")[:4000] + "\n").encode())

    return report


def _become_worker(fds: list[int], others: list[socket.socket | None]) -> None:
    """In a new worker: drop the master's signal plumbing, its pipes and the other workers'
    sockets (so that closing a socket in the master takes it out of the port's group),
    and ask the kernel for SIGTERM when the master dies."""
    master = os.getppid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the master
    for fd in fds:
        os.close(fd)
    for sock in others:
        if sock is not None:
            sock.close()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != master:  # it died before prctl took effect
        raise SystemExit(0)


def _exit_cleanly(signum: int, _frame: object) -> None:
    raise SystemExit(0)
