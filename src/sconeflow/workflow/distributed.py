"""The Distributed Map (AWS developer guide, "Using Map state in Distributed mode").

A Map whose ItemProcessor has `ProcessorConfig.Mode: DISTRIBUTED` starts a *Map Run*
(`arn:aws:states:REGION:ACCOUNT:mapRun:MACHINE/LABEL:ID`): its items come from the state
input or an ItemReader (items.py), pass through ItemSelector and ItemBatcher, and each
item (or batch) runs as a child workflow execution of the state machine `MACHINE/LABEL`
with a history of its own (`ExecutionStarted` ... `ExecutionSucceeded`). The parent's
history holds `MapRunStarted` and `MapRunSucceeded`/`MapRunFailed` instead of
`MapIteration*` events. Failures are tolerated up to ToleratedFailureCount/Percentage
(0 by default: one failed child fails the Map Run with
States.ExceedToleratedFailureThreshold). A ResultWriter exports every child's record to
`Prefix/<map run id>/` (manifest.json, SUCCEEDED_0.json, FAILED_0.json, PENDING_0.json)
and the state's result becomes `{"MapRunArn", "ResultWriterDetails"}` (maprun.py).

Also here, because the inline Map shares them: MaxConcurrencyPath and the Tolerated*Path
fields, read from the Map's effective input, and a JSONata Map's Items, ItemSelector and
limits (`jsonata_items`, `jsonata_selected`, `jsonata_limits`). A JSONata Distributed Map
evaluates its ItemReader and ResultWriter Arguments and its ItemBatcher fields against
`$states` (mapspec.py); its children, as every child execution, see none of the parent's
variables (AWS: "Distributed Map states cannot currently reference variables in outer
scopes").
"""

from __future__ import annotations

import dataclasses
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .clock import iso_millis
from .data import dumps, json_type, within_quota
from .dataflow import (
    STATE_DATA,
    apply_assign,
    effective_input,
    enter,
    evaluate,
    exit_state,
    finish_result,
    item_context,
    map_items,
    select,
    states_of,
)
from .errors import DATA_LIMIT_EXCEEDED, EXCEED_TOLERATED_FAILURE_THRESHOLD, RUNTIME, StatesFailure
from .history import ChildExecution
from .items import ITEM_READER_FAILED, read_sourced_items
from .jsonata import QUERY_EVALUATION_ERROR
from .lambdas import new_request_id
from .machine import State
from .maprun import Child, MapRun, PriorMapRun, attach_prior, map_results
from .mapspec import MAX_BATCH_BYTES, DistributedSpec, ItemBatcherSpec, PathValue, Template
from .recovery import guarded
from .run import ExecutionAborted, Frame, Run

THRESHOLD_CAUSE = "The specified tolerated failure threshold was exceeded"


# --- the fields the inline Map shares -------------------------------------------------------


def map_concurrency(state: State, effective: Any) -> int:
    """MaxConcurrency, or MaxConcurrencyPath's value (0: no limit)."""
    path = state.max_concurrency_path
    if path is None:
        return state.max_concurrency
    value = _path_number(path, effective, "MaxConcurrencyPath", "integer")
    if value < 0:
        raise StatesFailure(
            RUNTIME, f"Expected non-negative integer for MaxConcurrency, got '{value}' instead."
        )
    return int(value)


def map_tolerance(state: State, effective: Any) -> tuple[int | None, float | None]:
    """(ToleratedFailureCount, ToleratedFailurePercentage), literal or from their Paths."""
    count, pct = state.tolerated_count, state.tolerated_percentage
    if state.tolerated_count_path is not None:
        path = state.tolerated_count_path
        count = int(_path_number(path, effective, "ToleratedFailureCountPath", "integer"))
        if count < 0:
            raise StatesFailure(RUNTIME, "ToleratedFailureCount cannot be negative.")
    if state.tolerated_percentage_path is not None:
        path = state.tolerated_percentage_path
        pct = float(_path_number(path, effective, "ToleratedFailurePercentagePath", "float"))
        if not 0 <= pct <= 100:
            raise StatesFailure(RUNTIME, "ToleratedFailurePercentage must be between 0 and 100.")
    return count, pct


def exceeds_tolerance(count: int | None, pct: float | None, failed: int, total: int) -> bool:
    if count is not None and failed > count:
        return True
    return pct is not None and failed * 100 > pct * total


