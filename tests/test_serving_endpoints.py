"""Endpoints as resources through the CLI: deploy (path or training job), list, describe,
invoke, delete (with capture flushed), and failures that explain themselves."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sconeflow import db
from sconeflow.cli import cli
from sconeflow.config import Settings
from sconeflow.errors import EndpointError, ModelError
from sconeflow.serving.capture import capture_config
from sconeflow.serving.endpoints import (
    default_name,
    delete_endpoint,
    deploy,
    list_endpoints,
    ping,
    port_is_free,
    validate_name,
)
from sconeflow.store import open_store
from test_serving_support import free_port, png_bytes, write_artifact, write_model_dir

pytestmark = pytest.mark.slow


def _run(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(settings.home), *args], catch_exceptions=True)


@pytest.fixture
def cleanup(settings: Settings) -> Iterator[Settings]:
    yield settings
    for ep in list_endpoints(settings):  # never leave a server behind
        delete_endpoint(settings, ep.name, timeout=10)


def _server_alive(pid: int, name: str) -> bool:
    """Whether `pid` is still that endpoint's server (a busy machine reuses pids fast)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if the deploy in this process started it
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return state != "Z" and name.encode() in cmdline


def test_deploy_list_describe_invoke_delete(cleanup: Settings, tmp_path: Path) -> None:
    settings = cleanup
    tar = write_artifact(tmp_path / "a" / "model.tar.gz")
    port = free_port()
    res = _run(
        settings,
        "deploy",
        "--model",
        str(tar),
        "--name",
        "scones-1",
        "--port",
        str(port),
        "--capture-sampling",
        "100",
        "--json",
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    info = json.loads(res.output)
    assert info["EndpointStatus"] == "InService" and info["Url"] == f"http://127.0.0.1:{port}"
    assert info["DataCaptureConfig"]["CurrentSamplingPercentage"] == 100
    assert (settings.run_dir / "scones-1.pid").read_text().strip() == str(info["Pid"])
    with db.connect(settings.db_path) as conn:
        row = conn.execute("SELECT * FROM endpoints WHERE name = 'scones-1'").fetchone()
    assert json.loads(row["capture_config"]) == {
        "EnableCapture": True, "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://sconeflow/data_capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"],
                                     "JsonContentTypes": ["application/json"]},
    }  # fmt: skip

    listed = json.loads(_run(settings, "endpoint", "list", "--json").output)
    assert [e["EndpointName"] for e in listed] == ["scones-1"]
    described = json.loads(_run(settings, "endpoint", "describe", "scones-1", "--json").output)
    assert described["ProductionVariants"][0]["VariantName"] == "AllTraffic"

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        (folder / f"img{i}.png").write_bytes(png_bytes(i))
    (folder / "notes.txt").write_text("ignored")
    res = _run(
        settings, "invoke", "--endpoint", "scones-1", str(folder), "--concurrency", "3", "--json"
    )
    assert res.exit_code == 0, res.output
    answers = json.loads(res.output)
    assert len(answers) == 6
    assert all(a["class"] in ("bicycle", "motorcycle") and a["error"] is None for a in answers)
    res = _run(
        settings, "invoke", "--endpoint", f"http://127.0.0.1:{port}", str(folder / "img0.png")
    )
    assert res.exit_code == 0 and "img0.png" in res.output

    pid = info["Pid"]
    assert _server_alive(pid, "scones-1")
    res = _run(settings, "endpoint", "delete", "scones-1")
    assert res.exit_code == 0, res.output
    assert not _server_alive(pid, "scones-1")
    assert list_endpoints(settings) == []
    # Capture was flushed by the graceful stop: one record per invocation.
    store = open_store(settings)
    keys = store.list(settings.bucket, "data_capture/scones-1/AllTraffic/")
    lines = [ln for k in keys for ln in store.get(settings.bucket, k).decode().splitlines()]
    assert len(lines) == 7


