"""Running executions: start (StartExecution and wait), stream many, redrive a failed one.

Each execution is recorded as it runs, event by event, through records.py, so an execution
that is interrupted (Ctrl-C, a crash) leaves a true record of how far it got.
RedriveExecution keeps the ARN, continues the history after an `ExecutionRedriven` event
and runs again from the top-level state that failed; from a Distributed Map, it redrives
the Map Run that state started (mapruns.py), so that only its unsuccessful children run.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import EndpointError, WorkflowError
from sconeflow.executions import records
from sconeflow.executions.definitions import Definition
from sconeflow.executions.mapruns import failed_state, prior_map_run
from sconeflow.executions.notify import Notifier
from sconeflow.executions.records import FAILED_STATUSES, ExecutionRecord, HistoryWriter
from sconeflow.functions import FunctionConfig, Handler, make_handlers
from sconeflow.functions.config import DEFAULT_THRESHOLD
from sconeflow.workflow.run import STOPPED_CAUSE

if TYPE_CHECKING:
    from sconeflow.workflow import PriorMapRun, StateMachine

# StartExecution's (and CreateStateMachine's) name rule: 1-80 characters, none of
# whitespace, brackets, wildcards, these specials or control characters.
_BAD_NAME = re.compile(r'[\s<>{}\[\]?*"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]')


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid execution or state machine name, or None if it is."""
    if not 1 <= len(name) <= 80:
        return f"name {name!r} must have 1 to 80 characters"
    bad = _BAD_NAME.search(name)
    if bad:
        return (f"name {name!r} contains {bad.group()!r}; names may not contain whitespace, "
                "brackets, wildcards, control characters or any of \" # % \\ ^ | ~ ` $ & , ; : /")
    return None


def resolve_endpoint(settings: Settings, name: str | None = None) -> tuple[str, str]:
    """(name, url) of the named endpoint, or of the newest InService one."""
    with closing(db.connect(settings.db_path)) as conn:
        if name:
            row = conn.execute("SELECT name, url FROM endpoints WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise EndpointError(
                    f"endpoint {name!r} not found; see `sconeflow endpoint list` or deploy one "
                    "with `sconeflow deploy`"
                )
        else:
            row = conn.execute(
                "SELECT name, url FROM endpoints WHERE status = 'InService' "
                "ORDER BY created_at DESC, name LIMIT 1"
            ).fetchone()
            if row is None:
                raise EndpointError(
                    "no endpoint is InService; deploy one with `sconeflow deploy` or pass "
                    "--endpoint NAME"
                )
    return str(row["name"]), str(row["url"])


def local_handlers(
    settings: Settings,
    endpoint: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    functions: Collection[str] | None = None,
) -> dict[str, Handler]:
    """The functions wired to this workspace's store and an endpoint in service. With
    `functions` (the names a definition calls), an endpoint is looked up only when
    classifyImage is among them, so a definition that never classifies needs none."""
    name = url = None
    if functions is None or "classifyImage" in functions:
        name, url = resolve_endpoint(settings, endpoint)
    config = FunctionConfig(threshold=threshold, endpoint_name=name, endpoint_url=url,
                            settings=settings)  # fmt: skip
    return make_handlers(config)


def local_runner(
    settings: Settings,
    definition: Definition,
    *,
    endpoint: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    notifier: Notifier | None = None,
    max_workers: int = 1,
) -> WorkflowRunner:
    """A runner of `definition` with the workspace's own handlers for the functions it calls."""
    from sconeflow.workflow import parse_definition

    machine = parse_definition(definition.text, name=definition.name)
    handlers = local_handlers(settings, endpoint, threshold, functions=machine.function_names)
    return WorkflowRunner(
        settings, definition, handlers, notifier=notifier, max_workers=max_workers,
        threshold=threshold, machine=machine,
    )  # fmt: skip


