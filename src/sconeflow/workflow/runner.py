"""Executions as resources: start, stream, list, describe, history, redrive, notify.

An execution is a row of the workspace db's `executions` table, and its history the rows
of `history_events`, written one by one as the engine emits them, so an execution that is
interrupted (Ctrl-C, a crash) leaves a true record of how far it got. Shapes follow Step
Functions: ARNs `arn:aws:states:us-east-1:123456789012:execution:<machine>:<name>`,
DescribeExecution fields, GetExecutionHistory events, RedriveExecution (same ARN, history
continues after an `ExecutionRedriven` event, from the state that failed).

Definitions use `${...}` placeholders for ARNs, as AWS SAM/CDK templates do:
`${SerializeImageDataArn}` becomes the local ARN of function `serializeImageData`.
Failure notification lives in `notify.py`, the test-case generator in `traffic.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import EndpointError, SconeflowError, WorkflowError
from sconeflow.functions import FunctionConfig, Handler, make_handlers
from sconeflow.functions.config import DEFAULT_THRESHOLD
from sconeflow.store import Store
from sconeflow.workflow.history import insert_event
from sconeflow.workflow.notify import FAILED_STATUSES, Notifier

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT = "123456789012"
PACKAGED = ("stepfunction", "fanout")  # definitions shipped in sconeflow/definitions/
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")
_EXECUTION_NAME = re.compile(r"^[0-9A-Za-z_-]{1,80}$")  # StartExecution's name rule


@dataclass(frozen=True)
class Definition:
    """An ASL definition with its placeholders filled, ready for parse_definition."""

    name: str  # the state machine's name (in ARNs)
    text: str
    source: str  # where it came from, for messages


def load_definition(
    source: str | Path | None = None, *, name: str | None = None,
    region: str = REGION, account: str = ACCOUNT,
) -> Definition:  # fmt: skip
    """A packaged definition by name ('stepfunction', the default, or 'fanout') or a file,
    with `${<Function>Arn}` placeholders replaced by local Lambda ARNs."""
    source = source or "stepfunction"
    if str(source) in PACKAGED:
        text = resources.files("sconeflow.definitions").joinpath(f"{source}.json").read_text()
        stem, where = str(source), f"packaged definition {source!r}"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise WorkflowError(
                f"cannot read definition {str(path)!r}: {err}; pass a file or one of "
                f"{', '.join(PACKAGED)}"
            ) from err
        stem, where = path.stem, str(path)
    machine_name = name or re.sub(r"[^0-9A-Za-z_-]+", "-", stem)[:80]
    return Definition(machine_name, substitute(text, function_arns(region, account), where), where)


def function_arns(region: str = REGION, account: str = ACCOUNT) -> dict[str, str]:
    """`SerializeImageDataArn` -> `arn:aws:lambda:...:function:serializeImageData`, etc."""
    from sconeflow.functions import FUNCTION_MODULES

    return {
        f"{fn[0].upper()}{fn[1:]}Arn": f"arn:aws:lambda:{region}:{account}:function:{fn}"
        for fn in FUNCTION_MODULES
    }


def substitute(text: str, values: Mapping[str, str], where: str = "definition") -> str:
    """Replace every `${Name}`; WorkflowError lists any name without a value."""
    unknown = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if unknown:
        raise WorkflowError(
            f"{where}: no value for placeholder(s) {', '.join('${' + u + '}' for u in unknown)};"
            f" known: {', '.join('${' + k + '}' for k in sorted(values))}"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


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
    settings: Settings, endpoint: str | None = None, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, Handler]:
    """The three functions wired to this workspace's store and an endpoint in service."""
    name, url = resolve_endpoint(settings, endpoint)
    config = FunctionConfig(threshold=threshold, endpoint_name=name, endpoint_url=url,
                            settings=settings)  # fmt: skip
    return make_handlers(config)


