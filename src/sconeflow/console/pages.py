"""The web console: server-rendered pages over the workspace the CLI writes (nothing copied).

    /state-machines, /state-machines/{name}      graph, definition, start an execution
    /executions, /executions/rows                list by status (live), counts, pages
    /execution?arn=...                           graph coloured by outcome, states, events
    /endpoints, /endpoints/{name}                status and metrics charts
    /training-jobs, /training-jobs/{name}        hyperparameters, accuracy by epoch, metrics
    /monitoring                                  latest report, violations, confidence chart

Jinja2 with autoescaping renders everything: names, inputs, outputs and causes come from
executions and captures and are shown as text, never as markup. Pictures are PNG or SVG
served as images (an <img> runs no script), drawn by matplotlib. The pages' script is one
static file; the Content-Security-Policy allows no other.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sconeflow.console import views
from sconeflow.console.protocol import decode_token, encode_token

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
PAGE = 50  # executions per page
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class SecurityHeaders:
    """ASGI middleware: CSP, nosniff and no framing on every answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"content-security-policy", _CSP.encode()),
                                      (b"x-content-type-options", b"nosniff"),
                                      (b"x-frame-options", b"DENY"),
                                      (b"referrer-policy", b"no-referrer")]  # fmt: skip
            await send(message)

        await self.app(scope, receive, with_headers)