def test_deploy_a_training_job_by_name(cleanup: Settings, tmp_path: Path) -> None:
    settings = cleanup
    tar = write_artifact(tmp_path / "a" / "model.tar.gz")
    store = open_store(settings)
    key = "models/job-7/output/model.tar.gz"
    store.put(settings.bucket, key, tar.read_bytes())
    with db.connect(settings.db_path) as conn:
        conn.execute(
            "INSERT INTO training_jobs (name, status, created_at, hyperparameters, artifact) "
            "VALUES ('job-7', 'Completed', '2025-01-01T00:00:00Z', '{}', ?)",
            (store.uri(settings.bucket, key),),
        )
    res = _run(
        settings,
        "deploy",
        "--model",
        "job-7",
        "--port",
        str(free_port()),
        "--capture-sampling",
        "0",
        "--json",
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    info = json.loads(res.output)
    assert info["EndpointName"].startswith("job-7-") and info["Model"] == "job-7"
    assert info["DataCaptureConfig"]["EnableCapture"] is False


def test_deploy_failures_explain_themselves(cleanup: Settings, tmp_path: Path) -> None:
    settings = cleanup
    res = _run(settings, "deploy", "--model", "no-such-job", "--name", "x1")
    assert isinstance(res.exception, ModelError) and "training job" in str(res.exception)
    res = _run(settings, "deploy", "--model", str(tmp_path), "--name", "-bad-")
    assert isinstance(res.exception, EndpointError) and "invalid" in str(res.exception)

    # A model folder whose graph does not load: the server dies; the error shows its log.
    folder = write_model_dir(tmp_path / "broken")
    (folder / "model.onnx").write_bytes(b"not onnx")
    res = _run(
        settings, "deploy", "--model", str(folder), "--name", "broken", "--port", str(free_port())
    )
    assert isinstance(res.exception, EndpointError)
    assert "exited" in str(res.exception) and "cannot be loaded" in str(res.exception)
    # The master's why, whichever worker failed first, even past the log's tail.
    assert re.search(r"while starting: worker \d could not start: ModelError", str(res.exception))
    listed = json.loads(_run(settings, "endpoint", "list", "--json").output)
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed] == [("broken", "Failed")]

    ok = write_model_dir(tmp_path / "ok")
    port = free_port()
    assert (
        _run(settings, "deploy", "--model", str(ok), "--name", "dup", "--port", str(port)).exit_code
        == 0
    )
    res = _run(settings, "deploy", "--model", str(ok), "--name", "dup")
    assert isinstance(res.exception, EndpointError) and "already exists" in str(res.exception)
    res = _run(settings, "deploy", "--model", str(ok), "--name", "dup2", "--port", str(port))
    assert isinstance(res.exception, EndpointError) and "in use" in str(res.exception)
    res = _run(settings, "endpoint", "describe", "nope")
    assert isinstance(res.exception, EndpointError) and "not found" in str(res.exception)


def test_a_stopped_endpoint_is_out_of_service_a_killed_one_failed(
    cleanup: Settings, tmp_path: Path
) -> None:
    settings = cleanup
    model = write_model_dir(tmp_path / "m")
    pids = {}
    for name in ("stopped", "killed"):
        res = _run(settings, "deploy", "--model", str(model), "--name", name, "--port",
                   str(free_port()), "--workers", "1", "--json")  # fmt: skip
        assert res.exit_code == 0, res.output
        pids[name] = json.loads(res.output)["Pid"]
    os.kill(pids["stopped"], signal.SIGTERM)  # as an operator or an init system would
    os.kill(pids["killed"], signal.SIGKILL)
    # deploy ran in this process: the servers are our children
    codes = {name: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for name, pid in pids.items()}
    assert codes == {"stopped": 0, "killed": -signal.SIGKILL}
    listed = json.loads(_run(settings, "endpoint", "list", "--json").output)
    assert {e["EndpointName"]: e["EndpointStatus"] for e in listed} == {
        "stopped": "OutOfService",
        "killed": "Failed",
    }
    for name in pids:
        assert _run(settings, "endpoint", "delete", name, "--timeout", "5").exit_code == 0
    assert list_endpoints(settings) == []


def test_endpoint_names_follow_sagemaker_rules() -> None:
    for good in ("a", "scones-endpoint", "A1--b2", "x" * 63):
        assert validate_name(good) == good
    for bad in ("", "-a", "a-", "a_b", "a.b", "x" * 64):
        with pytest.raises(EndpointError):
            validate_name(bad)
    assert validate_name(default_name("/tmp/some dir/model.tar.gz"))
    assert validate_name(default_name("j" * 80))


def _time_wait_sockets(port: int) -> int:
    """Sockets in TIME_WAIT (state 06) whose local port is `port`, from /proc/net/tcp."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1 for r in rows if int(r.split()[1].split(":")[1], 16) == port and r.split()[3] == "06"
    )


def test_redeploy_on_the_same_port_right_after_delete(cleanup: Settings, tmp_path: Path) -> None:
    settings = cleanup
    model = str(write_model_dir(tmp_path / "ok"))
    port = free_port()
    no_capture = capture_config(0, "InputAndOutput", settings.bucket)
    deploy(settings, model, no_capture, name="first", port=port, workers=1)
    # Keep-alive connections that the server closes when it stops: the closing side keeps
    # each one in TIME_WAIT on the server's port for a minute.
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(4)]
    for conn in conns:
        conn.request("POST", "/invocations", png_bytes(), {"Content-Type": "image/png"})
        assert conn.getresponse().read()
    delete_endpoint(settings, "first")
    for conn in conns:
        conn.close()
    assert _time_wait_sockets(port) > 0  # the situation under test, or it proves nothing
    again = deploy(settings, model, no_capture, name="second", port=port, workers=1)
    assert again.port == port and ping(again.url)


def test_a_port_held_even_by_a_reuseport_server_is_refused(
    cleanup: Settings, tmp_path: Path
) -> None:
    model = str(write_model_dir(tmp_path / "ok"))
    with socket.socket() as other:  # a server that would let any SO_REUSEPORT socket join
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(EndpointError, match=f"port {port} on 127.0.0.1 is in use"):
            deploy(cleanup, model, capture_config(0, "InputAndOutput", cleanup.bucket),
                   name="intruder", port=port, workers=2)  # fmt: skip
    assert list_endpoints(cleanup) == []
