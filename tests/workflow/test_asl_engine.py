"""Engine semantics checked against AWS's documentation with local handlers and a fake clock:
Task resources, Retry/Catch rules, timeouts, limits, history events, redrive."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from typing import Any

import pytest

from sconeflow.errors import WorkflowError
from sconeflow.workflow import (
    FakeClock,
    HandlerError,
    InMemoryHistory,
    error_matches,
    parse_definition,
    retry_delay,
    run_execution,
)
from sconeflow.workflow.clock import SystemClock
from sconeflow.workflow.machine import Retrier

FN = "arn:aws:lambda:us-east-1:123456789012:function:{}"
INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ],
        "IntervalSeconds": 2,
        "MaxAttempts": 6,
        "BackoffRate": 2,
    }
]


class ServiceException(Exception):
    pass


def invoke_state(fn: str, **extra: Any) -> dict[str, Any]:
    state = {
        "Type": "Task",
        "Resource": INVOKE,
        "Parameters": {"FunctionName": FN.format(fn) + ":$LATEST", "Payload.$": "$"},
        **extra,
    }
    if "Next" not in state:
        state["End"] = True
    return state


def machine(*states: tuple[str, dict[str, Any]], **top: Any) -> Any:
    return parse_definition({"StartAt": states[0][0], "States": dict(states), **top})


def failing(times: int, exc: type[Exception] = ServiceException) -> Any:
    calls = {"n": 0}

    def handler(event: Any, context: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc(f"failure {calls['n']}")
        return {"ok": calls["n"]}

    handler.calls = calls  # type: ignore[attr-defined]
    return handler


# --- the reference workflow --------------------------------------------------------------


REFERENCE = {
    "StartAt": "serializeImageData",
    "States": {
        "serializeImageData": invoke_state(
            "serializeImageData", OutputPath="$.Payload", Retry=LAMBDA_RETRY, Next="classify"
        ),
        "classify": invoke_state(
            "classify", OutputPath="$.Payload", Retry=LAMBDA_RETRY, Next="filter"
        ),
        "filter": invoke_state("filter", OutputPath="$.Payload", Retry=LAMBDA_RETRY),
    },
}


def reference_handlers(threshold: float = 0.93) -> dict[str, Any]:
    def serialize(event: Any, context: Any) -> Any:
        return {**event, "image_data": "aGVsbG8="}

    def classify(event: Any, context: Any) -> Any:
        return {**event, "inferences": [0.97, 0.03]}

    def filter_low(event: Any, context: Any) -> Any:
        if max(event["inferences"]) < threshold:
            raise ValueError("THRESHOLD_CONFIDENCE_NOT_MET")
        return event

    return {"serializeImageData": serialize, "classify": classify, "filter": filter_low}


def test_reference_workflow_succeeds_with_aws_history() -> None:
    result = run_execution(
        parse_definition(REFERENCE),
        {"s3_key": "test/bicycle_s_000513.png"},
        reference_handlers(),
        name="run-1",
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {
        "s3_key": "test/bicycle_s_000513.png",
        "image_data": "aGVsbG8=",
        "inferences": [0.97, 0.03],
    }
    types = [e["type"] for e in result.events]
    assert types == ["ExecutionStarted"] + [
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
    ] * 3 + ["ExecutionSucceeded"]
    assert [e["id"] for e in result.events] == list(range(1, len(types) + 1))
    assert [e["previousEventId"] for e in result.events] == list(range(0, len(types)))
    scheduled = result.events[2]["taskScheduledEventDetails"]
    assert scheduled["resourceType"] == "lambda" and scheduled["resource"] == "invoke"
    assert json.loads(scheduled["parameters"])["FunctionName"].endswith(
        ":function:serializeImageData:$LATEST"
    )
    succeeded = json.loads(result.events[4]["taskSucceededEventDetails"]["output"])
    assert set(succeeded) == {
        "ExecutedVersion",
        "Payload",
        "SdkHttpMetadata",
        "SdkResponseMetadata",
        "StatusCode",
    }
    assert succeeded["StatusCode"] == 200 and succeeded["ExecutedVersion"] == "$LATEST"
    assert succeeded["SdkHttpMetadata"]["HttpStatusCode"] == 200
    assert result.execution_arn == "arn:aws:states:us-east-1:123456789012:execution:sconeflow:run-1"
    assert (
        json.loads(result.events[-1]["executionSucceededEventDetails"]["output"]) == result.output
    )


def test_reference_workflow_fails_below_threshold_with_lambda_cause() -> None:
    result = run_execution(parse_definition(REFERENCE), {}, reference_handlers(threshold=0.99))
    assert result.status == "FAILED"
    assert result.error == "ValueError"
    cause = json.loads(result.cause or "")
    assert list(cause) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert (
        cause["errorMessage"] == "THRESHOLD_CONFIDENCE_NOT_MET"
        and cause["errorType"] == "ValueError"
    )
    assert any("filter_low" in line for line in cause["stackTrace"])
    assert result.failed_state == "filter"
    assert [e["type"] for e in result.events[-3:]] == [
        "TaskStarted",
        "TaskFailed",
        "ExecutionFailed",
    ]
    assert result.events[-1]["executionFailedEventDetails"] == {
        "error": "ValueError",
        "cause": result.cause,
    }


def test_redrive_from_failed_state_with_its_input() -> None:
    definition = parse_definition(REFERENCE)
    failed = run_execution(definition, {"k": 1}, reference_handlers(threshold=0.99))
    entered = [e for e in failed.events if e["type"] == "TaskStateEntered"][-1]
    state_input = json.loads(entered["stateEnteredEventDetails"]["input"])
    redriven = run_execution(
        definition, state_input, reference_handlers(), start_at=failed.failed_state
    )
    assert redriven.status == "SUCCEEDED"
    assert [e["type"] for e in redriven.events][1] == "TaskStateEntered"
    assert redriven.events[1]["stateEnteredEventDetails"]["name"] == "filter"
    with pytest.raises(HandlerError, match="start_at 'nope'"):
        run_execution(definition, {}, reference_handlers(), start_at="nope")


def test_plain_function_arn_passes_input_and_returns_handler_result() -> None:
    seen: list[Any] = []

    def handler(event: Any, context: Any) -> Any:
        seen.append((event, context.function_name, context.invoked_function_arn))
        return {"got": event}

    m = machine(("T", {"Type": "Task", "Resource": FN.format("fn") + ":prod", "End": True}))
    result = run_execution(m, {"a": 1}, {"fn": handler})
    assert result.output == {"got": {"a": 1}}
    assert seen == [({"a": 1}, "fn", FN.format("fn") + ":prod")]
    assert [e["type"] for e in result.events[1:-1]] == [
        "TaskStateEntered",
        "LambdaFunctionScheduled",
        "LambdaFunctionStarted",
        "LambdaFunctionSucceeded",
        "TaskStateExited",
    ]


def test_plain_arn_failure_emits_lambda_function_failed() -> None:
    m = machine(("T", {"Type": "Task", "Resource": FN.format("fn"), "End": True}))
    result = run_execution(m, {}, {"fn": failing(1, KeyError)})
    assert result.error == "KeyError"
    failed = next(e for e in result.events if e["type"] == "LambdaFunctionFailed")
    assert failed["lambdaFunctionFailedEventDetails"]["error"] == "KeyError"


def test_handler_gets_a_copy_and_cannot_change_the_state_input() -> None:
    def mutating(event: Any, context: Any) -> Any:
        event["x"].append(99)
        return "done"

    m = machine(("T", invoke_state("fn", ResultSelector={"p.$": "$.Payload"}, ResultPath="$.r")))
    result = run_execution(m, {"x": [1]}, {"fn": mutating})
    assert result.output == {"x": [1], "r": {"p": "done"}}


def test_bare_function_name_and_dynamic_function_name() -> None:
    m = machine(
        (
            "T",
            {
                "Type": "Task",
                "Resource": INVOKE,
                "OutputPath": "$.Payload",
                "End": True,
                "Parameters": {"FunctionName.$": "$.fn", "Payload": {"fixed": True}},
            },
        )
    )
    result = run_execution(m, {"fn": "echo:live"}, {"echo": lambda e, c: e})
    assert result.output == {"fixed": True}
    missing = run_execution(m, {"fn": "ghost"}, {"echo": lambda e, c: e})
    assert missing.error == "Lambda.ResourceNotFoundException"
    assert "Function not found: arn:aws:lambda:us-east-1:123456789012:function:ghost" in (
        missing.cause or ""
    )


def test_missing_static_handler_is_rejected_before_running() -> None:
    with pytest.raises(HandlerError, match=r"no handler registered.*'classify'"):
        run_execution(parse_definition(REFERENCE), {}, {"serializeImageData": lambda e, c: e})


def test_unserialisable_handler_result_is_a_marshal_error() -> None:
    m = machine(("T", invoke_state("fn")))
    result = run_execution(m, {}, {"fn": lambda e, c: {1, 2}})
    assert result.error == "Runtime.MarshalError"


# --- Retry -------------------------------------------------------------------------------


def test_retry_backoff_sleeps_on_the_clock() -> None:
    clock = FakeClock()
    handler = failing(3)
    retry = [
        {
            "ErrorEquals": ["ServiceException"],
            "IntervalSeconds": 2,
            "MaxAttempts": 6,
            "BackoffRate": 2,
        }
    ]
    m = machine(("T", invoke_state("fn", Retry=retry, OutputPath="$.Payload")))
    result = run_execution(m, {}, {"fn": handler}, clock=clock)
    assert result.status == "SUCCEEDED" and result.output == {"ok": 4}
    assert clock.sleeps == [2, 4, 8]  # IntervalSeconds * BackoffRate ** attempt
    assert [e["type"] for e in result.events].count("TaskScheduled") == 4


def test_retry_exhausted_then_fails_with_last_error() -> None:
    clock = FakeClock()
    m = machine(
        ("T", invoke_state("fn", Retry=[{"ErrorEquals": ["ServiceException"], "MaxAttempts": 2}]))
    )
    result = run_execution(m, {}, {"fn": failing(10)}, clock=clock)
    assert result.error == "ServiceException"
    assert json.loads(result.cause or "")["errorMessage"] == "failure 3"
    assert clock.sleeps == [1, 2]  # AWS defaults: IntervalSeconds 1, BackoffRate 2.0


def test_max_attempts_zero_never_retries_and_first_matching_retrier_wins() -> None:
    clock = FakeClock()
    m = machine(
        (
            "T",
            invoke_state(
                "fn",
                Retry=[
                    {"ErrorEquals": ["ServiceException"], "MaxAttempts": 0},
                    {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5},
                ],
            ),
        )
    )
    handler = failing(1)
    result = run_execution(m, {}, {"fn": handler}, clock=clock)
    assert result.status == "FAILED" and handler.calls["n"] == 1 and clock.sleeps == []


def test_max_delay_caps_backoff_and_full_jitter_stays_below() -> None:
    capped = Retrier(errors=("E",), interval=3, backoff=10, max_delay=20)
    assert [retry_delay(capped, i, random.Random(0)) for i in range(4)] == [3, 20, 20, 20]
    jittered = Retrier(errors=("E",), interval=4, backoff=2, jitter="FULL")
    delays = [retry_delay(jittered, 2, random.Random(seed)) for seed in range(50)]
    assert all(0 <= d <= 16 for d in delays) and len(set(delays)) > 40


def test_retry_count_in_context_object() -> None:
    counts: list[int] = []

    def handler(event: Any, context: Any) -> Any:
        counts.append(event["retry"])
        if len(counts) < 3:
            raise ServiceException("again")
        return event

    m = machine(
        (
            "T",
            {
                "Type": "Task",
                "Resource": FN.format("fn"),
                "End": True,
                "Parameters": {"retry.$": "$$.State.RetryCount"},
                "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}],
            },
        )
    )
    assert run_execution(m, {}, {"fn": handler}, clock=FakeClock()).status == "SUCCEEDED"
    assert counts == [0, 1, 2]


# --- error name matching -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "error", "matches"),
    [
        (("States.ALL",), "CustomError", True),
        (("States.ALL",), "States.Timeout", True),
        (("States.ALL",), "States.Runtime", False),
        # AWS's guide calls it terminal, but recorded executions show States.ALL catching
        # a Task result over the quota (see recovery.error_matches).
        (("States.ALL",), "States.DataLimitExceeded", True),
        (("States.DataLimitExceeded",), "States.DataLimitExceeded", True),
        (("States.TaskFailed",), "ValueError", True),
        (("States.TaskFailed",), "States.Timeout", False),
        (("States.Timeout",), "States.Timeout", True),
        (("ValueError", "KeyError"), "KeyError", True),
        (("ValueError",), "CustomError", False),
    ],
)
def test_error_matching_rules(names: tuple[str, ...], error: str, matches: bool) -> None:
    assert error_matches(names, error) is matches


def test_runtime_errors_are_not_caught_even_by_states_all() -> None:
    m = machine(
        (
            "T",
            invoke_state(
                "fn", InputPath="$.missing", Catch=[{"ErrorEquals": ["States.ALL"], "Next": "H"}]
            ),
        ),
        ("H", {"Type": "Succeed"}),
    )
    result = run_execution(m, {}, {"fn": lambda e, c: e})
    assert result.error == "States.Runtime"
    assert result.cause == (
        "An error occurred while executing the state 'T' (entered at the event id #2). "
        "Invalid path '$.missing' : No results for path: $['missing']"
    )


def test_catch_result_path_and_transition() -> None:
    m = machine(
        (
            "T",
            invoke_state(
                "fn",
                Catch=[
                    {"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "H"}
                ],
            ),
        ),
        ("H", {"Type": "Pass", "End": True}),
    )
    result = run_execution(m, {"keep": 1}, {"fn": failing(1, KeyError)})
    assert result.status == "SUCCEEDED"
    assert result.output["keep"] == 1 and result.output["error"]["Error"] == "KeyError"
    exited = next(e for e in result.events if e["type"] == "TaskStateExited")
    assert json.loads(exited["stateExitedEventDetails"]["output"]) == result.output


# --- timeouts -------------------------------------------------------------------------------


def test_task_timeout_is_states_timeout_and_not_task_failed() -> None:
    clock = FakeClock()

    def slow(event: Any, context: Any) -> Any:
        assert context.get_remaining_time_in_millis() == 5000
        clock.advance(6)
        return event

    m = machine(
        (
            "T",
            invoke_state(
                "fn",
                TimeoutSeconds=5,
                HeartbeatSeconds=2,
                Catch=[
                    {"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"},
                    {"ErrorEquals": ["States.Timeout"], "Next": "H"},
                ],
            ),
        ),
        ("Wrong", {"Type": "Fail"}),
        ("H", {"Type": "Succeed"}),
    )
    result = run_execution(m, {}, {"fn": slow}, clock=clock)
    assert result.status == "SUCCEEDED"
    assert "TaskTimedOut" in [e["type"] for e in result.events]
    scheduled = next(e for e in result.events if e["type"] == "TaskScheduled")[
        "taskScheduledEventDetails"
    ]
    assert scheduled["timeoutInSeconds"] == 5 and scheduled["heartbeatInSeconds"] == 2


def test_timeout_seconds_path() -> None:
    clock = FakeClock()

    def slow(event: Any, context: Any) -> Any:
        clock.advance(3)
        return event

    m = machine(("T", invoke_state("fn", TimeoutSecondsPath="$.limit")))
    assert run_execution(m, {"limit": 2}, {"fn": slow}, clock=clock).error == "States.Timeout"
    assert run_execution(m, {"limit": 10}, {"fn": slow}, clock=clock).status == "SUCCEEDED"


def _scheduled(result: Any) -> dict[str, Any]:
    event = next(e for e in result.events if e["type"] == "TaskScheduled")
    return dict(event["taskScheduledEventDetails"])


def _jsonata_task(**extra: Any) -> Any:
    return parse_definition(
        {
            "QueryLanguage": "JSONata",
            "StartAt": "T",
            "States": {
                "T": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Arguments": {"FunctionName": FN.format("fn"), "Payload": {}},
                    "Output": "{% $states.result.Payload %}",
                    "End": True,
                    **extra,
                }
            },
        }
    )


def test_heartbeat_seconds_path_is_read_from_the_state_input() -> None:
    m = machine(("T", invoke_state("fn", TimeoutSeconds=60, HeartbeatSecondsPath="$.hb")))
    result = run_execution(m, {"hb": 20}, {"fn": lambda e, c: e})
    assert result.status == "SUCCEEDED"
    assert _scheduled(result)["heartbeatInSeconds"] == 20
    assert _scheduled(result)["timeoutInSeconds"] == 60
    # A workflow variable is a path too (AWS: "Passing data between states with variables").
    given = machine(
        ("Given", {"Type": "Pass", "Assign": {"hb": 9}, "Next": "T"}),
        ("T", invoke_state("fn", HeartbeatSecondsPath="$hb")),
    )
    assert _scheduled(run_execution(given, {}, {"fn": lambda e, c: e}))["heartbeatInSeconds"] == 9


@pytest.mark.parametrize("value", [0, -3, 1.5, "20", True, None, [20]])
def test_heartbeat_seconds_path_must_select_a_positive_integer(value: Any) -> None:
    m = machine(("T", invoke_state("fn", HeartbeatSecondsPath="$.hb")))
    calls: list[Any] = []
    result = run_execution(m, {"hb": value}, {"fn": lambda e, c: calls.append(e)})
    assert result.error == "States.Runtime", result.cause
    assert "HeartbeatSecondsPath must select a positive integer, got" in (result.cause or "")
    assert calls == []  # the state fails before the Lambda is invoked


def test_heartbeat_seconds_path_selecting_nothing_is_states_runtime() -> None:
    m = machine(("T", invoke_state("fn", HeartbeatSecondsPath="$.hb")))
    result = run_execution(m, {}, {"fn": lambda e, c: e})
    assert result.error == "States.Runtime" and "$.hb" in (result.cause or "")


def test_a_lambda_task_outliving_its_heartbeat_does_not_time_out() -> None:
    """A Lambda invocation sends no heartbeats; on AWS HeartbeatSeconds bounds activities and
    callback tasks only, so only TimeoutSeconds ends a slow Lambda task."""
    clock = FakeClock()

    def slow(event: Any, context: Any) -> Any:
        clock.advance(30)  # 30 s without a heartbeat, past HeartbeatSeconds, within Timeout
        return {"done": True}

    m = machine(("T", invoke_state("fn", TimeoutSeconds=60, HeartbeatSeconds=5)))
    result = run_execution(m, {}, {"fn": slow}, clock=clock)
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["Payload"] == {"done": True}
    assert not [e for e in result.events if "TimedOut" in e["type"]]
    jsonata = _jsonata_task(TimeoutSeconds=60, HeartbeatSeconds="{% 5 %}")
    assert run_execution(jsonata, {}, {"fn": slow}, clock=clock).output == {"done": True}


def test_jsonata_heartbeat_seconds_expression_is_evaluated() -> None:
    m = _jsonata_task(
        TimeoutSeconds="{% $states.input.t %}", HeartbeatSeconds="{% $states.input.t / 2 %}"
    )
    result = run_execution(m, {"t": 40}, {"fn": lambda e, c: {"ok": 1}})
    assert result.status == "SUCCEEDED" and result.output == {"ok": 1}
    assert _scheduled(result)["timeoutInSeconds"] == 40
    assert _scheduled(result)["heartbeatInSeconds"] == 20
    literal = run_execution(_jsonata_task(HeartbeatSeconds=7), {}, {"fn": lambda e, c: {}})
    assert _scheduled(literal)["heartbeatInSeconds"] == 7


@pytest.mark.parametrize("value", [0, -5, 2.5, "ten", True, None])
def test_jsonata_heartbeat_seconds_must_be_a_positive_integer(value: Any) -> None:
    m = _jsonata_task(HeartbeatSeconds="{% $states.input.hb %}")
    calls: list[Any] = []
    result = run_execution(m, {"hb": value}, {"fn": lambda e, c: calls.append(e)})
    assert result.error == "States.QueryEvaluationError", result.cause
    assert "The value of the field 'HeartbeatSeconds' must be an integer >= 1" in (
        result.cause or ""
    )
    assert calls == []


def test_jsonata_heartbeat_seconds_expression_returning_nothing_fails() -> None:
    m = _jsonata_task(HeartbeatSeconds="{% $states.input.missing %}")
    result = run_execution(m, {}, {"fn": lambda e, c: {}})
    assert result.error == "States.QueryEvaluationError"
    assert "'HeartbeatSeconds' returned nothing (undefined)" in (result.cause or "")


def test_a_hung_handler_times_out_at_its_deadline_on_the_system_clock() -> None:
    release = threading.Event()
    calls: list[str] = []

    def hung(event: Any, context: Any) -> Any:
        calls.append(context.function_name)
        release.wait(30)  # never returns on its own within the test
        return event

    def fails(event: Any, context: Any) -> Any:
        raise KeyError("no such key")

    m = machine(("T", invoke_state("fn", TimeoutSeconds=1)))
    started = time.monotonic()
    result = run_execution(m, {}, {"fn": hung}, clock=SystemClock())
    waited = time.monotonic() - started
    release.set()
    assert result.status == "FAILED" and result.error == "States.Timeout"
    assert "did not return by its deadline" in (result.cause or "")
    assert 1.0 <= waited < 5.0 and calls == ["fn"]
    assert "TaskTimedOut" in [e["type"] for e in result.events]
    # With a deadline, a handler's own error still comes through, named after its class,
    # with only the handler's frames in the stack trace.
    failed = run_execution(m, {}, {"fn": fails}, clock=SystemClock())
    assert failed.error == "KeyError"
    cause = json.loads(failed.cause or "{}")
    assert cause["errorType"] == "KeyError" and len(cause["stackTrace"]) == 1
    assert "fails" in cause["stackTrace"][0]


def test_a_hung_handler_on_a_fake_clock_times_out_after_its_real_wait_limit() -> None:
    release = threading.Event()
    clock = FakeClock(real_wait_limit=0.2)
    m = machine(("T", invoke_state("fn", TimeoutSeconds=7)))
    start = clock.now()
    result = run_execution(m, {}, {"fn": lambda e, c: release.wait(30)}, clock=clock)
    release.set()
    assert result.error == "States.Timeout"
    assert (clock.now() - start).total_seconds() >= 7  # the fake deadline passed too


def test_execution_timeout_during_wait() -> None:
    clock = FakeClock()
    m = machine(("W", {"Type": "Wait", "Seconds": 100, "End": True}), TimeoutSeconds=10)
    result = run_execution(m, {}, clock=clock)
    assert result.status == "TIMED_OUT" and clock.sleeps == [10]
    assert result.events[-1]["type"] == "ExecutionTimedOut"


def test_wait_uses_the_clock() -> None:
    clock = FakeClock(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    m = machine(
        ("A", {"Type": "Wait", "Seconds": 30, "Next": "B"}),
        ("B", {"Type": "Wait", "TimestampPath": "$.t", "Next": "C"}),
        ("C", {"Type": "Wait", "SecondsPath": "$.s", "End": True}),
    )
    result = run_execution(m, {"t": "2024-01-01T00:01:00Z", "s": 5}, clock=clock)
    assert result.status == "SUCCEEDED" and clock.sleeps == [30, 30, 5]
    bad = run_execution(m, {"t": "2024-01-01T00:01:00Z", "s": -1}, clock=FakeClock())
    assert bad.error == "States.Runtime"


# --- Map and Parallel extras ------------------------------------------------------------------


def map_def(**extra: Any) -> Any:
    return machine(
        (
            "M",
            {
                "Type": "Map",
                "ItemsPath": "$.items",
                "End": True,
                **extra,
                "ItemProcessor": {
                    "StartAt": "T",
                    "States": {"T": {"Type": "Task", "Resource": FN.format("check"), "End": True}},
                },
            },
        )
    )


def check(event: Any, context: Any) -> Any:
    if event < 0:
        raise ValueError(f"negative {event}")
    return event * 2


def test_map_tolerated_failure_count_and_percentage() -> None:
    items = {"items": [1, -1, 2, -2, 3]}
    ok = run_execution(map_def(ToleratedFailureCount=2), items, {"check": check})
    assert ok.status == "SUCCEEDED"
    assert ok.output[0] == 2 and ok.output[1]["Error"] == "ValueError"
    over = run_execution(map_def(ToleratedFailureCount=1), items, {"check": check})
    assert over.error == "States.ExceedToleratedFailureThreshold"
    assert (
        run_execution(map_def(ToleratedFailurePercentage=40), items, {"check": check}).status
        == "SUCCEEDED"
    )
    assert (
        run_execution(map_def(ToleratedFailurePercentage=39), items, {"check": check}).status
        == "FAILED"
    )


def test_map_events_and_first_failure() -> None:
    result = run_execution(map_def(), {"items": [1, -5, 2]}, {"check": check})
    assert result.error == "ValueError"
    types = [e["type"] for e in result.events]
    assert types[2:4] == ["MapStateStarted", "MapIterationStarted"]
    assert "MapIterationFailed" in types and types[-2:] == ["MapStateFailed", "ExecutionFailed"]
    assert types.count("MapIterationStarted") == 2  # AWS stops starting iterations after a failure
    started = next(e for e in result.events if e["type"] == "MapStateStarted")
    assert started["mapStateStartedEventDetails"] == {"length": 3}


def test_map_and_parallel_on_threads_keep_order() -> None:
    lock = threading.Lock()
    threads: set[int] = set()
    # The first two iterations wait for each other, so at least two threads must run them
    # at once, however the scheduler orders a loaded machine's threads.
    together = threading.Barrier(2, timeout=10)

    def work(event: Any, context: Any) -> Any:
        with lock:
            threads.add(threading.get_ident())
        if event < 2:
            together.wait()
        return event * 10

    m = machine(
        (
            "M",
            {
                "Type": "Map",
                "ItemsPath": "$",
                "MaxConcurrency": 4,
                "End": True,
                "ItemProcessor": {
                    "StartAt": "T",
                    "States": {"T": {"Type": "Task", "Resource": FN.format("work"), "End": True}},
                },
            },
        )
    )
    result = run_execution(m, list(range(40)), {"work": work}, max_workers=8)
    assert result.output == [i * 10 for i in range(40)]
    assert 1 < len(threads) <= 4
    ids = [e["id"] for e in result.events]
    assert ids == list(range(1, len(ids) + 1))


def test_parallel_failure_emits_parallel_state_failed() -> None:
    m = machine(
        (
            "P",
            {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}}
                ],
            },
        )
    )
    result = run_execution(m, {})
    assert (result.error, result.cause) == ("E", "c")
    assert [e["type"] for e in result.events][-2:] == ["ParallelStateFailed", "ExecutionFailed"]


# --- limits -----------------------------------------------------------------------------------


def test_payload_over_256_kib_is_data_limit_exceeded() -> None:
    m = machine(
        (
            "T",
            invoke_state(
                "fn", OutputPath="$.Payload", Catch=[{"ErrorEquals": ["States.ALL"], "Next": "H"}]
            ),
        ),
        ("H", {"Type": "Succeed"}),
    )
    # A Task result over the quota is a TaskFailed that States.ALL catches, as on AWS.
    result = run_execution(m, {}, {"fn": lambda e, c: "x" * 300_000})
    assert result.status == "SUCCEEDED"
    assert result.output["Error"] == "States.DataLimitExceeded"
    assert result.output["Cause"].startswith("The state/task 'lambda' returned a result")
    failed = [e for e in result.events if e["type"] == "TaskFailed"]
    assert failed[0]["taskFailedEventDetails"]["error"] == "States.DataLimitExceeded"
    # A state output over the quota is checked after Retry and Catch: nothing catches it.
    big = machine(("P", {"Type": "Pass", "Result": "x" * 300_000, "End": True}))
    assert run_execution(big, {}).error == "States.DataLimitExceeded"
    with pytest.raises(HandlerError, match="262144"):
        run_execution(m, {"big": "y" * 300_000}, {"fn": lambda e, c: e})


def test_endless_loop_stops_at_25000_history_events() -> None:
    m = machine(
        ("A", {"Type": "Pass", "Next": "B"}),
        (
            "B",
            {
                "Type": "Choice",
                "Choices": [{"Variable": "$.stop", "IsPresent": True, "Next": "End"}],
                "Default": "A",
            },
        ),
        ("End", {"Type": "Succeed"}),
    )
    history = InMemoryHistory()
    result = run_execution(m, {}, listener=history)
    assert result.status == "FAILED" and result.error == "States.Runtime"
    assert "25000" in (result.cause or "") and len(history.events) == 25_000
    assert result.events == []  # a listener was given, so nothing is collected twice


def test_listener_errors_propagate() -> None:
    def broken(event: Any) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_execution(machine(("P", {"Type": "Pass", "End": True})), {}, listener=broken)


def test_handler_error_is_a_workflow_error() -> None:
    assert issubclass(HandlerError, WorkflowError)


def test_a_redrive_keeps_the_original_execution_input_in_the_context() -> None:
    machine = parse_definition(
        {
            "StartAt": "First",
            "States": {
                "First": {"Type": "Pass", "Next": "Second"},
                "Second": {
                    "Type": "Pass",
                    "Parameters": {"state.$": "$", "execution.$": "$$.Execution.Input"},
                    "End": True,
                },
            },
        }
    )
    result = run_execution(
        machine, {"at": "Second"}, start_at="Second", execution_input={"original": True}
    )
    assert result.output == {"state": {"at": "Second"}, "execution": {"original": True}}
    plain = run_execution(machine, {"x": 1})
    assert plain.output == {"state": {"x": 1}, "execution": {"x": 1}}
