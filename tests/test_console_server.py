"""The console's safety: loopback by default, a token for any other address (checked on
every request: header, cookie, or the AWS access key id), Host names checked; and the db
connections its pages, its APIs (InvokeEndpoint's lookup included) and its metrics sampler
read through: one per thread, fresh, closed at shutdown."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import FAST_HP, free_port
from console_support import client, start_console, stop_console
from sconeflow.config import Settings, load_settings
from sconeflow.console.server import ConsoleOptions, bind, build_app, check_options
from sconeflow.errors import ConfigError
from sconeflow.executions.definitions import Definition
from sconeflow.executions.runner import WorkflowRunner
from sconeflow.serving.capture import CaptureConfig
from sconeflow.serving.endpoints import delete_endpoint, deploy
from sconeflow.store import open_store
from sconeflow.training.job import run_training_job
from sfn_script import ROLE
from test_monitoring_support import staged_split

TOKEN = "s3cret-token-for-tests"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_another_address_needs_a_long_token() -> None:
    with pytest.raises(ConfigError, match="--token"):
        check_options(ConsoleOptions(host="0.0.0.0"))
    with pytest.raises(ConfigError, match="16 characters"):
        check_options(ConsoleOptions(host="0.0.0.0", token="short"))
    check_options(ConsoleOptions(host="0.0.0.0", token=TOKEN))


def test_cli_refuses_a_public_bind_without_token(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "sconeflow", "--home", str(tmp_path / "h"),
                          "console", "--host", "0.0.0.0"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 1 and out.stderr.startswith("ConfigError: --host 0.0.0.0")


@pytest.mark.slow
def test_token_is_checked_on_every_request(tmp_path: Path) -> None:
    proc, url = start_console(tmp_path / "home", "--token", TOKEN)
    try:
        status, _, body = _get(f"{url}/executions")
        assert status == 403 and b"UnrecognizedClientException" in body
        assert _get(f"{url}/executions", {"X-Sconeflow-Token": TOKEN})[0] == 200
        assert _get(f"{url}/executions", {"X-Sconeflow-Token": TOKEN + "x"})[0] == 403
        # The printed link: ?token= sets an HttpOnly cookie and drops the token from the URL.
        status, headers, _ = _get(f"{url}/executions?token={TOKEN}")
        assert status == 303 and headers["location"] == "/executions"
        assert "HttpOnly" in headers["set-cookie"]
        assert _get(f"{url}/executions", {"Cookie": f"sconeflow_token={TOKEN}"})[0] == 200
        # AWS SDKs: the token is the access key id they sign with.
        with pytest.raises(ClientError) as info:
            client(url, key="wrong").list_state_machines()
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert client(url, key=TOKEN).list_state_machines()["stateMachines"] == []
    finally:
        stop_console(proc)


@pytest.mark.slow
def test_foreign_host_names_are_refused(tmp_path: Path) -> None:
    """A page on another site that points its own name at 127.0.0.1 (DNS rebinding) sends
    its Host header, which the console does not answer."""
    proc, url = start_console(tmp_path / "home")
    try:
        assert _get(f"{url}/executions", {"Host": "evil.example"})[0] == 400
        assert _get(f"{url}/executions")[0] == 200
        # The AWS APIs too: they are answered before the pages' app, behind the same check.
        foreign = urllib.request.Request(url, method="POST", data=b"{}", headers={
            "Host": "evil.example", "X-Amz-Target": "AWSStepFunctions.ListStateMachines"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(foreign)
        assert refused.value.code == 400
        assert client(url).list_state_machines()["stateMachines"] == []
        request = urllib.request.Request(url, method="POST", data=b"{}", headers={
            "X-Amz-Target": "Nope.Action", "Content-Type": "application/x-amz-json-1.0"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request)
        assert json.loads(info.value.read())["__type"] == "UnknownOperationException"
    finally:
        stop_console(proc)


def _post(url: str, target: str, data: bytes) -> tuple[int, Any, dict[str, object]]:
    """(status, headers (names in any case), JSON body) of one AWS JSON call."""
    request = urllib.request.Request(url, method="POST", data=data, headers={
        "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"})  # fmt: skip
    try:
        with urllib.request.urlopen(request) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


@pytest.mark.slow
def test_aws_edge_answers_bad_bodies_in_aws_shape(tmp_path: Path) -> None:
    """POST / is answered by the console's own edge: errors keep AWS's shape and status,
    on the loop (DescribeExecution) as on the thread pool (the rest)."""
    proc, url = start_console(tmp_path / "home")
    try:
        status, headers, body = _post(url, "AWSStepFunctions.ListStateMachines", b"{nope")
        assert (status, body["__type"]) == (400, "SerializationException")
        assert headers["x-amzn-ErrorType"] == "SerializationException"
        status, _, body = _post(url, "AWSStepFunctions.ListStateMachines", b"[]")
        assert (status, body["__type"]) == (400, "SerializationException")
        status, _, body = _post(url, "AWSStepFunctions.ListStateMachines",
                                b'{"x": "' + b"a" * (3 * 1024 * 1024) + b'"}')  # fmt: skip
        assert status == 413 and "over" in str(body["message"])
        arn = "arn:aws:states:us-east-1:123456789012:execution:m:gone"
        status, headers, body = _post(url, "AWSStepFunctions.DescribeExecution",
                                      json.dumps({"executionArn": arn}).encode())  # fmt: skip
        assert (status, body["__type"]) == (400, "ExecutionDoesNotExist")
        assert headers["Content-Type"] == "application/x-amz-json-1.0"
        status, _, body = _post(url, "AWSStepFunctions.DescribeExecution", b'{"executionArn": 7}')
        assert (status, body["__type"]) == (400, "InvalidArn")
    finally:
        stop_console(proc)


# --- the pages' db connections --------------------------------------------------------------

# Every sqlite3 connection this process opens, seen through Python's audit events (real
# connections, nothing replaced): "sqlite3.connect" names the file, then
# "sqlite3.connect/handle" gives the connection, in the same thread. Hooks stay for the
# process's life, so one is added once and records only while `_WATCH` names a file.
_WATCH: dict[str, Any] = {"path": None, "opened": [], "connects": []}
_HOOKED: list[bool] = []
_NAMED = threading.local()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "sqlite3.connect":
        _NAMED.path = str(args[0])
        return
    watched = _WATCH["path"]
    if event == "socket.connect" and watched and isinstance(args[1], tuple):
        _WATCH["connects"].append((threading.current_thread(), args[1]))
        return
    if event == "sqlite3.connect/handle" and watched and getattr(_NAMED, "path", "") == watched:
        _WATCH["opened"].append((threading.current_thread(), args[0]))


def _watch_connections(path: Path) -> list[tuple[threading.Thread, sqlite3.Connection]]:
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    _WATCH["path"], _WATCH["opened"], _WATCH["connects"] = str(path.resolve()), [], []
    opened: list[tuple[threading.Thread, sqlite3.Connection]] = _WATCH["opened"]
    return opened


def _serve_in_thread(settings: Settings, sample_seconds: float = 0
                     ) -> tuple[Any, threading.Thread, str]:  # fmt: skip
    """The console's app on a real socket on 127.0.0.1, served by uvicorn in a thread of
    this process (so that its connections can be seen), as `sconeflow console` serves it;
    no metrics sampler thread unless `sample_seconds` says how often to sample."""
    import uvicorn

    sock = bind("127.0.0.1", free_port())
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = build_app(settings, ConsoleOptions(sample_seconds=sample_seconds))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the console never started"
        time.sleep(0.02)
    return server, thread, url


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200, url
        return str(resp.read().decode())


PASS_MACHINE = json.dumps({"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}})


def test_pages_read_through_one_connection_per_thread(settings: Settings) -> None:
    """Pages and the API share each thread's connection (db.ThreadConnections): many page
    loads open no more connections than there are threads serving them, reads see what
    another connection committed a moment before (WAL), and shutdown closes them all."""
    opened = _watch_connections(settings.db_path)
    server, thread, url = _serve_in_thread(settings)
    try:
        sfn = client(url)
        machine = sfn.create_state_machine(name="pages", definition=PASS_MACHINE,
                                           roleArn=ROLE)["stateMachineArn"]  # fmt: skip
        first = sfn.start_execution(stateMachineArn=machine, name="first")["executionArn"]
        deadline = time.monotonic() + 30
        while sfn.describe_execution(executionArn=first)["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        arn = urllib.parse.quote(first)
        paths = ["/executions", "/executions/rows", "/state-machines", "/state-machines/pages",
                 f"/execution?arn={arn}", f"/graphs/execution.svg?arn={arn}",
                 "/graphs/state-machines/pages.svg", "/monitoring"]  # fmt: skip
        loads = 0
        for round_ in range(4):
            # Written through another connection (a runner of this process, as `sconeflow
            # workflow run` would from its own), then read by the pages at once.
            name = f"outside-{round_}"
            with WorkflowRunner(settings, Definition("pages", PASS_MACHINE, "test"), {}) as r:
                assert r.start({}, name).status == "SUCCEEDED"
            assert name in _page(f"{url}/executions")
            assert json.loads(_page(f"{url}/executions/rows"))["counts"]["SUCCEEDED"] == (
                round_ + 2)
            for path in paths:
                _page(url + path)
            loads += 2 + len(paths)
        served = [(t, c) for t, c in opened if t is not threading.current_thread()]
        per_thread = Counter(t.ident for t, _ in served)
        assert served and max(per_thread.values()) == 1, per_thread  # not one per request
        assert len(served) < loads / 4, (len(served), loads)
    finally:
        server.should_exit = True
        thread.join(30)
        _WATCH["path"] = None
    assert not thread.is_alive()
    for _, conn in served:  # the lifespan's end (Executor.close) closed every one
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
def test_sagemaker_api_and_invocations_read_through_one_connection_per_thread(
    trained_home: Settings, tmp_path: Path
) -> None:
    """The training-job and endpoint pages, the SageMaker API, InvokeEndpoint's lookup (on
    every request) and the metrics sampler read through each thread's connection, as the
    execution pages do: a burst of invocations opens no more connections than there are
    threads, a job trained and an endpoint deployed by another connection while the
    console runs are seen at once, and shutdown closes every connection."""
    home = tmp_path / "home"
    shutil.copytree(trained_home.home, home)
    settings = load_settings(env={}, home=home)
    png = staged_split(settings, "test")[0][0]
    opened = _watch_connections(settings.db_path)
    server, thread, url = _serve_in_thread(settings, sample_seconds=0.1)
    sm, runtime = client(url, "sagemaker"), client(url, "sagemaker-runtime")
    requests, deployed = 0, False
    try:
        # Every thread that serves below has read before the job and the endpoint exist.
        assert "test-job" in _page(f"{url}/training-jobs")
        assert "test-job" in _page(f"{url}/training-jobs/test-job")
        assert sm.list_endpoints()["Endpoints"] == []
        with pytest.raises(ClientError) as info:
            runtime.invoke_endpoint(EndpointName="ep", ContentType="image/png", Body=png)
        assert info.value.response["Error"]["Code"] == "ValidationError"
        requests += 4

        # A job trained by this process's own connections, then read by the console at once.
        run_training_job(settings, open_store(settings), FAST_HP, job_name="fresh-job",
                         log=lambda line: None)  # fmt: skip
        job = sm.describe_training_job(TrainingJobName="fresh-job")
        assert job["TrainingJobStatus"] == "Completed"
        names = [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]]
        assert names == ["fresh-job", "test-job"]
        assert "fresh-job" in _page(f"{url}/training-jobs")
        assert "fresh-job" in _page(f"{url}/training-jobs/fresh-job")
        requests += 4

        # An endpoint deployed the same way: listed, described, invoked at once.
        deploy(settings, "fresh-job", CaptureConfig(enabled=False), name="ep", workers=1)
        deployed = True
        assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
        assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["ep"]
        assert "InService" in _page(f"{url}/endpoints")
        assert "InService" in _page(f"{url}/endpoints/ep")
        requests += 4

        def invoke(_: int) -> int:
            out = runtime.invoke_endpoint(EndpointName="ep", ContentType="image/png", Body=png,
                                          Accept="application/json")  # fmt: skip
            return len(json.loads(out["Body"].read()))

        from sconeflow.serving.endpoints import describe_endpoint_row

        port = urllib.parse.urlsplit(describe_endpoint_row(settings, "ep").url).port  # type: ignore[union-attr]
        _WATCH["connects"].clear()  # from here: the burst (and the sampler's /metrics reads)
        with ThreadPoolExecutor(4) as pool:  # a burst: several requests in flight at once
            assert set(pool.map(invoke, range(120))) == {2}
        requests += 120
        # ...forwarded on kept-alive connections: one per console thread, not per request.
        upstream = Counter(t.ident for t, addr in _WATCH["connects"]
                           if addr[1] == port and t.name != "metrics")  # fmt: skip
        assert upstream and max(upstream.values()) == 1, upstream

        # The sampler lists the endpoints every 0.1 s through its thread's connection, and
        # has found the new one: the chart is drawn once it holds two samples.
        deadline = time.monotonic() + 30
        while _png_size(_get(f"{url}/charts/endpoints/ep.png")[2])[1] < 300:
            assert time.monotonic() < deadline, "the sampler never sampled the new endpoint"
            time.sleep(0.1)
        served = [(t, c) for t, c in opened if t is not threading.current_thread()]
        per_thread = Counter(t.ident for t, _ in served)
        assert served and max(per_thread.values()) == 1, per_thread  # not one per request
        assert len(served) < requests / 8, (len(served), requests)
        assert [t.name for t, _ in served].count("metrics") == 1
    finally:
        server.should_exit = True
        thread.join(30)
        _WATCH["path"] = None
        if deployed:
            delete_endpoint(settings, "ep")
    assert not thread.is_alive()
    for _, conn in served:  # the sampler stopped first, then Executor.close closed them all
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")