class WorkflowRunner:
    """Runs executions of one definition with one handler table, recording each in the db."""

    def __init__(
        self,
        settings: Settings,
        definition: Definition,
        handlers: Mapping[str, Handler],
        *,
        notifier: Notifier | None = None,
        clock: Any = None,
        max_workers: int = 1,
        threshold: float | None = None,
        machine: StateMachine | None = None,
        connect: Callable[[], sqlite3.Connection] | None = None,
        recover: bool = True,
    ) -> None:
        from sconeflow.workflow import parse_definition

        self.settings, self.definition, self.handlers = settings, definition, handlers
        self.machine = machine or parse_definition(definition.text, name=definition.name)
        self.notifier = notifier or Notifier()
        self.clock, self.max_workers = clock, max_workers
        self.threshold = threshold  # recorded on each execution row (what monitoring reads)
        # Set to end every running execution ABORTED at its next state (`stop_all`).
        self.stop = threading.Event()
        # What a Distributed Map reads items from and writes results to: the workspace's store.
        self.objects = None
        if self.machine.uses_store:
            from sconeflow.executions.objects import StoreObjects
            from sconeflow.store import open_store

            self.objects = StoreObjects(open_store(settings))
        self._stops: dict[str, _ExecutionStop] = {}  # running here, by ARN
        # One db connection per thread that runs executions, kept open between them:
        # closing the last connection to the file checkpoints the WAL, a file sync that
        # cost more than the execution itself. `close()` (or the end of `stream`) closes them.
        # `connect` (the console's) gives the calling thread's connection instead, shared by
        # every runner there and closed by its owner.
        self._connect = connect
        self._connections = db.ThreadConnections(settings.db_path)
        self._lock = threading.Lock()
        if recover:  # end the executions of dead processes (the console did at its start)
            records.recover_orphans(self._connection())

    def stop_all(self) -> None:
        """End every execution this runner is running as ABORTED, before its next state;
        executions started after this are aborted at once."""
        self.stop.set()

    def stop_execution(self, arn: str, *, error: str | None = None,
                       cause: str | None = None) -> bool:  # fmt: skip
        """StopExecution of one execution this runner is running: it ends ABORTED with
        `error` and `cause` before its next state. False when it is not running here."""
        with self._lock:
            signal = self._stops.get(arn)
        if signal is None:
            return False
        signal.request(error, cause)
        return True

    def arn_for(self, name: str) -> str:
        return f"{self.machine.arn.replace(':stateMachine:', ':execution:')}:{name}"

    def _connection(self) -> sqlite3.Connection:
        if self._connect is not None:
            return self._connect()
        return self._connections.get()

    def close(self) -> None:
        """Close the db connections this runner opened."""
        self._connections.close()

    def __enter__(self) -> WorkflowRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, execution_input: Any, name: str | None = None) -> ExecutionRecord:
        """Run one execution to its end (StartExecution + wait); the record as it ended."""
        arn, name = self.create(execution_input, name)
        return self.run_created(arn, execution_input, name)

    def create(self, execution_input: Any, name: str | None = None) -> tuple[str, str]:
        """The RUNNING row of a new execution (StartExecution's part that can fail at once:
        a bad name, ExecutionAlreadyExists); returns its (ARN, name). `run_created` runs it."""
        from sconeflow.workflow import SystemClock

        name = name or str(uuid.uuid4())
        problem = name_problem(name)
        if problem:
            raise WorkflowError(f"InvalidName: execution {problem}")
        arn = self.arn_for(name)
        clock = self.clock or SystemClock()
        conn = self._connection()
        records.create_execution(
            conn, arn=arn, name=name, state_machine=self.machine.name,
            execution_input=execution_input, definition=self.definition.text,
            started_at=clock.now(), threshold=self.threshold,
        )  # fmt: skip
        return arn, name

    def run_created(self, arn: str, execution_input: Any, name: str) -> ExecutionRecord:
        """Run an execution that `create` recorded, to its end; the record as it ended."""
        conn = self._connection()
        writer = HistoryWriter(conn, arn, finish=True)  # the last event ends the row too
        return self._run(conn, writer, execution_input, name, None)

    def _run(self, conn: sqlite3.Connection, writer: HistoryWriter, data: Any, name: str,
             start_at: str | None, original: Any = None,
             map_run: PriorMapRun | None = None) -> ExecutionRecord:  # fmt: skip
        from sconeflow.workflow import SystemClock, run_execution

        # A Distributed Map's child executions are recorded as executions of their own.
        children = records.ChildRecorder(conn, threshold=self.threshold)
        stop = _ExecutionStop(self.stop, records.StopRequest(conn, writer.arn))
        with self._lock:
            self._stops[writer.arn] = stop
        # A redrive shows in `$$.Execution.RedriveCount` and `RedriveTime`, as on AWS.
        redriven = (self.clock or SystemClock()).now() if writer.redrive_count else None
        try:  # the writer ends the row with the execution's last event (finish=True)
            run_execution(
                self.machine, data, self.handlers, name=name, listener=writer,
                clock=self.clock, start_at=start_at, max_workers=self.max_workers,
                execution_input=data if original is None else original, stop=stop,
                store=self.objects, children=children,
                redrive_count=writer.redrive_count, redrive_time=redriven,
                redrive_map_run=map_run,
            )  # fmt: skip
        except BaseException as err:
            # Interrupted (Ctrl-C) or the engine broke: the record says so rather than
            # staying RUNNING forever; AWS's StopExecution leaves the same trace.
            cause = f"{type(err).__name__}: {err}"
            records.abort_execution(conn, writer.arn, cause, writer=writer)
            records.abort_children(conn, writer.arn, cause)
            raise
        finally:
            with self._lock:
                self._stops.pop(writer.arn, None)
        record = records.read_record(conn, writer.arn)
        record.events = writer.events
        if children.arns:
            record.children = records.read_children(conn, writer.arn)
        record.notification_error = self.notifier.notify(record)
        return record

    def stream(
        self,
        inputs: Sequence[Any],
        *,
        offsets: Sequence[float] | None = None,
        concurrency: int = 1,
        names: Sequence[str] | None = None,
        on_done: Callable[[ExecutionRecord], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> list[ExecutionRecord]:
        """Start one execution per input at its offset (seconds from now), at most
        `concurrency` at once; records in input order. `sleep`/`monotonic` are seams for
        tests."""
        if concurrency < 1:
            raise WorkflowError(f"concurrency: {concurrency} must be at least 1")
        offsets = offsets if offsets is not None else [0.0] * len(inputs)
        names = names if names is not None else [_case_name(i) for i in inputs]
        lock = threading.Lock()

        def one(i: int) -> ExecutionRecord:
            record = self.start(inputs[i], names[i])
            if on_done is not None:
                with lock:
                    on_done(record)
            return record

        begin = monotonic()
        try:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                futures = []
                try:
                    for i, offset in enumerate(offsets):
                        wait = begin + offset - monotonic()
                        if wait > 0:
                            sleep(wait)
                        futures.append(pool.submit(one, i))
                    return [f.result() for f in futures]
                except BaseException:
                    # Ctrl-C or SIGTERM: those not yet started are never recorded; the running
                    # ones end ABORTED at their next state, which the pool's exit waits for.
                    self.stop_all()
                    for f in futures:
                        f.cancel()
                    raise
        finally:
            self.close()  # the pool's threads are gone; so are their connections


class _ExecutionStop:
    """The stop signal of one execution: its runner's `stop_all`, a StopExecution in this
    process (`request`), or a stop requested through the db by another process."""

    def __init__(self, everything: threading.Event, requested: records.StopRequest) -> None:
        self._everything, self._requested = everything, requested
        self._own = threading.Event()
        self.error: str | None = None
        self.cause: str | None = STOPPED_CAUSE

    def request(self, error: str | None, cause: str | None) -> None:
        self.error, self.cause = error, cause
        self._own.set()

    def is_set(self) -> bool:
        if self._own.is_set() or self._everything.is_set():
            return True
        if self._requested.is_set():
            self.error, self.cause = self._requested.error, self._requested.cause
            return True
        return False


def _case_name(event: Any) -> str:
    """A readable unique name: the image's file stem plus a short random suffix."""
    key = event.get("s3_key", "") if isinstance(event, dict) else ""
    stem = re.sub(r"[^0-9A-Za-z_-]+", "-", Path(str(key)).stem)[:60] if key else "execution"
    return f"{stem}-{uuid.uuid4().hex[:8]}"


class Redrive:
    """A redrive that has begun: the execution is RUNNING again, owned by this process, and
    `run` runs it from the state that failed (in this thread or another)."""

    def __init__(self, settings: Settings, record: ExecutionRecord, runner: WorkflowRunner,
                 state: str | None, state_input: Any, offset: int,
                 map_run: PriorMapRun | None = None) -> None:  # fmt: skip
        self.settings, self.record, self.runner = settings, record, runner
        self.state, self.state_input, self.offset = state, state_input, offset
        self.map_run = map_run  # the Map Run redriven with it, when `state` started one

    def run(self) -> ExecutionRecord:
        with closing(db.connect(self.settings.db_path)) as conn:
            writer = HistoryWriter(conn, self.record.arn, offset=self.offset, finish=True,
                                   redrive_count=self.record.redrive_count + 1)  # fmt: skip
            return self.runner._run(conn, writer, self.state_input, self.record.name,
                                    self.state, json.loads(self.record.input),
                                    self.map_run)  # fmt: skip


def begin_redrive(
    settings: Settings,
    arn_or_name: str,
    handlers: Mapping[str, Handler],
    *,
    notifier: Notifier | None = None,
    clock: Any = None,
    max_workers: int = 1,
) -> Redrive:
    """RedriveExecution's part that can fail at once (ExecutionNotRedrivable): reopen a
    failed execution; `Redrive.run` then runs it."""
    record = records.find_execution(settings, arn_or_name)
    _refuse_child(record)
    if record.status not in FAILED_STATUSES:
        raise WorkflowError(
            f"ExecutionNotRedrivable: {record.arn} is {record.status}; only FAILED, TIMED_OUT "
            "or ABORTED executions can be redriven"
        )
    with closing(db.connect(settings.db_path)) as conn:
        events = records.read_history(conn, record.arn)
        spec = records.read_definition(conn, record.arn)
    state, state_input = failed_state(events)
    if state is None:  # stopped before its first state (queued when its owner died)
        state_input = json.loads(record.input)
    definition = Definition(record.state_machine, json.dumps(spec), record.arn)
    runner = WorkflowRunner(settings, definition, handlers, notifier=notifier, clock=clock,
                            max_workers=max_workers, threshold=record.threshold)  # fmt: skip
    with closing(db.connect(settings.db_path)) as conn:
        map_run = prior_map_run(conn, runner.machine, events, state)
        if not records.reopen_execution(conn, record.arn, record.status):
            # another process redrove it first
            raise WorkflowError(f"ExecutionNotRedrivable: {record.arn} changed while redriving")
    return Redrive(settings, record, runner, state, state_input,
                   events[-1]["id"] if events else 0, map_run)  # fmt: skip


def redrive_execution(
    settings: Settings,
    arn_or_name: str,
    handlers: Mapping[str, Handler],
    *,
    notifier: Notifier | None = None,
    clock: Any = None,
    max_workers: int = 1,
) -> ExecutionRecord:
    """RedriveExecution: run a failed execution again from the top-level state that failed,
    with the input that state had; same ARN, history continues, redriveCount + 1."""
    return begin_redrive(settings, arn_or_name, handlers, notifier=notifier, clock=clock,
                         max_workers=max_workers).run()  # fmt: skip


def redrive_local(
    settings: Settings,
    arn_or_name: str,
    *,
    endpoint: str | None = None,
    threshold: float | None = None,
    notifier: Notifier | None = None,
    max_workers: int = 1,
) -> ExecutionRecord:
    """RedriveExecution with the workspace's own handlers for the functions the execution's
    definition calls, at the threshold it first ran with unless `threshold` is given."""
    from sconeflow.workflow import parse_definition

    record = records.find_execution(settings, arn_or_name)
    _refuse_child(record)
    machine = parse_definition(records.definition_of(settings, record.arn))
    if threshold is None:
        threshold = DEFAULT_THRESHOLD if record.threshold is None else record.threshold
    handlers = local_handlers(settings, endpoint, threshold, functions=machine.function_names)
    return redrive_execution(settings, record.arn, handlers, notifier=notifier,
                             max_workers=max_workers)  # fmt: skip


def _refuse_child(record: ExecutionRecord) -> None:
    """A Distributed Map's child is redriven with its parent, as on AWS."""
    if record.map_run_arn:
        raise WorkflowError(
            f"ExecutionNotRedrivable: {record.arn} is a child execution of the Map Run "
            f"{record.map_run_arn}; redrive the execution that started that Map Run"
        )
