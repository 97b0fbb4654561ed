"""The HTTP routes of a model endpoint: a bare ASGI callable, no web framework.

Routes (SageMaker's container and runtime contracts, AWS_FORMATS.md section 3):
    GET  /ping                              200 once the model is loaded, else 503
    POST /invocations                       image/png | image/jpeg | application/x-image
    POST /endpoints/{name}/invocations      the runtime API path, so boto3's
                                            `sagemaker-runtime` client works unmodified
    GET  /metrics                           Prometheus text (see metrics.py)

Why no framework: at ~0.1-0.3 ms of model time per image, routing, request objects and
middleware of a framework cost as much as the model. A flat `if` on the path, headers read
once from the scope, and two `send` calls keep the per-request overhead to a few tens of
microseconds on uvicorn + httptools + uvloop (see server.py).

Errors are JSON `{"code": ..., "message": ...}` with the `x-amzn-ErrorType` header, as
botocore parses them: ValidationError 400 (bad image, bad header, unknown endpoint),
406 (Accept), 408 (body too slow), 413 (body too large), 415 (Content-Type), ModelError
424, InternalFailure 500, ServiceUnavailable 503. Anything unexpected is logged with its
traceback and answered 500; no request can stop the worker.

Memory per worker is bounded by bytes (docs/serving.md states the bound): bodies over
64 KiB take their declared size from `BodyBudget` before they are read, and wait for
room in arrival order (at most SCONEFLOW_READ_TIMEOUT, then 503); a client that sends
its headers or body too slowly gets 408 and is disconnected (connections.py); capture
records go into the worker's fixed-size ring (capture.py) before the answer is sent.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from sconeflow.config import ServingSettings
from sconeflow.errors import ModelError
from sconeflow.serving.capture import CaptureWriter
from sconeflow.serving.inference import (
    InvalidImageError,
    LoopBatcher,
    MicroBatcher,
    Predictor,
    decode,
)
from sconeflow.serving.metrics import SharedMetrics

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "application/x-image"})
ACCEPT_TYPES = ("application/json", "application/jsonlines")
VARIANT = "AllTraffic"
_MAX_ATTRIBUTES = 1024
_MAX_INFERENCE_ID = 64
# Bodies up to this size skip the body budget: uvicorn buffers this much per connection
# anyway (its flow-control high-water mark) before it stops reading from the socket.
SMALL_BODY = 64 << 10


class HttpError(Exception):
    """An answer other than 200: status, AWS error code and a message naming the problem."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class BodyBudget:
    """Bytes of request bodies one worker holds at once, granted in arrival order.

    On the event loop's thread only. A body that does not fit waits, unread: its bytes
    stay in the client's socket and TCP slows the client down. The budget is at least the
    payload limit (config.py checks it), so the largest valid body always fits alone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, size: int) -> None:
        if not self._waiting and self.used + size <= self.limit:
            self.used += size
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((size, future))
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(size)  # granted just as the waiter gave up
            else:
                future.cancel()
                self._grant()  # it may have been first in line
            raise

    def release(self, size: int) -> None:
        self.used -= size
        self._grant()

    def _grant(self) -> None:
        waiting = self._waiting
        while waiting:
            size, future = waiting[0]
            if future.done():  # gave up waiting
                waiting.popleft()
                continue
            if self.used + size > self.limit:
                return
            waiting.popleft()
            self.used += size
            future.set_result(None)


@functools.lru_cache(maxsize=256)
def negotiate(accept: str, default: str) -> str | None:
    """The response type for an Accept header: ours in the caller's order, else None."""
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ("", "*/*", "application/*"):
            return default
        if media in ACCEPT_TYPES:
            return media
    return None


