"""The states with sub-machines (spec: "Parallel State", "Map State"): branches and Map
iterations run in order on the calling thread by default (fastest for in-process
handlers); `max_workers > 1` runs them on a thread pool bounded by MaxConcurrency, for
handlers that wait on I/O. Outputs keep item/branch order either way, as in AWS."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .data import json_type
from .dataflow import effective_input, enter, exit_state, finish, select
from .distributed import exceeds_tolerance, map_concurrency, map_tolerance, run_distributed_map
from .errors import EXCEED_TOLERATED_FAILURE_THRESHOLD, RUNTIME, StatesFailure
from .machine import State, StateMachine
from .recovery import guarded
from .run import Frame, Run, run_states

_ABORTED = "States.Aborted"  # marks Map iterations skipped after another one failed


def run_parallel(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Parallel (spec: "Parallel State"): every branch gets the effective input; the result
    is the array of branch outputs in branch order. The first failing branch fails the state."""
    enter(run, state, data, frame)

    def attempt(retry_count: int) -> Any:
        ctx = run.state_context(state, retry_count)
        effective = effective_input(state, data, ctx)
        run.emit(frame, "ParallelStateStarted")
        jobs = [(branch, effective) for branch in state.branches]
        outcomes = fan_out(run, jobs, frame, limit=0)
        for outcome in outcomes:
            if isinstance(outcome, StatesFailure):
                run.emit(frame, "ParallelStateFailed")
                raise outcome
        run.emit(frame, "ParallelStateSucceeded")
        return finish(state, data, outcomes, ctx)

    output, nxt = guarded(run, state, data, frame, attempt)
    exit_state(run, state, output, frame)
    return output, nxt


def run_map(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Map (spec: "Map State"): run the ItemProcessor on each item of ItemsPath; the result
    is the array of outputs in item order. ToleratedFailureCount/Percentage let some
    iterations fail (their entries hold the error); past that, the state fails. A Map in
    Distributed mode runs as a Map Run of child executions (distributed.py)."""
    if state.distributed is not None:
        return run_distributed_map(run, state, data, frame)
    enter(run, state, data, frame)
    assert state.iterator is not None  # machine.py sets it for every Map
    iterator = state.iterator

    def attempt(retry_count: int) -> Any:
        ctx = run.state_context(state, retry_count)
        effective = effective_input(state, data, ctx)
        items = (
            effective
            if state.items_path is None
            else select(state.items_path, state.items_path_text, effective)
        )
        if not isinstance(items, list):
            raise StatesFailure(
                RUNTIME,
                f"Map state input must be an array but was: {json_type(items)} "
                f"(ItemsPath '{state.items_path_text}')",
            )
        limit = state.max_concurrency if state.max_concurrency_path is None else (
            map_concurrency(state, effective)
        )
        run.emit(frame, "MapStateStarted", "mapStateStartedEventDetails", {"length": len(items)})
        count, pct = state.tolerated_count, state.tolerated_percentage
        if state.tolerated_count_path is not None or state.tolerated_percentage_path is not None:
            count, pct = map_tolerance(state, effective)
        inputs = []
        for index, item in enumerate(items):
            if state.item_selector is None:
                inputs.append(item)
            else:
                item_ctx = dict(ctx or run.context)
                item_ctx["Map"] = {"Item": {"Index": index, "Value": item}}
                inputs.append(state.item_selector(effective, item_ctx))
        tolerant = count is not None or pct is not None
        jobs = [(iterator, value) for value in inputs]
        outcomes = fan_out(
            run,
            jobs,
            frame,
            limit=limit,
            map_name=state.name,
            stop_on_failure=not tolerant,
        )
        failures = [o for o in outcomes if isinstance(o, StatesFailure) and o.error != _ABORTED]
        if failures and not tolerant:
            run.emit(frame, "MapStateFailed")
            raise failures[0]
        if failures and exceeds_tolerance(count, pct, len(failures), len(items)):
            run.emit(frame, "MapStateFailed")
            raise StatesFailure(
                EXCEED_TOLERATED_FAILURE_THRESHOLD,
                "The specified tolerated failure threshold was exceeded",
            )
        run.emit(frame, "MapStateSucceeded")
        results = [
            {"Error": o.error, "Cause": o.cause} if isinstance(o, StatesFailure) else o
            for o in outcomes
        ]
        return finish(state, data, results, ctx)

    output, nxt = guarded(run, state, data, frame, attempt)
    exit_state(run, state, output, frame)
    return output, nxt


def fan_out(
    run: Run,
    jobs: list[tuple[StateMachine, Any]],
    frame: Frame,
    *,
    limit: int,
    map_name: str | None = None,
    stop_on_failure: bool = True,
) -> list[Any]:
    """Run sub-machines (branches or Map iterations); each outcome: an output or a StatesFailure."""
    stop = threading.Event()

    def one(index: int) -> Any:
        machine, value = jobs[index]
        sub = Frame(frame.last)
        if map_name is not None:
            if stop.is_set():
                run.emit(
                    sub,
                    "MapIterationAborted",
                    "mapIterationAbortedEventDetails",
                    {"name": map_name, "index": index},
                )
                return StatesFailure(_ABORTED)
            run.emit(
                sub,
                "MapIterationStarted",
                "mapIterationStartedEventDetails",
                {"name": map_name, "index": index},
            )
        try:
            output = run_states(run, machine, value, sub)
        except StatesFailure as failure:
            if map_name is not None:
                run.emit(
                    sub,
                    "MapIterationFailed",
                    "mapIterationFailedEventDetails",
                    {"name": map_name, "index": index},
                )
            if stop_on_failure:
                stop.set()
            return failure
        if map_name is not None:
            run.emit(
                sub,
                "MapIterationSucceeded",
                "mapIterationSucceededEventDetails",
                {"name": map_name, "index": index},
            )
        return output

    workers = min(run.max_workers, limit or len(jobs), len(jobs))
    if workers <= 1:
        outcomes = []
        for i in range(len(jobs)):
            outcome = one(i)
            outcomes.append(outcome)
            if isinstance(outcome, StatesFailure) and stop_on_failure:
                break
        return outcomes
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(jobs))))
