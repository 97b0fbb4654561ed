"""`sconeflow evaluate`: numbers and plots, and the same answer the endpoint gives."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest

from sconeflow.cli import main
from sconeflow.config import Settings
from sconeflow.evaluation import evaluate_model
from sconeflow.serving.capture import capture_config
from sconeflow.serving.endpoints import delete_endpoint, deploy
from sconeflow.store import open_store
from test_serving_support import free_port


def test_evaluate_prints_metrics_and_writes_plots(
    trained_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    main(["--home", str(trained_home.home), "evaluate", "--model", "test-job", "--out",
          str(out), "--json"])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 200 and doc["classes"] == ["bicycle", "motorcycle"]
    cm = np.array(doc["confusion_matrix"])
    assert cm.sum() == 200 and cm.sum(axis=1).tolist() == [100, 100]
    assert abs(doc["accuracy"] - np.trace(cm) / 200) < 1e-12
    assert 0 <= doc["ece"] <= 1
    floor = doc["ece_if_perfectly_calibrated"]
    assert 0 <= floor["mean"] < 0.2 and floor["std"] > 0
    assert [r["threshold"] for r in doc["thresholds"]] == [0.5, 0.8, 0.9, 0.93, 0.95, 0.99]
    for name in ("reliability.png", "confusion.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main(["--home", str(trained_home.home), "evaluate", "--model", "test-job", "--out", str(out)])
    text = capsys.readouterr().out
    assert "Confusion matrix" in text and "0.93" in text
    assert "a perfectly calibrated model would show ECE" in text


def test_endpoint_answers_equal_evaluate(
    trained_home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3's invoke_endpoint against the deployed artifact returns exactly the
    probabilities `sconeflow evaluate` computed for the same PNG."""
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    store = open_store(trained_home)
    ev = evaluate_model(trained_home, store, "test-job", "test")
    ep = deploy(trained_home, "test-job", capture_config(0, "InputAndOutput", "sconeflow"),
                name="eval-check", port=free_port())  # fmt: skip
    try:
        runtime = boto3.client("sagemaker-runtime", endpoint_url=ep.url)
        for i in (0, 57, 199):
            body = store.get(trained_home.bucket, f"data/test/{ev.files[i]}")
            resp = runtime.invoke_endpoint(EndpointName="eval-check", Body=body,
                                           ContentType="image/png")  # fmt: skip
            assert json.loads(resp["Body"].read()) == ev.probabilities[i].tolist()
    finally:
        delete_endpoint(trained_home, "eval-check")
