"""`sconeflow pipeline` end to end on the dev tarball (training cut to one epoch), with
`--console` as a user runs it, and `sconeflow cleanup`."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from console_support import client
from sconeflow import db
from sconeflow.cli import main
from sconeflow.config import Settings, load_settings
from sconeflow.errors import MonitoringError
from sconeflow.executions.definitions import load_definition
from sconeflow.executions.machines import machine_arn
from sconeflow.monitoring.runner import list_runs, run_monitoring
from sconeflow.serving.capture import capture_config
from sconeflow.serving.endpoints import (
    delete_endpoint,
    deploy,
    describe_endpoint_row,
    list_endpoints,
    ping,
)
from sconeflow.store import open_store
from sconeflow.training.job import artifact_key, list_jobs
from test_serving_support import free_port


def test_pipeline_runs_end_to_end_then_skips_what_is_current(
    dev_tarball: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    args = ["--home", str(home), "pipeline", "--source", str(dev_tarball),
            "-p", "epochs=1", "-p", "ensemble_size=1", "-p", "retrain_full=false",
            "--port", str(free_port())]  # fmt: skip
    main(args)
    out = capsys.readouterr().out
    assert "Summary" in out and "executions succeeded" in out
    settings = load_settings(env={}, home=home)
    assert list_endpoints(settings) == []  # deleted at the end without --keep-endpoint
    main([*args, "--json"])
    doc = json.loads(capsys.readouterr().out)
    statuses = {s["name"]: s["status"] for s in doc["steps"]}
    assert statuses == {"stage": "skipped", "train": "skipped", "evaluate": "ran",
                        "deploy": "skipped", "workflow": "skipped", "monitor": "skipped"}
    assert doc["succeeded"] + doc["failed"] == 100  # the traffic half of data/test
    assert doc["monitoring_status"] in ("Completed", "CompletedWithViolations")
    report = Path(doc["report"])
    html = report.read_text()
    assert report.name == "report.html" and "<img" in html
    # An honest main job: a baseline of other images, a simulated day, every test's rule.
    assert "Times are simulated" in html and "100 / 100" in html and "decided by" in html
    summary = json.loads((report.parent / "summary.json").read_text())
    assert summary["records"] == 100 and summary["model_quality"] is not None
    assert {d["feature"] for d in summary["drift"]} >= {"brightness", "predicted_class",
                                                       "embedding"}
    assert any(d["distance"] > 0 for d in summary["drift"])  # not the same images twice
    start, end = summary["window"]["start"], summary["window"]["end"]
    assert start.endswith("T08:00:00Z") and end[11:13] == "15"  # 08:00 to about 16:00
    store = open_store(settings)
    captured = store.list(settings.bucket, "data_capture/scones-endpoint/AllTraffic/")
    lines = sum(len(store.get(settings.bucket, k).splitlines()) for k in captured)
    assert lines >= 100  # every classify call was captured (retries may add more)
    record = json.loads(store.get(settings.bucket, captured[0]).splitlines()[0])
    # classifyImage sends the image key as inference id: captures join workflow outcomes
    assert record["eventMetadata"]["inferenceId"].startswith("data/test/")

    main(["--home", str(home), "cleanup", "--all", "--json"])
    removed = json.loads(capsys.readouterr().out)
    assert removed["data"] > 1000 and removed["models"] == 1 and removed["captures"] >= 1
    assert store.list(settings.bucket) == []


@pytest.mark.slow
def test_pipeline_never_stops_an_endpoint_it_did_not_deploy(
    trained_home: Settings, dev_tarball: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    shutil.copytree(trained_home.home, home)  # staged data and test-job, ours to change
    settings = load_settings(env={}, home=home)
    # The user deploys scones-endpoint by hand, with the model trained earlier.
    mine = deploy(settings, "test-job", capture_config(0, "InputAndOutput", settings.bucket),
                  name="scones-endpoint", port=free_port(), workers=1)  # fmt: skip
    # A stale record: the pipeline once deployed an endpoint of that name, which has since
    # been deleted and deployed again by the user (another server process).
    (home / "pipeline.json").write_text(json.dumps({"endpoint": {
        "name": "scones-endpoint", "created_at": mine.created_at, "pid": (mine.pid or 0) + 1}}))
    try:
        # A changed setting (seed): a new model, which the user's endpoint does not serve.
        main(["--home", str(home), "pipeline", "--source", str(dev_tarball),
              "-p", "epochs=1", "-p", "ensemble_size=1", "-p", "retrain_full=false",
              "-p", "seed=7", "--port", str(free_port()), "--json"])  # fmt: skip
        captured = capsys.readouterr()
        doc = json.loads(captured.out)
        assert doc["job"] != "test-job" and doc["succeeded"] + doc["failed"] == 100
        assert doc["endpoint"] == "scones-endpoint-pipeline"  # says which endpoint it used
        assert "scones-endpoint was not deployed by the pipeline" in captured.err
        after = describe_endpoint_row(settings, "scones-endpoint")
        assert after.status == "InService" and after.pid == mine.pid and ping(mine.url)
        assert after.model == "test-job"  # not replaced by the new model either
        assert [e.name for e in list_endpoints(settings)] == ["scones-endpoint"]  # own one gone
        assert "endpoint" not in json.loads((home / "pipeline.json").read_text())
    finally:
        delete_endpoint(settings, "scones-endpoint")


@pytest.mark.slow
def test_cleanup_forgets_the_records_of_what_it_deletes(
    trained_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--captures forgets the monitoring runs with their outputs, --models the training
    jobs with their models; each leaves the other's records."""
    home = tmp_path / "home"
    shutil.copytree(trained_home.home, home)  # staged data and test-job, ours to change
    settings = load_settings(env={}, home=home)
    store = open_store(settings)
    t0 = datetime(2025, 8, 22, 4, tzinfo=UTC)
    with closing(db.connect(settings.db_path)) as conn:
        with pytest.raises(MonitoringError, match="no baseline"):  # recorded Failed
            run_monitoring(store, settings.bucket, conn, endpoint="ep", schedule="ep-monitor",
                           since=t0, until=t0 + timedelta(hours=1))  # fmt: skip
        assert len(list_runs(conn)) == 1
    main(["--home", str(home), "cleanup", "--captures", "--json"])
    assert json.loads(capsys.readouterr().out)["endpoints"] == 0
    with closing(db.connect(settings.db_path)) as conn:
        assert list_runs(conn) == []
    assert [j.name for j in list_jobs(settings)] == ["test-job"]
    main(["--home", str(home), "cleanup", "--models", "--json"])
    assert json.loads(capsys.readouterr().out)["models"] == 1
    assert list_jobs(settings) == []
    assert not store.exists(settings.bucket, artifact_key("test-job"))