@dataclass
class ExecutionRecord:
    """One execution as DescribeExecution reports it; `events` when this process ran it."""

    arn: str
    name: str
    state_machine: str
    status: str
    input: str
    started_at: str
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    stopped_at: str | None = None
    redrive_count: int = 0
    redrive_date: str | None = None
    notification_error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def state_machine_arn(self) -> str:
        region, account = self.arn.split(":")[3:5]
        return f"arn:aws:states:{region}:{account}:stateMachine:{self.state_machine}"

    def describe(self) -> dict[str, Any]:
        """DescribeExecution's response fields."""
        out: dict[str, Any] = {
            "executionArn": self.arn,
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": self.status,
            "startDate": self.started_at,
            "input": self.input,
            "inputDetails": {"included": True},
        }
        if self.stopped_at:
            out["stopDate"] = self.stopped_at
        if self.output is not None:
            out["output"] = self.output
            out["outputDetails"] = {"included": True}
        if self.error is not None:
            out["error"] = self.error
        if self.cause is not None:
            out["cause"] = self.cause
        out["redriveCount"] = self.redrive_count
        if self.redrive_date:
            out["redriveDate"] = self.redrive_date
        out["redriveStatus"] = "REDRIVABLE" if self.status in FAILED_STATUSES else "NOT_REDRIVABLE"
        return out


class _HistoryWriter:
    """The engine's listener: one INSERT per event (autocommit), ids shifted by `offset`
    so a redrive's events continue the execution's history."""

    def __init__(self, conn: sqlite3.Connection, arn: str, offset: int = 0,
                 redrive_count: int = 0) -> None:  # fmt: skip
        self.conn, self.arn, self.offset, self.redrive_count = conn, arn, offset, redrive_count
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: Mapping[str, Any]) -> None:
        event = dict(event)
        if self.offset and event["type"] == "ExecutionStarted":
            # A redrive does not start the execution again; AWS records this instead.
            event = {k: v for k, v in event.items() if not k.endswith("EventDetails")}
            event["type"] = "ExecutionRedriven"
            event["executionRedrivenEventDetails"] = {"redriveCount": self.redrive_count}
        event["id"] += self.offset
        event["previousEventId"] += self.offset
        stamp = event["timestamp"]
        event["timestamp"] = stamp.isoformat() if isinstance(stamp, dt.datetime) else str(stamp)
        insert_event(self.conn, self.arn, event)
        self.events.append(event)


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
    ) -> None:
        from sconeflow.workflow import parse_definition

        self.settings, self.definition, self.handlers = settings, definition, handlers
        self.machine = parse_definition(definition.text, name=definition.name)
        self.notifier = notifier or Notifier()
        self.clock, self.max_workers = clock, max_workers

    def start(self, execution_input: Any, name: str | None = None) -> ExecutionRecord:
        """Run one execution to its end (StartExecution + wait); the record as it ended."""
        from sconeflow.workflow import SystemClock

        name = name or str(uuid.uuid4())
        if not _EXECUTION_NAME.fullmatch(name):
            raise WorkflowError(
                f"execution name {name!r} is invalid; expected 1-80 letters, digits, '-' or '_'"
            )
        arn = f"{self.machine.arn.replace(':stateMachine:', ':execution:')}:{name}"
        clock = self.clock or SystemClock()
        with closing(db.connect(self.settings.db_path)) as conn:
            try:
                conn.execute(
                    "INSERT INTO executions (arn, name, state_machine, status, input, definition,"
                    " started_at) VALUES (?, ?, ?, 'RUNNING', ?, ?, ?)",
                    (arn, name, self.machine.name, json.dumps(execution_input),
                     self.definition.text, clock.now().isoformat()),
                )  # fmt: skip
            except sqlite3.IntegrityError as err:
                raise WorkflowError(
                    f"ExecutionAlreadyExists: {arn} already ran; choose another name"
                ) from err
            writer = _HistoryWriter(conn, arn)
            return self._run(conn, writer, execution_input, name, None)

    def _run(self, conn: sqlite3.Connection, writer: _HistoryWriter, data: Any, name: str,
             start_at: str | None, original: Any = None) -> ExecutionRecord:  # fmt: skip
        from sconeflow.workflow import run_execution

        try:
            result = run_execution(
                self.machine, data, self.handlers, name=name, listener=writer,
                clock=self.clock, start_at=start_at, max_workers=self.max_workers,
                execution_input=data if original is None else original,
            )  # fmt: skip
        except BaseException as err:
            # Interrupted (Ctrl-C) or the engine broke: the record says so rather than
            # staying RUNNING forever; AWS's StopExecution leaves the same trace.
            _abort(conn, writer, f"{type(err).__name__}: {err}")
            raise
        conn.execute(
            "UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, stopped_at = ? "
            "WHERE arn = ?",
            (result.status, None if result.output is None else json.dumps(result.output),
             result.error, result.cause, result.stop_date.isoformat(), writer.arn),
        )  # fmt: skip
        record = _read_record(conn, writer.arn)
        record.events = writer.events
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
                for f in futures:
                    f.cancel()  # not yet started: never recorded; running ones finish
                raise


