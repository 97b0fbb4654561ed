"""Local Lambda invocation: the handler call, its context object, and AWS's result shapes.

Handlers are plain `lambda_handler(event, context)` callables found by function name in the
table given to `run_execution`. The event is a fresh JSON round-trip of the payload, as a
real Lambda receives it, so a handler cannot change the state data it came from.

A handler's exception becomes the error named after its class, with the cause the Python
Lambda runtime reports: `{"errorMessage": ..., "errorType": ..., "requestId": ...,
"stackTrace": [...]}`. The plain-ARN form (LambdaFunctionFailed) passes on the text the
runtime wrote (Python's `json.dumps`, with `", "` and `": "`); the `lambda:invoke`
integration (TaskFailed) re-encodes it as compact JSON. Executions recorded on AWS show
both.

A Task with TimeoutSeconds runs its handler on a thread of its own and stops waiting at
the deadline with States.Timeout, even if the handler hangs. A Python thread cannot be
stopped safely, so the handler runs on to its end and its result is dropped: as on AWS,
where Step Functions stops waiting but the Lambda invocation runs until its own timeout.
Without TimeoutSeconds the handler runs on the caller's thread.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

from .clock import Clock
from .errors import TIMEOUT, StatesFailure

Handler = Callable[[Any, Any], Any]

# Request and trace ids need to be unique, not unpredictable: drawing them from one
# Mersenne Twister is ~10x cheaper than uuid4's os.urandom, which showed in profiles.
_ids = random.Random()


def new_request_id() -> str:
    """A random version-4 UUID string, like Lambda's request ids."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass
class LambdaContext:
    """The attributes of AWS's Python Lambda context object that handlers commonly read."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    deadline: dt.datetime | None
    clock: Clock = field(repr=False)
    function_version: str = "$LATEST"
    memory_limit_in_mb: str = "128"
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        if self.deadline is None:
            return 900_000  # Lambda's 15-minute maximum
        return max(0, int((self.deadline - self.clock.now()).total_seconds() * 1000))


def function_arn(name: str, region: str, account: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def call_handler(
    handlers: Mapping[str, Handler],
    name: str,
    invoked_arn: str,
    event: Any,
    clock: Clock,
    deadline: dt.datetime | None,
    *,
    runtime_text: bool = False,
) -> tuple[Any, str, str]:
    """Run one handler: (result, result JSON, request id). Raises StatesFailure like Lambda.

    `event` must be the handler's own copy (the engine passes a fresh JSON decode).
    `runtime_text` gives a failure's cause as the runtime writes it (see error_cause).
    """
    request_id = new_request_id()
    handler = handlers.get(name)
    if handler is None:
        raise StatesFailure(
            "Lambda.ResourceNotFoundException",
            f"Function not found: {invoked_arn} (Service: AWSLambda; Status Code: 404; "
            f"Error Code: ResourceNotFoundException; Request ID: {request_id}; Proxy: null)",
        )
    context = LambdaContext(name, invoked_arn, request_id, deadline, clock)
    try:
        if deadline is None:
            result = handler(event, context)
        else:
            result = _call_by(deadline, clock, handler, event, context)
    except StatesFailure:
        raise  # the deadline passed
    except Exception as exc:  # a handler's failure is data for Retry/Catch, not a crash
        cause = error_cause(exc, request_id, runtime_text=runtime_text)
        raise StatesFailure(type(exc).__name__, cause) from exc
    try:
        result_json = _dumps(result)
    except (TypeError, ValueError) as exc:
        # What the Python runtime reports when a handler returns something JSON cannot hold.
        document = {
            "errorMessage": f"Unable to marshal response: {exc}",
            "errorType": "Runtime.MarshalError",
            "requestId": request_id,
            "stackTrace": [],
        }
        cause = json.dumps(document) if runtime_text else _dumps(document)
        raise StatesFailure("Runtime.MarshalError", cause) from exc
    return result, result_json, request_id


def _call_by(
    deadline: dt.datetime, clock: Clock, handler: Handler, event: Any, context: LambdaContext
) -> Any:
    """handler(event, context) on its own thread; States.Timeout if it is not done by the
    deadline (module docstring). Its exception, if any, is raised here."""
    done = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, handler(event, context)))
        except Exception as exc:
            outcome.append((False, exc))
        finally:
            done.set()

    thread = threading.Thread(target=run, name=f"lambda-{context.function_name}", daemon=True)
    thread.start()
    if not clock.wait(done, (deadline - clock.now()).total_seconds()):
        raise StatesFailure(
            TIMEOUT,
            f"The function {context.function_name} did not return by its deadline "
            f"({deadline.isoformat()}); the task's TimeoutSeconds has elapsed",
        )
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def error_cause(exc: BaseException, request_id: str, *, runtime_text: bool = False) -> str:
    """The Lambda runtime's error document for an exception: compact JSON, as the
    `lambda:invoke` integration passes it on, or (`runtime_text`) the text the Python
    runtime writes, as the plain function-ARN form passes it on."""
    # The handler's frames only: drop the caller that caught it (call_handler) and any
    # other frame of this module (the deadline thread's).
    frames = [f for f in traceback.extract_tb(exc.__traceback__)[1:] if f.filename != __file__]
    document = {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }
    return json.dumps(document) if runtime_text else _dumps(document)


def invoke_result(
    payload: Any, payload_json: str, request_id: str, version: str, now: dt.datetime
) -> tuple[dict[str, Any], str]:
    """The output of `arn:aws:states:::lambda:invoke` (Lambda's Invoke response, as AWS gives
    it) and its JSON text. The text is assembled around `payload_json` so a large payload
    (a base64 image) is not encoded again."""
    date = format_datetime(now.astimezone(dt.UTC), usegmt=True)
    length = str(len(payload_json.encode("utf-8")))
    trace_bits = f"{_ids.getrandbits(128):032x}"
    trace = f"root=1-{trace_bits[:8]}-{trace_bits[8:]};sampled=0"
    headers = {
        "Connection": "keep-alive",
        "Content-Length": length,
        "Content-Type": "application/json",
        "Date": date,
        "X-Amz-Executed-Version": version,
        "x-amzn-Remapped-Content-Length": "0",
        "x-amzn-RequestId": request_id,
        "X-Amzn-Trace-Id": trace,
    }
    metadata = {
        "AllHttpHeaders": {k: [v] for k, v in headers.items()},
        "HttpHeaders": headers,
        "HttpStatusCode": 200,
    }
    result = {
        "ExecutedVersion": version,
        "Payload": payload,
        "SdkHttpMetadata": metadata,
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200,
    }
    text = (
        f'{{"ExecutedVersion":{_dumps(version)},"Payload":{payload_json},'
        f'"SdkHttpMetadata":{_dumps(metadata)},'
        f'"SdkResponseMetadata":{{"RequestId":{_dumps(request_id)}}},"StatusCode":200}}'
    )
    return result, text


def executed_version(function_name: str) -> str:
    """`$LATEST`, or the numeric version a FunctionName's qualifier names."""
    qualifier = function_name.rsplit(":", 1)[-1] if function_name.count(":") in (1, 7) else ""
    return qualifier if qualifier.isdigit() else "$LATEST"
