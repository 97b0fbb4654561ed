"""The states with sub-machines (spec: "Parallel State", "Map State"): branches and Map
iterations run in order on the calling thread by default (fastest for in-process
handlers); `max_workers > 1` runs them on a thread pool bounded by MaxConcurrency, for
handlers that wait on I/O. Outputs keep item/branch order either way, as in AWS."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .dataflow import (
    apply_assign,
    effective_input,
    enter,
    evaluate,
    exit_state,
    finish_result,
    item_context,
    map_items,
    states_of,
)
from .distributed import (
    exceeds_tolerance,
    jsonata_items,
    jsonata_limits,
    jsonata_selected,
    map_concurrency,
    map_tolerance,
    run_distributed_map,
)
from .errors import EXCEED_TOLERATED_FAILURE_THRESHOLD, StatesFailure
from .machine import State, StateMachine
from .recovery import guarded
from .run import Frame, Run, run_states
from .variables import Scope

_ABORTED = "States.Aborted"  # marks Map iterations skipped after another one failed


def run_parallel(run: Run, state: State, data: Any, frame: Frame) -> tuple[Any, str | None]:
    """Parallel (spec: "Parallel State"): every branch gets the effective input; the result
    is the array of branch outputs in branch order. The first failing branch fails the state."""
    enter(run, state, data, frame)
    started = [False]  # this attempt's ParallelStateStarted awaits its ParallelStateFailed

    def attempt(retry_count: int) -> tuple[Any, Any]:
        started[0] = False
        ctx = run.state_context(state, retry_count)
        if state.jsonata:
            states = states_of(data, ctx)
            effective = data
            if state.arguments is not None:
                effective = evaluate(run, state, frame, state.arguments, states)
        else:
            effective = effective_input(state, data, ctx)
        run.emit(frame, "ParallelStateStarted")
        started[0] = True
        jobs = [(branch, effective) for branch in state.branches]
        outcomes = fan_out(run, jobs, frame, limit=0)
        for outcome in outcomes:
            if isinstance(outcome, StatesFailure):
                raise outcome
        started[0] = False
        run.emit(frame, "ParallelStateSucceeded")
        return finish_result(run, state, frame, data, outcomes, ctx)

    def give_up() -> None:
        if started[0]:
            run.emit(frame, "ParallelStateFailed")

    output, nxt, pending = guarded(run, state, data, frame, attempt, give_up)
    exit_state(run, state, output, frame, apply_assign(state, pending, frame))
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
    started = [False]  # this attempt's MapStateStarted awaits its MapStateFailed

    def attempt(retry_count: int) -> tuple[Any, Any]:
        started[0] = False
        ctx = run.state_context(state, retry_count)
        if state.jsonata:
            items, inputs, limits = _jsonata_items(run, state, frame, data, ctx)
            tolerated_count, tolerated_percentage, max_concurrency = limits
        else:
            effective = effective_input(state, data, ctx)
            items = map_items(state, effective, ctx)
            inputs = []
            for index, item in enumerate(items):
                if state.item_selector is None:
                    inputs.append(item)
                else:
                    item_ctx = item_context(ctx or run.context, index, item)
                    inputs.append(state.item_selector(effective, item_ctx))
            tolerated_count = state.tolerated_count
            tolerated_percentage = state.tolerated_percentage
            max_concurrency = state.max_concurrency
            if state.max_concurrency_path is not None:
                max_concurrency = map_concurrency(state, effective)
            if state.tolerated_count_path or state.tolerated_percentage_path:
                tolerated_count, tolerated_percentage = map_tolerance(state, effective)
        run.emit(frame, "MapStateStarted", "mapStateStartedEventDetails", {"length": len(items)})
        started[0] = True
        tolerant = tolerated_count is not None or tolerated_percentage is not None
        jobs = [(iterator, value) for value in inputs]
        outcomes = fan_out(
            run,
            jobs,
            frame,
            limit=max_concurrency,
            map_name=state.name,
            stop_on_failure=not tolerant,
        )
        failures = [o for o in outcomes if isinstance(o, StatesFailure) and o.error != _ABORTED]
        if failures and not tolerant:
            raise failures[0]
        exceeded = exceeds_tolerance(
            tolerated_count, tolerated_percentage, len(failures), len(items)
        )
        if failures and exceeded:
            raise StatesFailure(
                EXCEED_TOLERATED_FAILURE_THRESHOLD,
                "The specified tolerated failure threshold was exceeded",
            )
        started[0] = False
        run.emit(frame, "MapStateSucceeded")
        results = [
            {"Error": o.error, "Cause": o.cause} if isinstance(o, StatesFailure) else o
            for o in outcomes
        ]
        return finish_result(run, state, frame, data, results, ctx)

    def give_up() -> None:
        if started[0]:
            run.emit(frame, "MapStateFailed")

    output, nxt, pending = guarded(run, state, data, frame, attempt, give_up)
    exit_state(run, state, output, frame, apply_assign(state, pending, frame))
    return output, nxt


def _jsonata_items(
    run: Run, state: State, frame: Frame, data: Any, ctx: Any
) -> tuple[list[Any], list[Any], tuple[Any, Any, int]]:
    """A JSONata Map's items (Items, default the input), each iteration's input
    (ItemSelector, with `$states.context.Map.Item`), and its evaluated limits."""
    items = jsonata_items(run, state, frame, data, ctx)
    inputs = jsonata_selected(run, state, frame, data, ctx, items)
    return items, inputs, jsonata_limits(run, state, frame, data, ctx)


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
        sub = Frame(frame.last, Scope(frame.scope))  # reads the outer variables
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
            sub.scope.close()
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
        sub.scope.close()
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