def _case_name(event: Any) -> str:
    """A readable unique name: the image's file stem plus a short random suffix."""
    key = event.get("s3_key", "") if isinstance(event, dict) else ""
    stem = re.sub(r"[^0-9A-Za-z_-]+", "-", Path(str(key)).stem)[:60] if key else "execution"
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def _abort(conn: sqlite3.Connection, writer: _HistoryWriter, cause: str) -> None:
    last = writer.events[-1]["id"] if writer.events else _last_event_id(conn, writer.arn)
    now = dt.datetime.now(dt.UTC).isoformat()
    try:
        conn.execute(
            "INSERT INTO history_events VALUES (?, ?, ?, ?, 'ExecutionAborted', ?)",
            (writer.arn, last + 1, last, now,
             json.dumps({"executionAbortedEventDetails": {"cause": cause}})),
        )  # fmt: skip
        conn.execute(
            "UPDATE executions SET status = 'ABORTED', cause = ?, stopped_at = ? WHERE arn = ?",
            (cause, now, writer.arn),
        )
    except sqlite3.Error as err:  # the original error matters more; keep it propagating
        log.warning("could not record the abort of %s: %s", writer.arn, err)


def _last_event_id(conn: sqlite3.Connection, arn: str) -> int:
    row = conn.execute(
        "SELECT MAX(id) FROM history_events WHERE execution_arn = ?", (arn,)
    ).fetchone()
    return int(row[0] or 0)


def _read_record(conn: sqlite3.Connection, arn: str) -> ExecutionRecord:
    row = conn.execute("SELECT * FROM executions WHERE arn = ?", (arn,)).fetchone()
    redrives = conn.execute(
        "SELECT COUNT(*), MAX(timestamp) FROM history_events WHERE execution_arn = ? "
        "AND type = 'ExecutionRedriven'",
        (arn,),
    ).fetchone()
    return ExecutionRecord(
        arn=row["arn"], name=row["name"], state_machine=row["state_machine"],
        status=row["status"], input=row["input"], started_at=row["started_at"],
        output=row["output"], error=row["error"], cause=row["cause"],
        stopped_at=row["stopped_at"], redrive_count=int(redrives[0]), redrive_date=redrives[1],
    )  # fmt: skip


def find_execution(settings: Settings, arn_or_name: str) -> ExecutionRecord:
    """An execution by ARN, or by name (the newest of that name)."""
    with closing(db.connect(settings.db_path)) as conn:
        row = conn.execute(
            "SELECT arn FROM executions WHERE arn = ? OR name = ? ORDER BY started_at DESC LIMIT 1",
            (arn_or_name, arn_or_name),
        ).fetchone()
        if row is None:
            raise WorkflowError(
                f"ExecutionDoesNotExist: no execution {arn_or_name!r}; see "
                "`sconeflow workflow list`"
            )
        return _read_record(conn, row["arn"])


def list_executions(settings: Settings, *, status: str | None = None) -> list[ExecutionRecord]:
    """Every recorded execution, newest first (ListExecutions)."""
    with closing(db.connect(settings.db_path)) as conn:
        arns = conn.execute(
            "SELECT arn FROM executions WHERE ? IS NULL OR status = ? ORDER BY started_at DESC",
            (status, status),
        ).fetchall()
        return [_read_record(conn, r["arn"]) for r in arns]


def get_history(settings: Settings, arn_or_name: str) -> list[dict[str, Any]]:
    """GetExecutionHistory's events, oldest first, as stored."""
    arn = find_execution(settings, arn_or_name).arn
    with closing(db.connect(settings.db_path)) as conn:
        rows = conn.execute(
            "SELECT * FROM history_events WHERE execution_arn = ? ORDER BY id", (arn,)
        ).fetchall()
    events = []
    for row in rows:
        event = {"timestamp": row["timestamp"], "type": row["type"], "id": row["id"],
                 "previousEventId": row["previous_id"]}  # fmt: skip
        event.update(json.loads(row["details"] or "{}"))
        events.append(event)
    return events


