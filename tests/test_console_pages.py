"""The web console in Debian's Chromium (Playwright), and the SageMaker APIs through the same
URL, over one real workspace: a trained job, a deployed endpoint invoked through the
console, a monitoring run, state machines and executions (one with hostile names and
input). Every page is clicked through; screenshots land in the test's tmp folder."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from console_support import client, start_console, stop_console
from sconeflow import db
from sconeflow.config import Settings, load_settings
from sconeflow.monitoring.baseline import baseline_prefix, build_baseline, save_baseline
from sconeflow.monitoring.capture_reader import CaptureRecord
from sconeflow.monitoring.features import compute_features
from sconeflow.monitoring.runner import run_monitoring
from sconeflow.monitoring.simulate import darken, decode_pngs, encode_pngs, write_capture
from sconeflow.serving.capture import CaptureConfig
from sconeflow.serving.endpoints import delete_endpoint, deploy
from sconeflow.store import open_store
from sfn_script import ROLE
from test_monitoring_support import CLASSES, fake_probs, staged_split

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
HOSTILE = "<script>window.pwned=1</script>"
MACHINE = {
    "Comment": "<b>not bold</b>",
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": "ok", "ResultPath": "$.prepared", "Next": "Route"},
        "Route": {"Type": "Choice", "Choices": [
            {"Variable": "$.fail", "IsPresent": True, "Next": "<img src=x onerror=alert(1)>"}],
            "Default": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "<img src=x onerror=alert(1)>": {"Type": "Fail", "Error": "Boom", "Cause": HOSTILE},
        "Done": {"Type": "Pass", "End": True},
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def workspace(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Settings, str]]:  # fmt: skip
    """A copy of the trained workspace with an endpoint, a monitoring run and a console."""
    home = tmp_path_factory.mktemp("pages") / "home"
    shutil.copytree(trained_home.home, home)
    settings = load_settings(env={}, home=home)
    ep = deploy(settings, "test-job", CaptureConfig(enabled=True), name="ep", workers=1)
    _monitoring_run(settings, trained_home)
    proc, url = start_console(home, "--sample-seconds", "0.3")
    try:
        yield settings, url
    finally:
        stop_console(proc)
        delete_endpoint(settings, ep.name)


def _monitoring_run(settings: Settings, staged: Settings) -> None:
    store = open_store(settings)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    pngs, labels = staged_split(staged, "train")
    recs = [CaptureRecord(f"b{i}", t0, "image/png", p, tuple(q))
            for i, (p, q) in enumerate(zip(pngs, fake_probs(labels), strict=True))]
    save_baseline(store, settings.bucket, baseline_prefix("ep-monitor"),
                  build_baseline(compute_features(recs, CLASSES)))
    test_pngs, test_labels = staged_split(staged, "test")
    images = decode_pngs(test_pngs[:80])
    images[40:] = darken(images[40:], 0.4)  # the window's second half goes dark: a violation
    write_capture(store, settings.bucket, "ep", encode_pngs(images),
                  fake_probs(test_labels[:80], 3, accuracy=0.7), start=t0,
                  interval=timedelta(seconds=10))  # fmt: skip
    with closing(db.connect(settings.db_path)) as conn:
        record, _ = run_monitoring(store, settings.bucket, conn, endpoint="ep",
                                   schedule="ep-monitor", since=t0,
                                   until=t0 + timedelta(minutes=20))  # fmt: skip
    assert record.status == "CompletedWithViolations"


@pytest.fixture(scope="module")
def executions(workspace: tuple[Settings, str]) -> dict[str, str]:
    _, url = workspace
    sfn = client(url)
    arn = sfn.create_state_machine(name="pages", definition=json.dumps(MACHINE),
                                   roleArn=ROLE)["stateMachineArn"]  # fmt: skip
    ok = sfn.start_execution(stateMachineArn=arn, name="calm",
                             input=json.dumps({"note": HOSTILE}))["executionArn"]
    bad = sfn.start_execution(stateMachineArn=arn, name="broken",
                              input=json.dumps({"fail": True}))["executionArn"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "RUNNING" in {
        sfn.describe_execution(executionArn=a)["status"] for a in (ok, bad)
    }:
        time.sleep(0.1)
    return {"machine": arn, "ok": ok, "bad": bad}


def test_sagemaker_control_plane_through_the_console(workspace: tuple[Settings, str]) -> None:
    _, url = workspace
    sm = client(url, "sagemaker")
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["ep"]
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "InService"
    assert described["DataCaptureConfig"]["EnableCapture"] is True
    config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["ProductionVariants"][0]["ModelName"] == "test-job"
    jobs = sm.list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs] == ["test-job"]
    job = sm.describe_training_job(TrainingJobName="test-job")
    assert job["TrainingJobStatus"] == "Completed" and job["HyperParameters"]["epochs"] == "1"
    assert job["ModelArtifacts"]["S3ModelArtifacts"].endswith("model.tar.gz")
    assert {m["MetricName"] for m in job["FinalMetricDataList"]}
    with pytest.raises(ClientError) as info:
        sm.describe_endpoint(EndpointName="nope")
    assert info.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as info:
        sm.describe_training_job(TrainingJobName="nope")
    assert info.value.response["Error"]["Code"] == "ResourceNotFound"


def test_invoke_endpoint_is_forwarded(workspace: tuple[Settings, str],
                                      trained_home: Settings) -> None:  # fmt: skip
    _, url = workspace
    runtime = client(url, "sagemaker-runtime")
    png = staged_split(trained_home, "test")[0][0]
    for _ in range(5):
        out = runtime.invoke_endpoint(EndpointName="ep", ContentType="image/png", Body=png,
                                      Accept="application/json")  # fmt: skip
        probs = json.loads(out["Body"].read())
        assert len(probs) == 2 and abs(sum(probs) - 1) < 1e-3
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName="ep", ContentType="image/png", Body=b"not a png")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400  # the model's own
    with pytest.raises(ClientError) as info:
        runtime.invoke_endpoint(EndpointName="missing", ContentType="image/png", Body=png)
    assert info.value.response["Error"]["Code"] == "ValidationError"


def test_pages_escape_what_executions_carry(workspace: tuple[Settings, str],
                                            executions: dict[str, str]) -> None:  # fmt: skip
    import urllib.parse
    import urllib.request

    _, url = workspace
    for path in ("/executions", f"/execution?arn={urllib.parse.quote(executions['ok'])}",
                 f"/execution?arn={urllib.parse.quote(executions['bad'])}",
                 "/state-machines/pages"):
        with urllib.request.urlopen(url + path) as resp:
            html = resp.read().decode()
            assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert "<script>window" not in html and "<img src=x" not in html and "<b>not" not in html
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html or "&lt;img" in html


def _browser(sync_api: Any, profile: Path) -> Any:
    return sync_api.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync"],
        viewport={"width": 1280, "height": 900},
    )  # fmt: skip


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed")
def test_click_through_every_page(workspace: tuple[Settings, str], executions: dict[str, str],
                                  trained_home: Settings, tmp_path: Path) -> None:  # fmt: skip
    sync_api = pytest.importorskip("playwright.sync_api")
    _, url = workspace
    errors: list[str] = []
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_api.sync_playwright() as pw:
        context = _browser(pw, tmp_path / "profile")
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: errors.append(f"dialog {d.message}"))
            page.on("request", lambda r: None if r.url.startswith((url, "data:"))
                    else errors.append(f"external request {r.url}"))

            def shot(name: str) -> None:
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            def image_width(selector: str) -> int:
                """Once the image has loaded (an image that fails never gets a width)."""
                handle = page.wait_for_function(
                    "s => { const i = document.querySelector(s);"
                    " return i && i.complete && i.naturalWidth; }", arg=selector)
                return int(handle.json_value())

            # State machines -> one machine: graph, definition, start an execution.
            page.goto(f"{url}/state-machines")
            page.click("text=pages")
            page.wait_for_selector("#start-form")
            assert image_width("img.graph") > 0
            shot("state-machine")
            page.fill("#start-input", "not json")
            page.click("#start-button")
            assert "not JSON" in page.inner_text("#start-error")
            page.fill("#start-name", "from-the-page")
            page.fill("#start-input", json.dumps({"who": "browser"}))
            page.click("#start-button")
            page.wait_for_url("**/execution?arn=*from-the-page")
            page.wait_for_selector("#execution-title >> text=SUCCEEDED", timeout=30_000)
            assert page.locator("tr.state.succeeded").count() == 4  # Prepare Route Pause Done
            shot("execution-succeeded")

            # Executions: it is listed; one started elsewhere appears without a reload.
            page.goto(f"{url}/executions")
            assert page.locator("#execution-rows >> text=from-the-page").count() == 1
            counts = page.inner_text("#counts")
            assert "1 failed" in counts and "2 succeeded" in counts
            client(url).start_execution(stateMachineArn=executions["machine"], name="live-one")
            page.wait_for_selector("#execution-rows >> text=live-one", timeout=15_000)
            page.wait_for_selector("#counts >> text=3 succeeded", timeout=15_000)
            page.click(".filters a:text-is('failed')")  # the status filter
            page.wait_for_url("**/executions?status=FAILED")
            assert page.locator("#execution-rows tr").count() == 1
            shot("executions")

            # One failed execution: its failed state in red; hostile text shown as text.
            page.click("#execution-rows >> text=broken")
            failed = page.locator("tr.state.failed")
            assert failed.count() == 1
            assert failed.get_attribute("data-state") == "<img src=x onerror=alert(1)>"
            colour = failed.locator("td.outcome").evaluate("e => getComputedStyle(e).color")
            assert colour == "rgb(198, 40, 40)"
            assert page.locator(".failure").inner_text().count(HOSTILE) == 1
            assert image_width("img.graph") > 0
            assert page.evaluate("window.pwned") is None
            shot("execution-failed")

            # Endpoints: status and the metrics charts, sampled while the console runs.
            page.goto(f"{url}/endpoints")
            assert "InService" in page.inner_text("table.list")
            page.click("text=ep >> nth=0")
            runtime = client(url, "sagemaker-runtime")
            png = staged_split(trained_home, "test")[0][0]
            for _ in range(3):  # traffic between samples (--sample-seconds 0.3)
                for _ in range(10):
                    runtime.invoke_endpoint(EndpointName="ep", ContentType="image/png",
                                            Body=png)  # fmt: skip
                time.sleep(0.4)
            page.reload()
            assert image_width("#endpoint-chart") > 600
            shot("endpoint")

            # Training jobs: hyperparameters, accuracy by epoch, evaluation numbers.
            page.goto(f"{url}/training-jobs")
            page.click("text=test-job")
            assert "epochs" in page.inner_text("table.kv")
            assert page.locator("#metrics tr").count() > 2
            assert image_width("img.chart") > 600
            shot("training-job")

            # Monitoring: the latest report, its violations, the confidence chart.
            page.goto(f"{url}/monitoring")
            assert page.locator("tr.violation").count() >= 1
            assert "CompletedWithViolations" in page.inner_text("section.report")
            assert image_width("img.chart") > 600
            shot("monitoring")
        finally:
            context.close()
    assert errors == []
    assert all((shots / f"{n}.png").stat().st_size > 10_000 for n in (
        "state-machine", "execution-succeeded", "executions", "execution-failed", "endpoint",
        "training-job", "monitoring"))  # fmt: skip


def test_monitoring_chart_is_the_runs_own_whatever_capture_it_read(
    staged_home: Settings, tmp_path: Path
) -> None:
    """The pipeline's run reads a simulated day (capture variant SimulatedDay): the page's
    chart is that run's, not an empty one drawn from the live AllTraffic capture."""
    from sconeflow.console.views import confidence_chart

    settings = Settings(home=tmp_path, store_uri=(tmp_path / "store").as_uri())
    store = open_store(settings)
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    pngs, labels = staged_split(staged_home, "train")
    recs = [CaptureRecord(f"b{i}", t0, "image/png", p, tuple(q))
            for i, (p, q) in enumerate(zip(pngs[:60], fake_probs(labels[:60]), strict=True))]
    save_baseline(store, settings.bucket, baseline_prefix("ep-monitor"),
                  build_baseline(compute_features(recs, CLASSES)))
    write_capture(store, settings.bucket, "ep", pngs[60:120], fake_probs(labels[60:120]),
                  start=t0, interval=timedelta(minutes=5), variant="SimulatedDay")
    with closing(db.connect(settings.db_path)) as conn:
        record, analysis = run_monitoring(store, settings.bucket, conn, endpoint="ep",
                                          schedule="ep-monitor", since=t0,
                                          variant="SimulatedDay",
                                          until=t0 + timedelta(hours=6))  # fmt: skip
    from sconeflow.monitoring.report import render_report, write_report

    write_report(store, settings.bucket, record.prefix, render_report(analysis, run=record))
    drawn = store.get(settings.bucket, f"{record.prefix.rstrip('/')}/confidence_over_time.png")
    with closing(db.connect(settings.db_path)) as conn:
        assert confidence_chart(settings, conn, "ep") == drawn
        # No run yet for an endpoint: drawn from its live capture (here: none, said so).
        assert confidence_chart(settings, conn, "other")[:4] == b"\x89PNG"


def test_training_chart_draws_each_fit_at_its_epochs() -> None:
    from sconeflow.console.charts import parse_epochs

    log = "\n".join(
        [f"Epoch[{e}] Train-accuracy=0.{e + 1}" for e in range(12)]
        + [f"Epoch[{e}] Validation-accuracy=0.5" for e in (0, 9, 11)]
        + ["Retraining on all 800 images for 12 epochs"]
        + [f"Epoch[{e}] Train-accuracy=0.{e + 1}" for e in range(12)]
    )
    runs = parse_epochs(log)
    assert [epochs[-1] for epochs, _ in runs["Train"]] == [11, 11]  # two fits
    assert runs["Validation"] == [([0, 9, 11], [0.5, 0.5, 0.5])]  # at the epochs measured
