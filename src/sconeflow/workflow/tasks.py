"""The work of a Task state: invoke a Lambda handler and record AWS's history events.

Two resource forms (AWS developer guide, "Invoke Lambda with Step Functions"):
* `arn:aws:states:::lambda:invoke`: Parameters carry FunctionName and Payload; the result
  is Lambda's whole Invoke response (StatusCode, Payload, SdkHttpMetadata...); events
  TaskScheduled, TaskStarted, TaskSucceeded/TaskFailed/TaskTimedOut;
* `arn:aws:lambda:REGION:ACCOUNT:function:NAME`: the effective input is the event and the
  handler's return value the result; events LambdaFunctionScheduled/Started/Succeeded/...
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .data import TRUNCATED, dumps, within_quota
from .errors import DATA_LIMIT_EXCEEDED, RUNTIME, TIMEOUT, StatesFailure
from .lambdas import call_handler, executed_version, function_arn, invoke_result
from .machine import State, function_name_of
from .run import Frame, Run


def invoke(
    run: Run, state: State, effective: Any, frame: Frame, timeout: int | None, heartbeat: int | None
) -> Any:
    """Run the Task's Lambda on its effective input; returns the Task's result. `timeout` and
    `heartbeat` are the state's TimeoutSeconds and HeartbeatSeconds as evaluated for this
    attempt.

    The heartbeat is recorded (TaskScheduled's heartbeatInSeconds) but never fails a Lambda
    task: on AWS only activity workers and callback (`.waitForTaskToken`) or job-run tasks
    send heartbeats (SendTaskHeartbeat) and can fail with States.HeartbeatTimeout; a Lambda
    invocation sends none and is bounded by TimeoutSeconds alone."""
    started = run.clock.now()
    deadline = started + dt.timedelta(seconds=timeout) if timeout else None
    resource = state.resource
    assert resource is not None  # machine.py sets it for every Task
    if resource.kind == "function":
        return _invoke_function(run, state, effective, frame, timeout, started, deadline)
    if not isinstance(effective, dict) or not isinstance(effective.get("FunctionName"), str):
        raise StatesFailure(RUNTIME, "lambda:invoke needs Parameters.FunctionName to be a string")
    target = effective["FunctionName"]
    name, region = function_name_of(target)
    params_json = dumps(effective)
    scheduled: dict[str, Any] = {
        "resourceType": "lambda",
        "resource": "invoke",
        "region": region,
        "parameters": params_json,
    }
    if timeout:
        scheduled["timeoutInSeconds"] = timeout
    if heartbeat:
        scheduled["heartbeatInSeconds"] = heartbeat
    run.emit(frame, "TaskScheduled", "taskScheduledEventDetails", scheduled)
    ids = {"resourceType": "lambda", "resource": "invoke"}
    run.emit(frame, "TaskStarted", "taskStartedEventDetails", ids)
    # Decoding the parameters text gives the handler its own copy of the payload.
    event = lambda_event(json.loads(params_json).get("Payload"))
    arn = target if target.startswith("arn:") else function_arn(name, region, run.machine.account)
    try:
        payload, payload_json, request_id = call_handler(
            run.handlers, name, arn, event, run.clock, deadline
        )
        _check_timeout(run, started, timeout)
        result, result_json = invoke_result(
            payload, payload_json, request_id, executed_version(target), run.clock.now()
        )
        # AWS names the integration, not the state, in this cause ("The state/task 'lambda'").
        _check_quota(result_json, "lambda")
    except StatesFailure as failure:
        kind = "TaskTimedOut" if failure.error == TIMEOUT else "TaskFailed"
        details = {**ids, "error": failure.error, "cause": failure.cause}
        run.emit(frame, kind, kind[0].lower() + kind[1:] + "EventDetails", details)
        raise
    frame.remember(payload, payload_json)  # OutputPath "$.Payload" then reuses the text
    succeeded = {**ids, "output": result_json, "outputDetails": TRUNCATED}
    run.emit(frame, "TaskSucceeded", "taskSucceededEventDetails", succeeded)
    return result


def _invoke_function(
    run: Run,
    state: State,
    effective: Any,
    frame: Frame,
    timeout: int | None,
    started: dt.datetime,
    deadline: dt.datetime | None,
) -> Any:
    assert state.resource is not None
    input_json = dumps(effective)
    scheduled: dict[str, Any] = {
        "resource": state.resource.arn,
        "input": input_json,
        "inputDetails": TRUNCATED,
    }
    if timeout:
        scheduled["timeoutInSeconds"] = timeout
    run.emit(frame, "LambdaFunctionScheduled", "lambdaFunctionScheduledEventDetails", scheduled)
    run.emit(frame, "LambdaFunctionStarted")
    try:
        payload, payload_json, _ = call_handler(
            run.handlers,
            state.resource.function_name or "",
            state.resource.arn,
            json.loads(input_json),
            run.clock,
            deadline,
            runtime_text=True,
        )
        _check_timeout(run, started, timeout)
        # AWS names the function ARN as written in Resource in this cause.
        _check_quota(payload_json, state.resource.arn)
    except StatesFailure as failure:
        kind = "LambdaFunctionTimedOut" if failure.error == TIMEOUT else "LambdaFunctionFailed"
        pairs = (("error", failure.error), ("cause", failure.cause))
        details = {k: v for k, v in pairs if v is not None}
        run.emit(frame, kind, kind[0].lower() + kind[1:] + "EventDetails", details)
        raise
    frame.remember(payload, payload_json)
    succeeded = {"output": payload_json, "outputDetails": TRUNCATED}
    run.emit(frame, "LambdaFunctionSucceeded", "lambdaFunctionSucceededEventDetails", succeeded)
    return payload


def _check_timeout(run: Run, started: dt.datetime, timeout: int | None) -> None:
    # A hung handler is given up on at the deadline in lambdas.call_handler; this judges
    # one that returned just after it, or whose time passed on a FakeClock (`advance`).
    if timeout and (run.clock.now() - started).total_seconds() > timeout:
        raise StatesFailure(
            TIMEOUT, f"The task did not complete within its TimeoutSeconds of {timeout} s"
        )


def _check_quota(text: str, task: str) -> None:
    if not within_quota(text):
        raise StatesFailure(
            DATA_LIMIT_EXCEEDED,
            f"The state/task '{task}' returned a result with a size exceeding "
            "the maximum number of bytes service limit.",
        )


def lambda_event(payload: Any) -> Any:
    """The event a function receives for `lambda:invoke`'s Payload (AWS developer guide,
    "Invoke Lambda"; executions recorded on AWS). A missing or null Payload arrives as
    `{}`; a string is sent as the request body as is, so a string holding JSON (`'{"a":1}'`,
    `'12'`) arrives decoded and any other string arrives as that string."""
    if payload is None:
        return {}
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except ValueError:
            return payload
    return payload