def definition_of(settings: Settings, arn_or_name: str) -> dict[str, Any]:
    """The ASL definition (placeholders filled) that an execution ran."""
    arn = find_execution(settings, arn_or_name).arn
    with closing(db.connect(settings.db_path)) as conn:
        row = conn.execute("SELECT definition FROM executions WHERE arn = ?", (arn,)).fetchone()
    parsed: dict[str, Any] = json.loads(row["definition"])
    return parsed


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
    record = find_execution(settings, arn_or_name)
    if record.status not in FAILED_STATUSES:
        raise WorkflowError(
            f"ExecutionNotRedrivable: {record.arn} is {record.status}; only FAILED, TIMED_OUT "
            "or ABORTED executions can be redriven"
        )
    events = get_history(settings, record.arn)
    state, state_input = _failed_state(events)
    definition = Definition(record.state_machine, json.dumps(definition_of(settings, record.arn)),
                            record.arn)  # fmt: skip
    runner = WorkflowRunner(settings, definition, handlers, notifier=notifier, clock=clock,
                            max_workers=max_workers)  # fmt: skip
    with closing(db.connect(settings.db_path)) as conn:
        updated = conn.execute(
            "UPDATE executions SET status = 'RUNNING', output = NULL, error = NULL, cause = NULL,"
            " stopped_at = NULL WHERE arn = ? AND status = ?",
            (record.arn, record.status),
        ).rowcount
        if updated != 1:  # another process redrove it first
            raise WorkflowError(f"ExecutionNotRedrivable: {record.arn} changed while redriving")
        writer = _HistoryWriter(conn, record.arn, offset=events[-1]["id"] if events else 0,
                                redrive_count=record.redrive_count + 1)  # fmt: skip
        return runner._run(conn, writer, state_input, record.name, state,
                           json.loads(record.input))  # fmt: skip


def _failed_state(events: Sequence[Mapping[str, Any]]) -> tuple[str, Any]:
    """The top-level state an execution failed in, and its input, from its history.

    Events of the top level chain through previousEventId (branches and Map iterations
    hang off that chain), so walking back from the last event finds the top-level state
    that was running when the execution failed.
    """
    by_id = {e["id"]: e for e in events}
    event = events[-1] if events else None
    while event is not None:
        if str(event["type"]).endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            return str(details["name"]), json.loads(details.get("input") or "{}")
        event = by_id.get(event["previousEventId"])
    raise WorkflowError("ExecutionNotRedrivable: the execution failed before entering a state")


@dataclass(frozen=True)
class SummaryRow:
    """One line of the run summary: an execution (or one Map item of it)."""

    execution: str
    status: str
    error: str | None
    predicted: str | None
    confidence: float | None


def class_names(store: Store, bucket: str) -> list[str]:
    """Class names in label order from the staging manifest; [] if there is none."""
    try:
        classes = json.loads(store.get(bucket, "data/manifest.json")).get("classes", [])
    except (SconeflowError, ValueError, AttributeError) as err:  # names are optional
        log.debug("no class names: %s", err)
        return []
    return [str(c) for c in classes]


def summarize(record: ExecutionRecord, names: Sequence[str] = ()) -> list[SummaryRow]:
    """Status, error, predicted class and confidence per execution, or per item of a
    fan-out execution (an output holding a `results` list)."""
    output = json.loads(record.output) if record.output else None
    if isinstance(output, dict) and isinstance(output.get("results"), list):
        rows = []
        for i, item in enumerate(output["results"]):
            failed = isinstance(item, dict) and "Error" in item and "inferences" not in item
            rows.append(SummaryRow(
                f"{record.name}[{i}]", "FAILED" if failed else "SUCCEEDED",
                item.get("Error") if failed else None,
                *_prediction(_inferences_in(item.get("Cause") if failed else item), names),
            ))  # fmt: skip
        return rows
    inferences = _inferences_in(output)
    for event in reversed(record.events or []):  # a failed run: the last inferences seen
        if inferences:
            break
        details = event.get("stateEnteredEventDetails") or {}
        inferences = _inferences_in(details.get("input"))
    predicted, confidence = _prediction(inferences, names)
    return [SummaryRow(record.name, record.status, record.error, predicted, confidence)]


def _inferences_in(value: Any) -> list[float]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        found = value.get("inferences")
        if isinstance(found, list) and found and all(isinstance(p, int | float) for p in found):
            return [float(p) for p in found]
    return []


def _prediction(
    inferences: Sequence[float], names: Sequence[str]
) -> tuple[str | None, float | None]:
    if not inferences:
        return None, None
    best = max(range(len(inferences)), key=inferences.__getitem__)
    label = names[best] if best < len(names) else str(best)
    return label, inferences[best]