def _path_number(path: PathValue, effective: Any, field: str, kind: str) -> float:
    value = select(path.getter, path.text, effective, None, field)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():  # AWS reads "5" as 5
        value = int(value)
    ok = isinstance(value, int) or (kind == "float" and isinstance(value, float))
    if not ok or isinstance(value, bool):
        shown = value if isinstance(value, str) else json.dumps(value)
        raise StatesFailure(
            RUNTIME,
            f'The {field} field refers to value "{shown}" which is not a valid {kind}: {path.text}',
        )
    return value


def _query_failure(state: State, frame: Frame, message: str) -> StatesFailure:
    return StatesFailure(
        QUERY_EVALUATION_ERROR,
        f"An error occurred while executing the state '{state.name}' (entered at the event "
        f"id #{frame.entered}). {message}",
    )


def jsonata_items(run: Run, state: State, frame: Frame, data: Any, ctx: Any) -> list[Any]:
    """A JSONata Map's items: Items (an array, or an expression giving one), else the input.

    Not an array: AWS's 2025 pages (ItemsPath, Items) say a Map iterates over an object's
    key-value pairs, but none shows what an iteration receives; until one does, an object
    is refused as before, in the words of LocalStack's interpreter (checked against AWS):
    States.QueryEvaluationError located at Items, or the JSONPath Map's error for an
    input that is not an array."""
    if "Items" not in state.fields:
        if not isinstance(data, list):
            raise StatesFailure(RUNTIME, f"Map state input must be an array but was: "
                                f"{json_type(data)}")  # fmt: skip
        return data
    template = state.fields["Items"]
    # Items that is not an array literal (the validator's rule) is an expression.
    text = getattr(getattr(template, "__self__", None), "text", None)

    def an_array(states: Any, lookup: Any) -> Any:
        items = template(states, lookup)
        if not isinstance(items, list):
            failure = StatesFailure(
                QUERY_EVALUATION_ERROR,
                f"The JSONata expression '{text}' specified for the field 'Items' returned an "
                f"unexpected result type. Expected 'array', but was '{json_type(items)}' for "
                f"value: {dumps(items)}",
            )
            failure.location = "Items"  # type: ignore[attr-defined]
            raise failure
        return items

    items: list[Any] = evaluate(run, state, frame, an_array, states_of(data, ctx))
    return items


def jsonata_selected(
    run: Run, state: State, frame: Frame, data: Any, ctx: Any, items: list[Any],
    sources: list[str] | None = None,
) -> list[Any]:  # fmt: skip
    """Each item's input: ItemSelector evaluated with `$states.context.Map.Item` (whose
    Source is `sources[i]`, STATE_DATA without them), or the item itself."""
    selector = state.fields.get("ItemSelector")
    if selector is None:
        return items
    selected = []
    for i, item in enumerate(items):
        source = sources[i] if sources is not None else STATE_DATA
        states = states_of(data, item_context(ctx, i, item, source))
        selected.append(evaluate(run, state, frame, selector, states))
    return selected


def jsonata_limits(
    run: Run, state: State, frame: Frame, data: Any, ctx: Any
) -> tuple[int | None, float | None, int]:
    """(ToleratedFailureCount, ToleratedFailurePercentage, MaxConcurrency) of a JSONata Map."""
    states = states_of(data, ctx)
    values: list[Any] = []
    for field, default in (
        ("ToleratedFailureCount", state.tolerated_count),
        ("ToleratedFailurePercentage", state.tolerated_percentage),
        ("MaxConcurrency", state.max_concurrency),
    ):
        value = default
        if field in state.fields:
            value = evaluate(run, state, frame, state.fields[field], states)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
            if field != "ToleratedFailurePercentage":
                ok = ok and float(value).is_integer()
            if not ok or (field == "ToleratedFailurePercentage" and value > 100):
                raise _query_failure(
                    state,
                    frame,
                    f"The field '{field}' must evaluate to a non-negative number, got "
                    f"{dumps(value)}",
                )
            value = value if field == "ToleratedFailurePercentage" else int(value)
        values.append(value)
    return values[0], values[1], int(values[2] or 0)


# --- the Map Run ----------------------------------------------------------------------------


