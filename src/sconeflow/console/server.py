"""The console: one local server for the workspace's AWS APIs and its web pages.

    POST /  X-Amz-Target: AWSStepFunctions.<Action>   Step Functions (AWS JSON 1.0)
    POST /  X-Amz-Target: SageMaker.<Action>          SageMaker control plane (JSON 1.1)
    POST /endpoints/<name>/invocations                sagemaker-runtime InvokeEndpoint
    GET  /, /state-machines, /executions, ...        the web console (pages.py)

One `endpoint_url` serves every boto3 client a user's code makes, as LocalStack's single
edge port does: requests are routed by their X-Amz-Target header or their path.

Safety: it binds 127.0.0.1 unless told otherwise, answers only Host names of the address
it is bound to (a web page elsewhere cannot reach it through DNS rebinding), and another
address needs a token, checked on every request: the `X-Sconeflow-Token` header, the
`sconeflow_token` cookie (set by opening a page once with `?token=`), or, for AWS SDKs and
the AWS CLI, the token as the access key id they sign with.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sconeflow.config import Settings
from sconeflow.errors import ConfigError
from sconeflow.functions import Handler

log = logging.getLogger(__name__)

DEFAULT_PORT = 4566  # LocalStack's edge port, so AWS tools' local profiles find it
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_SIGV4_KEY = re.compile(r"Credential=([^/,\s]+)/")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ConsoleOptions:
    """How the console runs (from `sconeflow console`'s flags)."""

    host: str = "127.0.0.1"
    port: int | None = None  # None: DEFAULT_PORT, or the next free one
    token: str | None = None
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    concurrency: int = 64
    sample_seconds: float = 5.0  # how often endpoints' /metrics are sampled


def check_options(options: ConsoleOptions) -> None:
    """Another address than loopback needs a token; a token must be long enough to guess."""
    if options.host not in LOCAL_HOSTS and not options.token:
        raise ConfigError(
            f"--host {options.host}: binding an address other than 127.0.0.1 exposes the "
            "workspace's APIs; pass --token with a secret of at least 16 characters too"
        )
    if options.token is not None and len(options.token) < 16:
        raise ConfigError("--token: use at least 16 characters (e.g. `openssl rand -hex 16`)")


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket on `port`, or on DEFAULT_PORT or the next free one after it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [port] if port is not None else range(DEFAULT_PORT, DEFAULT_PORT + 100)
    last: OSError | None = None
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as err:
            sock.close()
            last = err
            continue
        sock.listen(1024)
        return sock
    raise ConfigError(
        f"port {port if port is not None else DEFAULT_PORT} on {host} is in use ({last}); "
        "pass another --port"
    )


class TokenGate:
    """ASGI middleware: every request must carry the token (see the module docstring)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode()

    def _ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = dict(
            part.strip().split("=", 1) for part in headers.get("cookie", "").split(";")
            if "=" in part
        )  # fmt: skip
        signed = _SIGV4_KEY.search(headers.get("authorization", ""))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        offered = [headers.get("x-sconeflow-token"), cookies.get("sconeflow_token"),
                   signed.group(1) if signed else None]  # fmt: skip
        if any(self._ok(c) for c in offered):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and self._ok((query.get("token") or [None])[0]):
            # Opened from the printed link: remember the token in a cookie, drop it from the URL.
            await send({"type": "http.response.start", "status": 303, "headers": [
                (b"location", scope["path"].encode()),
                (b"set-cookie", b"sconeflow_token=" + self.token
                 + b"; HttpOnly; SameSite=Strict; Path=/"),
            ]})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps({"__type": "UnrecognizedClientException",
                           "message": "missing or wrong console token"}).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/x-amz-json-1.0"),
            (b"x-amzn-errortype", b"UnrecognizedClientException")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def build_app(settings: Settings, options: ConsoleOptions) -> Any:
    """The ASGI app: AWS API routes, the pages, the lifespan that owns the executor."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from sconeflow.console import aws_routes, pages
    from sconeflow.console.endpoint_metrics import MetricsSampler
    from sconeflow.console.executor import Executor
    from sconeflow.console.sfn_api import StepFunctionsApi

    executor = Executor(settings, handlers=options.handlers, concurrency=options.concurrency)
    sampler = MetricsSampler(settings, executor.connection, interval=options.sample_seconds)
    state = {"settings": settings, "sfn": StepFunctionsApi(executor), "executor": executor,
             "sampler": sampler}  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        sampler.start()
        try:
            yield state
        finally:
            sampler.stop()  # before its connection is closed
            executor.close()  # running executions end ABORTED (redrivable), none RUNNING

    static = Path(__file__).parent / "static"
    routes = [
        Route("/endpoints/{name}/invocations", aws_routes.invoke_endpoint, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=static), name="static"),
        *pages.routes(),
    ]
    site = Starlette(routes=routes, middleware=[Middleware(pages.SecurityHeaders)],
                     lifespan=lifespan)  # fmt: skip
    site.state.console = state
    # Every request, the AWS APIs' as the pages', passes the host check and the token gate.
    app: Any = aws_routes.AwsEdge(state, site)  # POST /: the AWS JSON APIs
    if options.token:
        app = TokenGate(app, options.token)
    if options.host in LOCAL_HOSTS:
        app = TrustedHostMiddleware(app, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
    return app


def serve(settings: Settings, options: ConsoleOptions,
          announce: Callable[[str], None] = print) -> None:  # fmt: skip
    """Run the console in the foreground until SIGINT/SIGTERM; executions still running
    then end ABORTED, redrivable."""
    import uvicorn

    check_options(options)
    sock = bind(options.host, options.port)
    port = sock.getsockname()[1]
    shown = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{shown}:{port}"
    app = build_app(settings, options)
    link = f"{url}/?token={options.token}" if options.token else f"{url}/"
    announce(f"sconeflow console: {link}")
    announce(f'endpoint_url={url}  (boto3.client("stepfunctions", endpoint_url="{url}", '
             'region_name="us-east-1"); also "sagemaker" and "sagemaker-runtime")')
    # No proxy headers: nothing stands in front of a local console, and each layer costs.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            proxy_headers=False, timeout_graceful_shutdown=10)  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
