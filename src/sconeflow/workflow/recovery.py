"""Retry and Catch (spec: "Error Handling"): which errors a list matches, how long to wait
before a retry, and `guarded`, which runs a state's work under its Retry and Catch."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from .dataflow import evaluate, jsonpath_assign, states_of
from .errors import (
    ALL,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
    StatesFailure,
)
from .machine import Catcher, Retrier, State
from .paths import set_path
from .run import Frame, Run

Pending = dict[str, Any] | None  # the variables a state will assign when it ends


def error_matches(names: tuple[str, ...], error: str | None) -> bool:
    """Whether an ErrorEquals list matches an error name, with AWS's wildcard rules.

    States.ALL matches everything but States.Runtime; States.TaskFailed matches the same
    minus States.Timeout. The error-handling guide calls States.DataLimitExceeded
    terminal and out of States.ALL's reach, but executions recorded on AWS show a Task
    whose result is too large failing with a TaskFailed that a States.ALL catcher
    catches (the output of a state that exceeds the quota is never caught: it happens
    after Retry and Catch, see dataflow.exit_state).
    """
    for name in names:
        if name == error:
            return True
        if name in (ALL, TASK_FAILED) and error != RUNTIME and (name == ALL or error != TIMEOUT):
            return True
    return False


def retry_delay(retrier: Retrier, attempt: int, rng: random.Random) -> float:
    """Seconds before retry number `attempt + 1`: IntervalSeconds * BackoffRate**attempt,
    capped by MaxDelaySeconds, and drawn uniformly below that with JitterStrategy FULL."""
    delay = retrier.interval * retrier.backoff**attempt
    if retrier.max_delay is not None:
        delay = min(delay, retrier.max_delay)
    if retrier.jitter == "FULL":
        delay = rng.uniform(0, delay)
    return delay


def guarded(
    run: Run,
    state: State,
    data: Any,
    frame: Frame,
    attempt: Callable[[int], tuple[Any, Pending]],
    give_up: Callable[[], None] | None = None,
) -> tuple[Any, str | None, Pending]:
    """Run `attempt(retry_count) -> (output, pending Assign)` under the state's Retry and
    Catch; returns (output, next, pending Assign): a catcher's own when one caught.

    `give_up()` runs once a failure is final (no retrier takes it), before a catcher
    does: a Parallel or Map records its ParallelStateFailed/MapStateFailed there, because
    AWS writes that event once, when the state gives up, not after each failed attempt.
    """
    counts = [0] * len(state.retry)
    retries = 0
    while True:
        try:
            output, pending = attempt(retries)
            return output, state.next, pending
        except StatesFailure as failure:
            if failure.error == RUNTIME:
                if give_up is not None:
                    give_up()
                raise  # never retried nor caught (AWS)
            # Only the first retrier whose ErrorEquals matches applies (spec: "Retry").
            matching = (
                k for k, r in enumerate(state.retry) if error_matches(r.errors, failure.error)
            )
            i = next(matching, -1)
            if i >= 0 and counts[i] < state.retry[i].max_attempts:
                run.sleep(retry_delay(state.retry[i], counts[i], run.rng))
                counts[i] += 1
                retries += 1
                continue
            if give_up is not None:
                give_up()
            for catcher in state.catch:
                if error_matches(catcher.errors, failure.error):
                    # A missing error or cause is bound as "" (a Fail state without Cause).
                    error_output = {"Error": failure.error or "", "Cause": failure.cause or ""}
                    output, pending = _caught(run, state, data, frame, catcher, error_output)
                    return output, catcher.next, pending
            raise


def _caught(
    run: Run, state: State, data: Any, frame: Frame, catcher: Catcher, error_output: Any
) -> tuple[Any, Pending]:
    """The state's output and Assign when `catcher` caught its error."""
    ctx = run.state_context(state)
    if state.jsonata:
        states = states_of(data, ctx, errorOutput=error_output)
        output = error_output
        if catcher.output is not None:
            output = evaluate(run, state, frame, catcher.output, states)
        pending = None
        if catcher.assign is not None:
            pending = evaluate(run, state, frame, catcher.assign, states)
        return output, pending
    pending = jsonpath_assign(catcher.assign, error_output, ctx)
    if catcher.result_path is None:
        return data, pending
    try:
        return set_path(data, catcher.result_path, error_output), pending
    except ValueError as err:
        raise StatesFailure(RESULT_PATH_MATCH_FAILURE, str(err)) from err
