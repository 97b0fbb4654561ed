"""The console's AWS edge: route by `X-Amz-Target` (JSON protocols) or path (runtime).

`AwsEdge` answers POST / itself, as plain ASGI, and hands every other request to the
Starlette app of the pages (and InvokeEndpoint). A Starlette route wraps each call in
five layers of middleware, a Request, a Response and a hop to a worker thread: measured
in-process (2-core VM), a DescribeExecution took 270 us of CPU that way and takes 70 us
through the edge, 35 us of it the call itself. The edge keeps the hop only where a call
can wait.

API work is synchronous (SQLite, the executor). Calls that can wait (for the db's write
lock, a handler, a stop) run on the server's thread pool, never on the event loop; only
`ON_LOOP` calls run on the loop: a DescribeExecution is one indexed read, and in WAL mode
a reader never waits for a writer (the one write on that path, ending ABORTED an execution
whose process died, happens once per such execution). Errors leave in AWS's shape;
anything unexpected is logged with its traceback and answered InternalFailure (500), as
AWS answers its own bugs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sconeflow.console import sagemaker_api
from sconeflow.console.protocol import AwsError

log = logging.getLogger(__name__)

_JSON_1_0 = "application/x-amz-json-1.0"
_JSON_1_1 = "application/x-amz-json-1.1"
MAX_BODY = 2 * 1024 * 1024  # a 1 MiB definition, JSON-escaped, fits
ON_LOOP = frozenset({"DescribeExecution"})  # Step Functions actions answered on the loop
T = TypeVar("T")


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(err: AwsError, content_type: str = _JSON_1_0) -> Response:
    return Response(_dumps(err.body()), status_code=err.status, media_type=content_type,
                    headers={"x-amzn-ErrorType": err.code})  # fmt: skip


class AwsEdge:
    """ASGI: POST / with X-Amz-Target `AWSStepFunctions.<Action>` or `SageMaker.<Action>`
    is answered here; everything else goes to `pages`."""

    def __init__(self, state: dict[str, Any], pages: Any) -> None:
        self.state, self.pages = state, pages

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/" or scope["method"] != "POST":
            await self.pages(scope, receive, send)
            return
        target = ""
        for name, value in scope["headers"]:  # ASGI servers give names in lower case
            if name == b"x-amz-target":
                target = value.decode("latin-1")
        service, _, action = target.partition(".")
        content_type = _JSON_1_1 if service == "SageMaker" else _JSON_1_0
        headers = [(b"content-type", content_type.encode())]
        failure: AwsError | None = None
        try:
            payload = _dumps(await self._answer(service, action, target, receive))
        except AwsError as err:
            failure = err
        except Exception:
            log.exception("%s failed", target)
            failure = AwsError("InternalFailure", "the console failed to answer; see its log",
                               500)  # fmt: skip
        status = 200
        if failure is not None:
            status, payload = failure.status, _dumps(failure.body())
            headers.append((b"x-amzn-errortype", failure.code.encode()))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, service: str, action: str, target: str, receive: Any) -> Any:
        raw = await _receive_body(receive)
        try:
            body = json.loads(raw or b"{}")
        except ValueError as err:
            raise AwsError("SerializationException", f"the body is not JSON: {err}") from err
        if not isinstance(body, dict):
            raise AwsError("SerializationException", "the body must be a JSON object")
        if service == "AWSStepFunctions":
            if action in ON_LOOP:
                return self.state["sfn"].call(action, body)
            return await run_in_threadpool(self.state["sfn"].call, action, body)
        if service == "SageMaker":
            return await run_in_threadpool(_with_connection, self.state, sagemaker_api.call,
                                           action, body)  # fmt: skip
        raise AwsError(
            "UnknownOperationException",
            f"X-Amz-Target {target!r} is not served here; the console answers "
            "AWSStepFunctions.<Action> and SageMaker.<Action> (and POST "
            "/endpoints/<name>/invocations)",
        )


def _with_connection(state: dict[str, Any], fn: Callable[..., T], *args: Any) -> T:
    """`fn(settings, conn, *args)` with the calling thread's db connection: called on a
    worker thread, so `conn` is that thread's, the one the pages and the Step Functions API
    read through there (Executor.connection), kept open: InvokeEndpoint looks its endpoint
    up on every request."""
    return fn(state["settings"], state["executor"].connection(), *args)


async def _receive_body(receive: Any, limit: int = MAX_BODY) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise AwsError("ValidationException", f"the request body is over {limit} bytes",
                           413)  # fmt: skip
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def invoke_endpoint(request: Request) -> Response:
    """sagemaker-runtime InvokeEndpoint, forwarded to the endpoint's process."""
    state = request.app.state.console
    name = request.path_params["name"]
    try:
        # the endpoint answers 413 itself
        body = await _receive_body(request.receive, 6 * 1024 * 1024 + 1)
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, kept, data = await run_in_threadpool(
            _with_connection, state, sagemaker_api.invoke_endpoint, name, body, headers
        )
    except AwsError as err:
        return error_response(err, "application/json")
    return Response(data, status_code=status, headers=dict(kept))
