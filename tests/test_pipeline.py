"""`sconeflow pipeline` end to end on the dev tarball (training cut to one epoch), and
`sconeflow cleanup`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sconeflow.cli import main
from sconeflow.config import load_settings
from sconeflow.serving.endpoints import list_endpoints
from sconeflow.store import open_store
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
    assert doc["succeeded"] + doc["failed"] == 200
    assert doc["monitoring_status"] in ("Completed", "CompletedWithViolations")
    report = Path(doc["report"])
    assert report.name == "report.html" and "<img" in report.read_text()
    store = open_store(settings)
    captured = store.list(settings.bucket, "data_capture/scones-endpoint/AllTraffic/")
    lines = sum(len(store.get(settings.bucket, k).splitlines()) for k in captured)
    assert lines >= 200  # every classify call was captured (retries may add more)
    record = json.loads(store.get(settings.bucket, captured[0]).splitlines()[0])
    # classifyImage sends the image key as inference id: captures join workflow outcomes
    assert record["eventMetadata"]["inferenceId"].startswith("data/test/")

    main(["--home", str(home), "cleanup", "--all", "--json"])
    removed = json.loads(capsys.readouterr().out)
    assert removed["data"] > 1000 and removed["models"] == 1 and removed["captures"] >= 1
    assert store.list(settings.bucket) == []
