"""Executions run inside the console: a bounded pool of threads, one WorkflowRunner per
state machine revision, and the handler table each definition needs.

StartExecution records the RUNNING row at once (so a bad name or ExecutionAlreadyExists is
answered in the call), then the execution runs on the pool; its history is written to the
workspace db event by event (records.HistoryWriter), so a console killed mid-run leaves a
true record that the next start ends ABORTED (records.recover_orphans) and that redrives.

Each thread here (the server's request threads, the pool's) has one db connection of its
own (`connection`, a db.ThreadConnections), shared by the APIs (Step Functions and
SageMaker, InvokeEndpoint's lookup), the pages, the metrics sampler and every runner, and
kept open while the console runs: opening one per request, or per state machine, cost more
than a short execution.

Task resources resolve as `sconeflow workflow run` resolves them: by function name to the
workspace's own handlers (sconeflow.functions), with the endpoint in service looked up
when classifyImage is called; `handlers` (the console's `--handlers`) adds or replaces
handlers by name, e.g. trivial ones for a benchmark.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import SconeflowError
from sconeflow.executions import records, runner
from sconeflow.executions.definitions import Definition
from sconeflow.executions.records import ExecutionRecord
from sconeflow.functions import FUNCTION_MODULES, Handler
from sconeflow.functions.config import DEFAULT_THRESHOLD

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 64  # executions running at once; more wait, RUNNING, for a thread
_WORKSPACE_TTL = 2.0  # seconds the workspace handler table (and its endpoint) is reused


class Executor:
    """Runs executions on a pool and keeps track of those running here."""

    def __init__(
        self,
        settings: Settings,
        *,
        handlers: Mapping[str, Handler] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.settings, self.threshold = settings, threshold
        self.extra = dict(handlers or {})
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="execution")
        self._runners: dict[tuple[str, str], runner.WorkflowRunner] = {}
        self._running: dict[str, runner.WorkflowRunner] = {}  # ARN -> its runner
        self._done: dict[str, threading.Event] = {}
        self._queued: set[str] = set()  # submitted, not yet on a thread
        self._lock = threading.Lock()
        self._table: dict[str, Handler] | None = None
        self._table_until = 0.0
        self._closed = False
        self.connections = db.ThreadConnections(settings.db_path)
        self.recovered = records.recover_orphans(self.connection())

    def connection(self) -> sqlite3.Connection:
        """The calling thread's db connection (opened on first use, closed by `close`)."""
        return self.connections.get()

    # --- handlers -------------------------------------------------------------------------

    def handlers_for(self, function_names: frozenset[str]) -> dict[str, Handler]:
        """A handler for every function a definition calls (see the module docstring)."""
        table: dict[str, Handler] = {}
        for name in function_names:
            if name in self.extra:
                table[name] = self.extra[name]
            elif name in FUNCTION_MODULES:
                table[name] = self._workspace_handler(name)
            else:
                table[name] = _not_found(name)
        return table

    def _workspace_handler(self, name: str) -> Handler:
        def handler(event: Any, context: Any) -> Any:
            return self._workspace_table()[name](event, context)

        return handler

    def _workspace_table(self) -> dict[str, Handler]:
        """The workspace's handlers, rebuilt every few seconds so that an endpoint deployed
        (or deleted) while the console runs is found; without one, classifyImage fails
        with the EndpointError that says how to deploy one."""
        now = time.monotonic()
        with self._lock:
            if self._table is not None and now < self._table_until:
                return self._table
        try:
            table = runner.local_handlers(self.settings, threshold=self.threshold)
        except SconeflowError as err:
            table = runner.local_handlers(self.settings, threshold=self.threshold,
                                          functions=frozenset())  # fmt: skip
            table["classifyImage"] = _raising(err)
        with self._lock:
            self._table, self._table_until = table, now + _WORKSPACE_TTL
        return table

    # --- runners --------------------------------------------------------------------------

    def runner_for(self, name: str, definition: str) -> runner.WorkflowRunner:
        """The runner of one revision of a state machine (parsed once, reused)."""
        key = (name, definition)
        with self._lock:
            found = self._runners.get(key)
        if found is not None:
            return found
        from sconeflow.workflow import parse_definition

        machine = parse_definition(definition, name=name)
        made = runner.WorkflowRunner(
            self.settings, Definition(name, definition, f"state machine {name}"),
            self.handlers_for(machine.function_names), machine=machine, threshold=self.threshold,
            connect=self.connection, recover=False,  # recovered at start, and by readers
        )  # fmt: skip
        with self._lock:
            if len(self._runners) > 256:  # old revisions: drop them, running ones keep theirs
                self._runners.clear()
            return self._runners.setdefault(key, made)

    # --- running --------------------------------------------------------------------------

    def submit(self, arn: str, owner: runner.WorkflowRunner,
               work: Callable[[], ExecutionRecord]) -> None:  # fmt: skip
        """Run `work` (an execution already recorded RUNNING) on the pool."""
        done = threading.Event()
        with self._lock:
            self._running[arn], self._done[arn] = owner, done
            self._queued.add(arn)

        def job() -> None:
            with self._lock:
                cancelled = arn not in self._queued
                self._queued.discard(arn)
            try:
                if not cancelled:
                    work()
            except Exception:
                log.exception("execution %s broke; it is recorded ABORTED", arn)
            finally:
                with self._lock:
                    self._running.pop(arn, None)
                    self._done.pop(arn, None)
                done.set()

        self.pool.submit(job)

    def start(self, owner: runner.WorkflowRunner, data: Any, name: str | None) -> str:
        """StartExecution: record the execution and run it on the pool; its ARN."""
        arn, name = owner.create(data, name or str(uuid.uuid4()))
        self.submit(arn, owner, lambda: owner.run_created(arn, data, name))
        return arn

    def stop(self, arn: str, *, error: str | None, cause: str | None, wait: float = 5.0) -> None:
        """StopExecution: the execution ends ABORTED with `error` and `cause` before its next
        state, whichever process runs it; waits up to `wait` s for it to end."""
        conn = self.connection()
        with self._lock:
            queued = arn in self._queued
            self._queued.discard(arn)
            owner, done = self._running.get(arn), self._done.get(arn)
        if queued:  # never started: nothing to interrupt, the record says ABORTED
            records.abort_execution(conn, arn, cause, error=error)
            return
        # Through the row as well as directly: it reaches an owner in another process,
        # and this one in the moment before its execution registered its stop signal.
        records.request_stop(conn, arn, error=error, cause=cause)
        if owner is not None:
            owner.stop_execution(arn, error=error, cause=cause)
        if done is not None:
            done.wait(wait)
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            records.recover_orphans(conn)
            if records.read_record(conn, arn).status != "RUNNING":
                return
            time.sleep(0.05)

    def redrive(self, arn: str, definition: str, name: str) -> None:
        """RedriveExecution: reopen the execution now, run it from where it failed on the pool."""
        from sconeflow.workflow import parse_definition

        machine = parse_definition(definition, name=name)
        plan = runner.begin_redrive(self.settings, arn, self.handlers_for(machine.function_names))
        self.submit(arn, plan.runner, plan.run)

    def run_sync(
        self, owner: runner.WorkflowRunner, data: Any, name: str | None
    ) -> ExecutionRecord:
        """StartSyncExecution: run to the end in the caller's thread."""
        arn, name = owner.create(data, name or str(uuid.uuid4()))
        done = threading.Event()
        with self._lock:
            self._running[arn], self._done[arn] = owner, done
        try:
            return owner.run_created(arn, data, name)
        finally:
            with self._lock:
                self._running.pop(arn, None)
                self._done.pop(arn, None)
            done.set()

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def close(self, wait: float = 10.0) -> None:
        """Stop every execution running here (ABORTED, redrivable) and end the pool."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            owners = {id(r): r for r in self._running.values()}.values()
            queued, self._queued = set(self._queued), set()
            done = list(self._done.values())
        for owner in owners:
            owner.stop_all()
        conn = self.connection()
        for arn in queued:
            records.abort_execution(conn, arn, "the console stopped before the execution "
                                    "started; redrive it to run it")  # fmt: skip
        deadline = time.monotonic() + wait
        ended = [event.wait(max(0.0, deadline - time.monotonic())) for event in done]
        self.pool.shutdown(wait=False, cancel_futures=True)
        if all(ended):  # else an execution may still write through its connection
            self.connections.close()


def _not_found(name: str) -> Handler:
    """What Lambda answers for a function that does not exist."""
    from sconeflow.workflow.errors import StatesFailure

    def handler(event: Any, context: Any) -> Any:
        arn = getattr(context, "invoked_function_arn", name)
        raise StatesFailure(
            "Lambda.ResourceNotFoundException",
            f"Function not found: {arn} (Service: AWSLambda; Status Code: 404; Error Code: "
            "ResourceNotFoundException); the console knows "
            f"{', '.join(sorted(FUNCTION_MODULES))} and those given with --handlers",
        )

    return handler


def _raising(err: Exception) -> Handler:
    def handler(event: Any, context: Any) -> Any:
        raise err

    return handler
