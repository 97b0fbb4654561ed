"""The console's AWS edge: route by `X-Amz-Target` (JSON protocols) or path (runtime).

API work is synchronous (SQLite, the executor), so it runs on the server's thread pool,
never on the event loop. Errors leave in AWS's shape; anything unexpected is logged with
its traceback and answered InternalFailure (500), as AWS answers its own bugs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sconeflow.console import sagemaker_api
from sconeflow.console.protocol import AwsError

log = logging.getLogger(__name__)

_JSON_1_0 = "application/x-amz-json-1.0"
_JSON_1_1 = "application/x-amz-json-1.1"
MAX_BODY = 2 * 1024 * 1024  # a 1 MiB definition, JSON-escaped, fits


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(err: AwsError, content_type: str = _JSON_1_0) -> Response:
    return Response(_dumps(err.body()), status_code=err.status, media_type=content_type,
                    headers={"x-amzn-ErrorType": err.code})  # fmt: skip


async def _body(request: Request, limit: int = MAX_BODY) -> bytes:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise AwsError("ValidationException", f"the request body is over {limit} bytes",
                           413)  # fmt: skip
    return data


async def dispatch(request: Request) -> Response:
    """POST / with X-Amz-Target: `AWSStepFunctions.<Action>` or `SageMaker.<Action>`."""
    state = request.app.state.console
    target = request.headers.get("x-amz-target", "")
    service, _, action = target.partition(".")
    content_type = _JSON_1_1 if service == "SageMaker" else _JSON_1_0
    try:
        raw = await _body(request)
        try:
            body = json.loads(raw or b"{}")
        except ValueError as err:
            raise AwsError("SerializationException", f"the body is not JSON: {err}") from err
        if not isinstance(body, dict):
            raise AwsError("SerializationException", "the body must be a JSON object")
        if service == "AWSStepFunctions":
            result = await run_in_threadpool(state["sfn"].call, action, body)
        elif service == "SageMaker":
            result = await run_in_threadpool(sagemaker_api.call, state["settings"], action, body)
        else:
            raise AwsError(
                "UnknownOperationException",
                f"X-Amz-Target {target!r} is not served here; the console answers "
                "AWSStepFunctions.<Action> and SageMaker.<Action> (and POST "
                "/endpoints/<name>/invocations)",
            )
    except AwsError as err:
        return error_response(err, content_type)
    except Exception:
        log.exception("%s failed", target)
        return error_response(AwsError("InternalFailure", "the console failed to answer; "
                                       "see its log", 500), content_type)  # fmt: skip
    return Response(_dumps(result), media_type=content_type)


async def invoke_endpoint(request: Request) -> Response:
    """sagemaker-runtime InvokeEndpoint, forwarded to the endpoint's process."""
    state = request.app.state.console
    name = request.path_params["name"]
    try:
        body = await _body(request, 6 * 1024 * 1024 + 1)  # the endpoint answers 413 itself
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, kept, data = await run_in_threadpool(
            sagemaker_api.invoke_endpoint, state["settings"], name, body, headers
        )
    except AwsError as err:
        return error_response(err, "application/json")
    return Response(data, status_code=status, headers=dict(kept))