def _lines(stream: IO[str] | None) -> queue.Queue[str]:
    """The lines of a child's stdout as they come, read in a thread (readline would block)."""
    assert stream is not None
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.slow
def test_pipeline_console_serves_the_runs_executions_until_ctrl_c(
    trained_home: Settings, dev_tarball: Path, tmp_path: Path
) -> None:
    """`sconeflow pipeline --console` as a user runs it (a process, Ctrl-C at the end), made
    cheap: the trained workspace and the same settings, so staging and training are
    skipped and the endpoint, the 100 executions and the monitoring run are real."""
    home = tmp_path / "home"
    shutil.copytree(trained_home.home, home)
    settings = load_settings(env={}, home=home)
    console_port = free_port()
    log = (tmp_path / "pipeline.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sconeflow", "--home", str(home), "pipeline",
         "--source", str(dev_tarball), "-p", "epochs=1", "-p", "ensemble_size=1",
         "-p", "retrain_full=false", "--port", str(free_port()), "--console",
         "--console-port", str(console_port), "--json"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    try:
        lines, printed = _lines(proc.stdout), list[str]()
        deadline = time.monotonic() + 300
        while not (printed and printed[-1].startswith("sconeflow console: ")):
            assert proc.poll() is None, (tmp_path / "pipeline.log").read_text()[-3000:]
            try:
                printed.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError("the console never started") from None
        url = f"http://127.0.0.1:{console_port}"
        assert printed[-1].strip() == f"sconeflow console: {url}/"
        doc = json.loads("".join(printed[:-1]))  # the summary, then the console's address
        assert {s["name"]: s["status"] for s in doc["steps"]}["train"] == "skipped"
        assert doc["succeeded"] + doc["failed"] == 100
        endpoint = describe_endpoint_row(settings, doc["endpoint"])
        assert endpoint.status == "InService"  # --console keeps the endpoint
        assert lines.get(timeout=10).startswith(f"endpoint_url={url}")

        # The run's executions, through Step Functions' own client...
        sfn = client(url)
        machine = machine_arn(load_definition(None).name)
        listed: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = sfn.list_executions(stateMachineArn=machine, maxResults=40,
                                       **({"nextToken": token} if token else {}))
            listed += page["executions"]
            if not (token := page.get("nextToken")):
                break
        statuses = [e["status"] for e in listed]
        assert len(listed) == 100
        assert (statuses.count("SUCCEEDED"), statuses.count("FAILED")) == (
            doc["succeeded"], doc["failed"])
        one = sfn.describe_execution(executionArn=listed[0]["executionArn"])
        assert json.loads(one["input"])["s3_key"].startswith("data/test/")
        # ... and the pages.
        with urllib.request.urlopen(f"{url}/executions/rows", timeout=30) as resp:
            counts = json.loads(resp.read())["counts"]
        assert (counts["total"], counts.get("FAILED", 0)) == (100, doc["failed"])
        with urllib.request.urlopen(f"{url}/executions", timeout=30) as resp:
            html = resp.read().decode()
        assert resp.status == 200 and listed[0]["name"] in html
        with urllib.request.urlopen(f"{url}/monitoring", timeout=30) as resp:
            assert doc["monitoring_status"] in resp.read().decode()

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 130
        with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", console_port))
        with socket.socket() as again:  # as a console started next binds it
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", console_port))
        assert ping(endpoint.url)  # the endpoint outlives the console, as the help says
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        for ep in list_endpoints(settings):
            delete_endpoint(settings, ep.name)