def _render(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    html = _ENV.get_template(name).render(request=request, nav=name.split(".")[0], **context)
    return HTMLResponse(html, status_code=status)


def _settings(request: Request) -> Any:
    return request.app.state.console["settings"]


def _db(request: Request) -> sqlite3.Connection:
    """The calling thread's workspace connection, the one the API uses there too: pages run
    on the server's thread pool, as API calls do, and read through one connection per
    thread (Executor.connection), kept open, instead of opening one per request."""
    conn: sqlite3.Connection = request.app.state.console["executor"].connection()
    return conn


def _not_found(request: Request, what: str) -> HTMLResponse:
    return _render("error.html", request, 404, message=what)


# --- state machines ------------------------------------------------------------------------


def state_machines(request: Request) -> HTMLResponse:
    return _render("state_machines.html", request, machines=views.machines(_db(request)))


def state_machine(request: Request) -> HTMLResponse:
    name = request.path_params["name"]
    conn = _db(request)
    machine = views.machine(conn, name)
    if machine is None:
        return _not_found(request, f"No state machine named {name!r}.")
    recent, _ = views.executions_page(conn, machine=name, status=None, limit=10)
    # The reference workflow's input when the machine reads an image, else an empty object.
    sample = ({"s3_bucket": _settings(request).bucket, "s3_key": "data/test/bicycle_s_000513.png"}
              if "serializeImageData" in machine["definition"] else {})  # fmt: skip
    return _render("state_machine.html", request, machine=machine, recent=recent,
                   sample_input=json.dumps(sample, indent=2))


def machine_graph(request: Request) -> Response:
    from sconeflow.executions.graph import graph_image

    machine = views.machine(_db(request), request.path_params["name"])
    if machine is None:
        return Response(status_code=404)
    svg = graph_image(json.loads(machine["definition"]), title=machine["name"])
    return Response(svg, media_type="image/svg+xml")


# --- executions ----------------------------------------------------------------------------


def _filters(request: Request) -> tuple[str | None, str | None, tuple[str, str] | None]:
    status = request.query_params.get("status") or None
    status = status if status in STATUSES else None
    machine = request.query_params.get("machine") or None
    try:
        cursor = decode_token(request.query_params.get("page"), "page")
    except Exception:  # a hand-edited link: start from the first page
        cursor = None
    after = (cursor["after"][0], cursor["after"][1]) if cursor else None
    return status, machine, after


def _listing(request: Request) -> dict[str, Any]:
    status, machine, after = _filters(request)
    conn = _db(request)
    rows, more = views.executions_page(conn, machine=machine, status=status, limit=PAGE,
                                       after=after)  # fmt: skip
    counts = views.counts(conn, machine)
    query = {k: v for k, v in (("status", status), ("machine", machine)) if v}
    older = (f"?{urlencode({**query, 'page': encode_token({'kind': 'page', 'after': more})})}"
             if more else None)  # fmt: skip
    return {"rows": rows, "counts": counts, "status_filter": status, "machine": machine,
            "older": older, "first_page": after is None, "query": urlencode(query),
            "statuses": STATUSES}  # fmt: skip


def executions(request: Request) -> HTMLResponse:
    return _render("executions.html", request, **_listing(request))


def execution_rows(request: Request) -> JSONResponse:
    """The first page's rows and the counts, for the list's live update."""
    listing = _listing(request)
    rows = _ENV.get_template("_execution_rows.html").render(rows=listing["rows"])
    return JSONResponse({"rows": rows, "counts": listing["counts"]})


def execution(request: Request) -> HTMLResponse:
    arn = request.query_params.get("arn", "")
    detail = views.execution(_db(request), arn)
    if detail is None:
        return _not_found(request, f"No execution {arn!r}.")
    return _render("execution.html", request, **detail)


def execution_graph(request: Request) -> Response:
    from sconeflow.executions.graph import graph_image

    detail = views.execution(_db(request), request.query_params.get("arn", ""))
    if detail is None:
        return Response(status_code=404)
    record = detail["record"]
    svg = graph_image(detail["definition"], outcomes=detail["outcomes"],
                      title=f"{record.state_machine}:{record.name} — {record.status}")
    return Response(svg, media_type="image/svg+xml", headers={"cache-control": "no-store"})


# --- endpoints, training, monitoring --------------------------------------------------------


def endpoints(request: Request) -> HTMLResponse:
    found = views.endpoints(_settings(request), _db(request))
    return _render("endpoints.html", request, endpoints=found)


def endpoint(request: Request) -> HTMLResponse:
    found = views.endpoint(_settings(request), _db(request), request.path_params["name"])
    if found is None:
        return _not_found(request, f"No endpoint {request.path_params['name']!r}.")
    return _render("endpoint.html", request, endpoint=found)


def endpoint_chart(request: Request) -> Response:
    from sconeflow.console.charts import endpoint_chart as draw

    name = request.path_params["name"]
    samples = request.app.state.console["sampler"].series(name)
    return Response(draw(samples, name), media_type="image/png",
                    headers={"cache-control": "no-store"})  # fmt: skip


def training_jobs(request: Request) -> HTMLResponse:
    jobs = views.jobs(_settings(request), _db(request))
    return _render("training_jobs.html", request, jobs=jobs)


def training_job(request: Request) -> HTMLResponse:
    job = views.job(_settings(request), _db(request), request.path_params["name"])
    if job is None:
        return _not_found(request, f"No training job {request.path_params['name']!r}.")
    return _render("training_job.html", request, **job)


def training_chart(request: Request) -> Response:
    from sconeflow.console.charts import parse_epochs
    from sconeflow.console.charts import training_chart as draw

    name = request.path_params["name"]
    log = views.job_log(_settings(request), name)
    if log is None:
        return Response(status_code=404)
    return Response(draw(parse_epochs(log), name), media_type="image/png")


def monitoring(request: Request) -> HTMLResponse:
    reports = views.monitoring(_settings(request), _db(request))
    return _render("monitoring.html", request, reports=reports)


def monitoring_chart(request: Request) -> Response:
    png = views.confidence_chart(_settings(request), _db(request),
                                request.path_params["endpoint"])
    return Response(png, media_type="image/png", headers={"cache-control": "no-store"})


def home(request: Request) -> RedirectResponse:
    return RedirectResponse("/executions", status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", home, methods=["GET"]),
        Route("/state-machines", state_machines),
        Route("/state-machines/{name}", state_machine),
        Route("/graphs/state-machines/{name}.svg", machine_graph),
        Route("/executions", executions),
        Route("/executions/rows", execution_rows),
        Route("/execution", execution),
        Route("/graphs/execution.svg", execution_graph),
        Route("/endpoints", endpoints),
        Route("/endpoints/{name}", endpoint),
        Route("/charts/endpoints/{name}.png", endpoint_chart),
        Route("/training-jobs", training_jobs),
        Route("/training-jobs/{name}", training_job),
        Route("/charts/training-jobs/{name}.png", training_chart),
        Route("/monitoring", monitoring),
        Route("/charts/monitoring/{endpoint}.png", monitoring_chart),
    ]