def run_distributed_map(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Map in Distributed mode: a Map Run of child workflow executions."""
    enter(run, state, data, frame)
    spec = state.distributed
    assert spec is not None and state.iterator is not None  # run_map sends only these here

    def attempt(retry_count: int) -> Any:
        ctx = run.state_context(state, retry_count) or run.context
        field = _Fields(run, state, frame, data, ctx)
        items: Any = None
        if state.jsonata:
            count, pct, concurrency = jsonata_limits(run, state, frame, data, ctx)
            if spec.item_reader is None:
                items = jsonata_items(run, state, frame, data, ctx)
        else:
            concurrency = map_concurrency(state, field.effective)
            if spec.item_reader is None:
                items = map_items(state, field.effective, ctx)
        length = 0 if items is None else len(items)
        run.emit(frame, "MapStateStarted", "mapStateStartedEventDetails", {"length": length})
        if not state.jsonata:
            count, pct = map_tolerance(state, field.effective)
        if count is None and pct is None:
            count = 0  # a Distributed Map tolerates no failure unless told otherwise
        prior = _redriven(run, state)
        map_run = _start_map_run(run, state, None if prior is None else prior.arn)
        if prior is None:
            run.emit(frame, "MapRunStarted", "mapRunStartedEventDetails",
                     {"mapRunArn": map_run.arn})  # fmt: skip
        else:  # AWS's MapRunRedrivenEventDetails: redriveCount counts this redrive
            redriven = {"mapRunArn": map_run.arn, "redriveCount": prior.redrive_count + 1}
            run.emit(frame, "MapRunRedriven", "mapRunRedrivenEventDetails", redriven)
        try:
            sources: list[str] | None = None  # None: every item's Source is STATE_DATA
            if items is None:
                items, sources = _read(spec, field)
            children = _children(state, spec.item_batcher, items, sources, field)
            if prior is not None:
                attach_prior(children, prior)
            failed = _run_children(run, state, map_run, children, concurrency, count, pct)
            if run.stop is not None and run.stop.is_set():
                # Stopped: the children ended ABORTED; so does this execution, not a failure.
                raise ExecutionAborted(state.name, "the execution was stopped")
            threshold = exceeds_tolerance(count, pct, failed, len(items))
            writer = spec.result_writer
            params = None
            if writer is not None and writer.parameters is not None:
                params = field.value(writer.parameters, writer.jsonata)
            result = map_results(run, writer, map_run, children, params)
        except ExecutionAborted:
            run.emit(frame, "MapRunAborted")
            raise
        except StatesFailure as failure:
            details = {k: v for k, v in (("error", failure.error), ("cause", failure.cause)) if v}
            run.emit(frame, "MapRunFailed", "mapRunFailedEventDetails", details)
            run.emit(frame, "MapStateFailed")
            raise
        if threshold:
            details = {"error": EXCEED_TOLERATED_FAILURE_THRESHOLD, "cause": THRESHOLD_CAUSE}
            run.emit(frame, "MapRunFailed", "mapRunFailedEventDetails", details)
            run.emit(frame, "MapStateFailed")
            raise StatesFailure(EXCEED_TOLERATED_FAILURE_THRESHOLD, THRESHOLD_CAUSE)
        run.emit(frame, "MapRunSucceeded")
        run.emit(frame, "MapStateSucceeded")
        return finish_result(run, state, frame, data, result, ctx)

    output, nxt, pending = guarded(run, state, data, frame, attempt)
    exit_state(run, state, output, frame, apply_assign(state, pending, frame))
    return output, nxt


def _redriven(run: Run, state: State) -> PriorMapRun | None:
    """The Map Run this state redrives: the one handed in for it (a top-level state of the
    redriven execution), on its first attempt only; a retry starts a new Map Run."""
    prior = run.redrive_map_run
    top_level = run.machine.states.get(state.name) is state
    if prior is None or prior.state != state.name or not top_level:
        return None
    run.redrive_map_run = None
    return prior


def _start_map_run(run: Run, state: State, arn: str | None = None) -> MapRun:
    """A new Map Run, or with `arn` the one being redriven (same ARN, same child machine)."""
    machine = run.machine
    name, run_id = f"{machine.name}/{state.label or new_request_id()}", new_request_id()
    if arn is not None:  # arn:aws:states:REGION:ACCOUNT:mapRun:MACHINE/LABEL:ID
        name, run_id = arn.rsplit(":", 2)[1:]
    assert state.iterator is not None
    child = dataclasses.replace(
        state.iterator, name=name, region=machine.region, account=machine.account,
        uses_context=machine.uses_context, function_names=machine.function_names,
        uses_store=machine.uses_store, timeout_seconds=None,
    )  # fmt: skip
    arn = f"arn:aws:states:{machine.region}:{machine.account}:mapRun:{name}:{run_id}"
    return MapRun(arn, run_id, child, str(run.context["Execution"]["Id"]))


class _Fields:
    """What a Distributed Map's own fields are evaluated against: in JSONPath the effective
    input and the context object (payload templates, `...Path` fields), in JSONata
    `$states` (the state input and the context object) and the variables in scope."""

    def __init__(self, run: Run, state: State, frame: Frame, data: Any, ctx: Any) -> None:
        self.run, self.state, self.frame, self.data, self.ctx = run, state, frame, data, ctx
        self.effective = data if state.jsonata else effective_input(state, data, ctx)

    def value(self, template: Template, jsonata: bool) -> Any:
        if jsonata:
            states = states_of(self.data, self.ctx)
            return evaluate(self.run, self.state, self.frame, template, states)
        return template(self.effective, self.ctx)

    def positive(self, template: Template | None, path: PathValue | None, field: str) -> Any:
        """A batch limit: a literal or JSONata value (template), or a Path's value."""
        if path is not None:
            return _positive(path, self.effective, f"{field}Path")
        if template is None:
            return None
        value = self.value(template, True)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise _query_failure(
                self.state,
                self.frame,
                f"The field 'ItemBatcher/{field}' must evaluate to a positive integer, got "
                f"{dumps(value)}",
            )
        return value


def _read(spec: DistributedSpec, field: _Fields) -> tuple[list[Any], list[str]]:
    """The ItemReader's items, and the `Map.Item.Source` of each."""
    reader = spec.item_reader
    assert reader is not None
    effective, ctx, run = field.effective, field.ctx, field.run
    max_items: Any = reader.max_items
    if reader.max_items_expression is not None:
        max_items = field.value(reader.max_items_expression, True)
        if isinstance(max_items, float) and max_items.is_integer():
            max_items = int(max_items)
        if not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 0:
            raise StatesFailure(ITEM_READER_FAILED, "field MaxItems must be positive")
    if reader.max_items_path is not None:
        value = select(reader.max_items_path.getter, reader.max_items_path.text, effective, ctx,
                       "MaxItemsPath")
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise StatesFailure(
                ITEM_READER_FAILED,
                f"The MaxItemsPath field refers to value '{value}' which is not a valid "
                f"integer: {reader.max_items_path.text}",
            )
        if value < 0:
            raise StatesFailure(ITEM_READER_FAILED, "field MaxItems must be positive")
        max_items = value
    params = field.value(reader.parameters, reader.jsonata)
    sourced = read_sourced_items(run.store, reader.resource, params, reader.config, max_items)
    return [item for item, _ in sourced], [source for _, source in sourced]


def _children(
    state: State, batcher: ItemBatcherSpec | None, items: list[Any], sources: list[str] | None,
    field: _Fields,
) -> list[Child]:  # fmt: skip
    """ItemSelector on each item, then ItemBatcher: the inputs of the child executions."""
    values = items
    if state.jsonata:
        values = jsonata_selected(field.run, state, field.frame, field.data, field.ctx, items,
                                  sources)  # fmt: skip
    elif state.item_selector is not None:
        values = []
        for index, item in enumerate(items):
            source = sources[index] if sources is not None else STATE_DATA
            item_ctx = item_context(field.ctx, index, item, source)
            values.append(state.item_selector(field.effective, item_ctx))
    if batcher is None:
        return [Child(i, v, dumps(v)) for i, v in enumerate(values)]
    return _batches(batcher, values, field)


def _batches(batcher: ItemBatcherSpec, values: list[Any], field: _Fields) -> list[Child]:
    """Group items as `{"BatchInput": ..., "Items": [...]}` (AWS: "ItemBatcher (Map)"),
    at most MaxItemsPerBatch items and MaxInputBytesPerBatch bytes of input each."""
    max_items = batcher.max_items
    if batcher.max_items is None:
        max_items = field.positive(
            batcher.max_items_expression, batcher.max_items_path, "MaxItemsPerBatch"
        )
    max_bytes = batcher.max_bytes
    if batcher.max_bytes is None:
        max_bytes = field.positive(
            batcher.max_bytes_expression, batcher.max_bytes_path, "MaxInputBytesPerBatch"
        )
    if max_bytes is None:
        # AWS: "If you use batching and don't specify a maximum batch size, the interpreter
        # processes as many items it can process up to 256 KiB in each child workflow".
        max_bytes = MAX_BATCH_BYTES
    head: dict[str, Any] = {}
    if batcher.batch_input is not None:
        head["BatchInput"] = field.value(batcher.batch_input, batcher.jsonata)
    # Bytes of {"BatchInput":...,"Items":[]} and of each item with its comma.
    base = len(dumps({**head, "Items": []}).encode())
    groups: list[list[Any]] = []
    size = 0
    for value in values:
        item_bytes = len(dumps(value).encode()) + 1
        full = groups and (
            (max_items is not None and len(groups[-1]) >= max_items)
            or (max_bytes is not None and size + item_bytes > max_bytes)
        )
        if not groups or full:
            if max_bytes is not None and base + item_bytes - 1 > max_bytes:
                raise StatesFailure(
                    RUNTIME,
                    f"An item of {item_bytes - 1} bytes does not fit MaxInputBytesPerBatch "
                    f"({max_bytes} bytes with the batch's own {base} bytes); raise the limit",
                )
            groups.append([])
            size = base - 1  # the first item brings no comma
        groups[-1].append(value)
        size += item_bytes
    children = []
    for index, group in enumerate(groups):
        batch = {**head, "Items": group}
        children.append(Child(index, batch, dumps(batch)))
    return children


def _positive(path: PathValue, effective: Any, field: str) -> int:
    value = int(_path_number(path, effective, field, "integer"))
    if value <= 0:
        raise StatesFailure(RUNTIME, f"{field} must select a positive integer, got {value}")
    return value


def _run_children(
    run: Run, state: State, map_run: MapRun, children: list[Child], concurrency: int,
    count: int | None, pct: float | None,
) -> int:  # fmt: skip
    """Run the child executions, at most `concurrency` at once; stop starting new ones once
    the failures exceed the tolerance. Returns the number of failed items."""
    total = sum(_items_in(c, state) for c in children)
    failed = [0]
    stop = threading.Event()
    lock = threading.Lock()
    execution_type = state.distributed.execution_type if state.distributed else "STANDARD"

    def one(child: Child) -> None:
        if child.status != "PENDING":
            return  # succeeded before this Map Run was redriven: its output stands
        if stop.is_set() or (run.stop is not None and run.stop.is_set()):
            return  # stays PENDING
        _run_child(run, map_run, child, execution_type)
        if child.status != "SUCCEEDED":
            with lock:
                failed[0] += _items_in(child, state)
                if exceeds_tolerance(count, pct, failed[0], total):
                    stop.set()

    workers = min(run.max_workers, concurrency or len(children), len(children))
    if workers <= 1:
        for child in children:
            one(child)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, children))
    return failed[0]


