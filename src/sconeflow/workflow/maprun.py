"""A Map Run's children and what it hands on (AWS developer guide, "ResultWriter (Map)").

Without a ResultWriter (or with WriterConfig alone) the Map's result is the children's
outputs (COMPACT), their execution records (NONE) or the outputs with arrays spread
(FLATTEN); a failed child's entry is always its whole record. With Resource and
Parameters every record is exported to `Prefix/<map run id>/`: `SUCCEEDED_0.json`,
`FAILED_0.json` (failed, timed out or aborted children), `PENDING_0.json` (never started)
for each status that has any, and `manifest.json` naming them with their sizes; the
result is then `{"MapRunArn": ..., "ResultWriterDetails": {"Bucket", "Key"}}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .data import dumps
from .errors import StatesFailure
from .items import RESULT_WRITER_FAILED
from .machine import StateMachine
from .mapspec import ResultWriterSpec
from .run import Run


@dataclass
class Child:
    """One item (or batch) of a Map Run and how its child execution went."""

    index: int
    input: Any
    input_json: str
    status: str = "PENDING"  # PENDING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    output: Any = None
    error: str | None = None
    cause: str | None = None
    arn: str = ""
    name: str = ""
    start: str = ""
    stop: str = ""
    redrive_count: int = 0  # times this child execution was redriven
    prior: PriorChild | None = None  # what it did before, when its Map Run is redriven


@dataclass(frozen=True)
class PriorChild:
    """A child execution of a Map Run as it ended (DescribeExecution's fields), and where a
    redrive of it starts: `failed_state` with `state_input` (None: at StartAt)."""

    input: Any
    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    output: Any
    error: str | None
    cause: str | None
    arn: str
    name: str
    start: str
    stop: str
    redrive_count: int = 0
    failed_state: str | None = None
    state_input: Any = None


@dataclass(frozen=True)
class PriorMapRun:
    """The Map Run a redrive of its parent redrives: the top-level Distributed Map `state`
    that started it, its ARN, how often it was redriven and its child executions."""

    state: str
    arn: str
    redrive_count: int = 0
    children: tuple[PriorChild, ...] = field(default_factory=tuple)


@dataclass
class MapRun:
    """arn:aws:states:REGION:ACCOUNT:mapRun:MACHINE/LABEL:ID, and the machine its children run."""

    arn: str
    id: str
    machine: StateMachine  # the child state machine MACHINE/LABEL
    parent_arn: str


def attach_prior(children: list[Child], prior: PriorMapRun) -> None:
    """Pair each child of a redriven Map Run with the child execution its input had: one
    that succeeded stands as it is, one that did not is run again (`Child.prior`), and a
    child with none (it never started: PENDING) runs for the first time. Of several
    executions of one input, those that succeeded come first, then the latest attempts:
    items of equal input are interchangeable, as the same machine runs on the same input."""
    by_input: dict[str, list[PriorChild]] = {}
    for earlier in sorted(prior.children, key=lambda c: c.start, reverse=True):
        by_input.setdefault(dumps(earlier.input), []).append(earlier)
    for group in by_input.values():
        group.sort(key=lambda c: c.status != "SUCCEEDED")  # stable: latest first within
    for child in children:
        same = by_input.get(child.input_json)
        if not same:
            continue
        earlier = same.pop(0)
        if earlier.status == "SUCCEEDED":
            child.status, child.output = "SUCCEEDED", earlier.output
            child.arn, child.name, child.start, child.stop = (
                earlier.arn, earlier.name, earlier.start, earlier.stop)  # fmt: skip
            child.redrive_count = earlier.redrive_count
        else:
            child.prior = earlier


# --- results --------------------------------------------------------------------------------


def _record(child: Child, map_run: MapRun) -> dict[str, Any]:
    """A child execution as ResultWriter's NONE transformation writes it (DescribeExecution's
    fields, capitalised)."""
    if child.status == "PENDING":
        return {"Input": child.input_json, "InputDetails": {"Included": True}, "Status": "PENDING"}
    record: dict[str, Any] = {}
    if child.status != "SUCCEEDED":
        record.update({k: v for k, v in (("Cause", child.cause), ("Error", child.error)) if v})
    record.update({"ExecutionArn": child.arn, "Input": child.input_json,
                   "InputDetails": {"Included": True}, "Name": child.name})  # fmt: skip
    if child.status == "SUCCEEDED":
        record["Output"] = dumps(child.output)
        record["OutputDetails"] = {"Included": True}
    record["RedriveCount"] = child.redrive_count
    if child.status == "SUCCEEDED":
        record["RedriveStatus"] = "NOT_REDRIVABLE"
        record["RedriveStatusReason"] = "Execution is SUCCEEDED and cannot be redriven"
    else:
        record["RedriveStatus"] = "REDRIVABLE"
    record.update({"StartDate": child.start, "StateMachineArn": map_run.machine.arn,
                   "Status": child.status, "StopDate": child.stop})  # fmt: skip
    return record


def _transform(children: list[Child], map_run: MapRun, transformation: str) -> list[Any]:
    """NONE: every child's record; COMPACT: outputs (a failed child's record stays whole);
    FLATTEN: COMPACT with array outputs spread into the list."""
    out: list[Any] = []
    for child in children:
        if transformation == "NONE" or child.status != "SUCCEEDED":
            out.append(_record(child, map_run))
        elif transformation == "FLATTEN" and isinstance(child.output, list):
            out.extend(child.output)
        else:
            out.append(child.output)
    return out


def map_results(
    run: Run, writer: ResultWriterSpec | None, map_run: MapRun, children: list[Child],
    params: Any,
) -> Any:  # fmt: skip
    """The Map's result: the outputs, or what the ResultWriter exported (to the Bucket and
    Prefix of `params`, its Parameters or Arguments evaluated)."""
    if writer is None:
        return _transform([c for c in children if c.status != "PENDING"], map_run, "COMPACT")
    if writer.parameters is None:
        return _transform([c for c in children if c.status != "PENDING"], map_run,
                          writer.transformation)  # fmt: skip
    bucket, prefix = params.get("Bucket") if isinstance(params, dict) else None, ""
    if isinstance(params, dict):
        prefix = params.get("Prefix", "")
    if not isinstance(bucket, str) or not isinstance(prefix, str):
        raise StatesFailure(
            RESULT_WRITER_FAILED,
            f"ResultWriter Parameters must give a string Bucket (and Prefix), got {dumps(params)}",
        )
    base = f"{prefix.rstrip('/')}/{map_run.id}/" if prefix else f"{map_run.id}/"
    extension = ".json" if writer.output_type == "JSON" else ".jsonl"
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for status in ("SUCCEEDED", "FAILED", "PENDING"):
        group = [c for c in children if (c.status == status) or (
            status == "FAILED" and c.status not in ("SUCCEEDED", "PENDING"))]  # fmt: skip
        if not group:
            continue
        records = _transform(group, map_run, writer.transformation)
        if writer.output_type == "JSON":
            body = dumps(records).encode()
        else:
            body = "".join(dumps(r) + "\n" for r in records).encode()
        key = f"{base}{status}_0{extension}"
        _put(run, bucket, key, body)
        files[status].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": bucket, "MapRunArn": map_run.arn, "ResultFiles": files}
    _put(run, bucket, f"{base}manifest.json", dumps(manifest).encode())
    return {
        "MapRunArn": map_run.arn,
        "ResultWriterDetails": {"Bucket": bucket, "Key": f"{base}manifest.json"},
    }


def _put(run: Run, bucket: str, key: str, body: bytes) -> None:
    try:
        run.store.put(bucket, key, body)
    except Exception as err:  # any backend's failure is the writer's failure
        raise StatesFailure(RESULT_WRITER_FAILED, f"{type(err).__name__}: {err}") from err