@functools.lru_cache(maxsize=256)
def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _printable(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


class App:
    """ASGI app for one worker. `load` builds the Predictor at lifespan startup, so each
    worker process loads its own session after the fork."""

    def __init__(
        self,
        load: Callable[[], Predictor],
        serving: ServingSettings,
        metrics: SharedMetrics,
        endpoint: str | None = None,
        capture: CaptureWriter | None = None,
        max_batch: int = 64,
    ) -> None:
        self._load = load
        self.serving = serving
        self.metrics = metrics
        self.endpoint = endpoint  # None: answer any /endpoints/{name}/ (container mode)
        self.capture = capture
        self.max_batch = max_batch
        self.predictor: Predictor | None = None
        self.batcher: LoopBatcher | MicroBatcher | None = None
        self.startup_error: str | None = None  # why the model did not load, for the master
        self.bodies = BodyBudget(serving.body_buffer_bytes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ping_body = b'{"status":"Healthy"}'

    # -- lifespan ---------------------------------------------------------------------------

    def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.predictor = self._load()
        # A one-thread session runs on this loop's thread; a multi-threaded one gets its
        # own thread so that the loop keeps serving while it uses the other cores
        # (inference.py's docstring has the measurements).
        if self.predictor.threads == 1:
            self.batcher = LoopBatcher(
                self.predictor, self._deliver_here, self._loop, max_batch=self.max_batch
            )
        else:
            self.batcher = MicroBatcher(
                self.predictor, self._deliver_across, max_batch=self.max_batch
            )
        # Clients (`sconeflow invoke`) learn the class names from /ping.
        self._ping_body = json.dumps(
            {"status": "Healthy", "classes": list(self.predictor.meta.classes)}
        ).encode()

    def shutdown(self) -> None:
        """Finish queued inferences, then flush capture (SIGTERM lands here via uvicorn)."""
        if self.batcher is not None:
            self.batcher.close()
        if self.capture is not None:
            self.capture.close()

    def _deliver_here(
        self, futures: list[Any], result: np.ndarray | Exception, seconds: float
    ) -> None:
        self._resolve(futures, result)  # LoopBatcher: already on the loop's thread

    def _deliver_across(
        self, futures: list[Any], result: np.ndarray | Exception, seconds: float
    ) -> None:
        # MicroBatcher: runs on the batcher thread; hand the whole batch over in one call.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._resolve, futures, result)

    def _resolve(self, futures: list[Any], result: np.ndarray | Exception) -> None:
        # On the loop's thread in both modes: the metrics row has one writer (metrics.py).
        self.metrics.batch(len(futures))
        _resolve(futures, result)

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as err:
                    log.exception("model load failed")
                    self.startup_error = f"{type(err).__name__}: {err}"
                    await send({"type": "lifespan.startup.failed", "message": str(err)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/invocations" or (
            path.startswith("/endpoints/") and path.endswith("/invocations")
        ):
            if method != "POST":
                await _send_error(
                    send, HttpError(405, "ValidationError", f"{method} {path}: use POST")
                )
                return
            await self._invoke(scope, receive, send)
        elif path == "/ping" and method in ("GET", "HEAD"):
            ready = self.batcher is not None
            await _send(
                send,
                200 if ready else 503,
                b"application/json",
                self._ping_body if ready else b'{"status":"Loading"}',
            )
        elif path == "/metrics" and method == "GET":
            await _send(
                send,
                200,
                b"text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            )
        else:
            await _send_error(
                send,
                HttpError(
                    404,
                    "ValidationError",
                    f"no route {method} {path}; try POST /invocations or GET /ping",
                ),
            )

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        model_seconds = 0.0
        model_error = False
        content_type = accept_header = attributes = inference_id = variant = None
        length = -1
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept_header = value.decode("latin-1")
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name.startswith(b"x-amzn-sagemaker-"):
                text = value.decode("latin-1")
                if name == b"x-amzn-sagemaker-custom-attributes":
                    attributes = text
                elif name == b"x-amzn-sagemaker-inference-id":
                    inference_id = text
                elif name == b"x-amzn-sagemaker-target-variant":
                    variant = text
        extra: list[tuple[bytes, bytes]] = [(b"x-amzn-invoked-production-variant", b"AllTraffic")]
        reserved = 0
        failure: HttpError | None = None
        response_type, payload = "", b""
        try:
            response_type = self._validate(
                scope["path"],
                content_type,
                accept_header,
                attributes,
                inference_id,
                variant,
                length,
            )
            if attributes is not None:
                extra.append((b"x-amzn-sagemaker-custom-attributes", attributes.encode()))
            if self.batcher is None or self.predictor is None:
                raise HttpError(503, "ServiceUnavailable", "the model is still loading; retry")
            # Chunked bodies declare no size: they reserve the largest one allowed.
            size = length if length >= 0 else self.serving.max_payload_bytes
            if size > SMALL_BODY:
                await self._reserve(size)
                reserved = size
            body = await self._read_body(receive)
            model_start = time.perf_counter()
            pixels = decode(body, self.predictor.meta)
            probs = await self._predict(pixels)
            model_seconds = time.perf_counter() - model_start
            values = probs.tolist()
            payload = (
                json.dumps(values)
                if response_type == "application/json"
                else json.dumps({"prediction": values})
            ).encode()
            if self.capture is not None:  # before the answer: an answered request is captured
                self.capture.record(
                    content_type or "", body, response_type, payload, inference_id, attributes,
                    pixels,
                )  # fmt: skip
        except InvalidImageError as err:
            failure = HttpError(400, "ValidationError", str(err))
        except HttpError as err:
            failure = err
        except ModelError as err:
            failure, model_error = HttpError(424, "ModelError", str(err)), True
        except Exception:
            log.exception("unexpected error in /invocations")
            failure = HttpError(500, "InternalFailure", "internal error; see the endpoint log")
        finally:
            if reserved:
                self.bodies.release(reserved)
        # Counted before the answer goes out, so a client that has its answer sees it counted.
        self.metrics.count(200 if failure is None else failure.status, model_error)
        if failure is not None:
            await _send_error(send, failure, extra)
            return
        await _send(send, 200, response_type.encode(), payload, extra)
        total = time.perf_counter() - start
        self.metrics.observe(0, model_seconds * 1e6)
        self.metrics.observe(1, (total - model_seconds) * 1e6)

    def _validate(
        self,
        path: str,
        content_type: str | None,
        accept: str | None,
        attributes: str | None,
        inference_id: str | None,
        variant: str | None,
        length: int,
    ) -> str:
        """Check the request line and headers; return the response content type."""
        if self.endpoint is not None and path != "/invocations":
            name = path[len("/endpoints/") : -len("/invocations")]
            if name != self.endpoint:
                raise HttpError(
                    400,
                    "ValidationError",
                    f"Endpoint {name} not found; this server is endpoint {self.endpoint}",
                )
        if variant is not None and variant != VARIANT:
            raise HttpError(
                400,
                "ValidationError",
                f"target variant {variant!r} not found; this endpoint has one variant, {VARIANT}",
            )
        if length > self.serving.max_payload_bytes:
            raise HttpError(
                413,
                "ValidationError",
                f"the body is {length} bytes; the limit is {self.serving.max_payload_bytes} bytes",
            )
        if content_type is None or _media_type(content_type) not in IMAGE_TYPES:
            raise HttpError(
                415,
                "ValidationError",
                f"Content-Type {content_type!r} is not "
                f"supported; use one of {', '.join(sorted(IMAGE_TYPES))}",
            )
        response_type = negotiate(accept or "*/*", self.serving.default_accept)
        if response_type is None:
            raise HttpError(
                406,
                "ValidationError",
                f"Accept {accept!r} is not supported; use {' or '.join(ACCEPT_TYPES)}",
            )
        if attributes is not None and (
            len(attributes) > _MAX_ATTRIBUTES or not _printable(attributes)
        ):
            raise HttpError(
                400,
                "ValidationError",
                "X-Amzn-SageMaker-Custom-Attributes must be "
                f"at most {_MAX_ATTRIBUTES} printable ASCII characters",
            )
        if inference_id is not None and not (
            1 <= len(inference_id) <= _MAX_INFERENCE_ID
            and _printable(inference_id)
            and not inference_id[0].isspace()
        ):
            raise HttpError(
                400,
                "ValidationError",
                "X-Amzn-SageMaker-Inference-Id must be 1-"
                f"{_MAX_INFERENCE_ID} printable ASCII characters, not starting "
                "with a space",
            )
        return response_type

    async def _reserve(self, size: int) -> None:
        """Room for a body of `size` bytes in the body budget, waiting up to the read
        timeout for it: 503 after that, the worker is saturated with large bodies (some
        perhaps sent slowly, which their own read timeout ends). So no request waits here
        longer than the read timeout, whoever holds the budget."""
        try:
            async with asyncio.timeout(self.serving.read_timeout_s):
                await self.bodies.acquire(size)
        except TimeoutError:
            raise HttpError(
                503,
                "ServiceUnavailable",
                f"no room for a {size}-byte body within {self.serving.read_timeout_s:g} s: "
                "the worker is busy with large requests; retry",
            ) from None

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body. A client that sends it too slowly is cut off by the read
        deadline of its connection (connections.py): receive() then says disconnect."""
        limit = self.serving.max_payload_bytes
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, "ValidationError", "the client disconnected mid-request")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # chunked bodies carry no Content-Length to check up front
                raise HttpError(413, "ValidationError", f"the body is over the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _predict(self, pixels: np.ndarray) -> np.ndarray:
        assert self._loop is not None and self.batcher is not None  # set by startup()
        future: asyncio.Future[np.ndarray] = self._loop.create_future()
        timer = self._loop.call_later(
            self.serving.timeout_s, _expire, future, self.serving.timeout_s
        )
        self.batcher.submit(pixels, future)
        try:
            return await future
        finally:
            timer.cancel()


def _resolve(futures: list[asyncio.Future[Any]], result: np.ndarray | Exception) -> None:
    for i, future in enumerate(futures):
        if future.done():  # timed out meanwhile
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result[i])


def _expire(future: asyncio.Future[Any], seconds: float) -> None:
    if not future.done():
        future.set_exception(
            ModelError(
                f"the model did not answer within {seconds:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)"
            )
        )


async def _send(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send, err: HttpError, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"code": err.code, "message": err.message}).encode()
    headers = [(b"x-amzn-errortype", err.code.encode()), *(extra or [])]
    await _send(send, err.status, b"application/json", body, headers)