def _items_in(child: Child, state: State) -> int:
    """Items a child carries: a batch counts each of its items (tolerance counts items)."""
    if state.distributed is not None and state.distributed.item_batcher is not None:
        return len(child.input["Items"])
    return 1


def _run_child(run: Run, map_run: MapRun, child: Child, execution_type: str) -> None:
    """Run one child execution; a STANDARD child that failed before its Map Run was
    redriven is redriven itself: same ARN and start date, from the state it failed in,
    its history continued. Any other child (an EXPRESS one included) runs as a new
    execution from StartAt."""
    machine = map_run.machine
    started = run.clock.now()
    prior = child.prior if execution_type == "STANDARD" else None
    data, data_json, start_at = child.input, child.input_json, None
    if prior is not None:
        child.name, child.arn, child.start = prior.name, prior.arn, prior.start
        child.redrive_count = prior.redrive_count + 1
        if prior.failed_state in machine.states:
            data, start_at = prior.state_input, prior.failed_state
            data_json = dumps(data)
    else:
        child.name = new_request_id()
        where = f"{machine.region}:{machine.account}"
        child.arn = f"arn:aws:states:{where}:execution:{machine.name}:{child.name}"
        child.start = iso_millis(started)
    if not within_quota(child.input_json):
        child.status, child.error, child.stop = "FAILED", DATA_LIMIT_EXCEEDED, child.start
        child.cause = "The child workflow execution's input exceeds the 262144-byte limit"
        return
    listener = _drop
    if run.children is not None:
        listener = run.children(ChildExecution(
            arn=child.arn, name=child.name, state_machine=machine.name, map_run_arn=map_run.arn,
            parent_arn=map_run.parent_arn, execution_type=execution_type, input=child.input,
            definition=machine.definition, start_date=started,
            redrive_count=child.redrive_count,
        ))  # fmt: skip
    assert run.spawn is not None  # engine.execute hands itself in
    result = run.spawn(
        machine, data, data_json, run.handlers, name=child.name,
        listener=listener, clock=run.clock, start_at=start_at, execution_input=child.input,
        role_arn=run.context["Execution"]["RoleArn"], max_workers=1, stop=run.stop,
        store=run.store, children=run.children, redrive_count=child.redrive_count,
        redrive_time=started if child.redrive_count else None,
    )  # fmt: skip
    child.status, child.output = result.status, result.output
    child.error, child.cause = result.error, result.cause
    child.stop = iso_millis(result.stop_date)


def _drop(event: Any) -> None:
    """The listener of a child execution nobody records."""
