"""`sconeflow evaluate`: numbers and plots, and the same answer the endpoint gives."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest

from sconeflow.cli import main
from sconeflow.config import Settings
from sconeflow.errors import ConfigError
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


# ------------------------------------------------------------------ selective classification


def test_risk_coverage_and_aurc_on_a_known_example() -> None:
    from sconeflow.selective import risk_coverage

    rc = risk_coverage(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, True]))
    np.testing.assert_allclose(rc.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(rc.risk, [0.0, 0.5, 1 / 3, 0.25])
    assert abs(rc.aurc - (0 + 0.5 + 1 / 3 + 0.25) / 4) < 1e-12
    best = 0.25 + 0.75 * np.log(0.75)  # every error ranked last
    assert abs(rc.excess_aurc - (rc.aurc - best)) < 1e-12
    tied = risk_coverage(np.array([0.9, 0.9, 0.5]), np.array([True, False, True]))
    assert tied.coverage.tolist() == [2 / 3, 1.0]  # equal confidences pass together


def test_sgr_bound_holds_at_the_stated_confidence_by_repeated_sampling() -> None:
    """Scores whose truth is known: confidence c ~ U(0.5, 1) and P(right | c) = c, so the
    selective accuracy above a threshold t is exactly (1 + t) / 2. Over many draws the
    reported bound may fail in at most delta of them (plus sampling slack), while the
    empirical threshold, which promises nothing, misses the target about half the time."""
    from sconeflow.selective import select_threshold

    rng = np.random.default_rng(1)
    delta, target, runs = 0.1, 0.9, 300
    guaranteed = broken = empirical_misses = 0
    for _ in range(runs):
        conf = rng.uniform(0.5, 1.0, 1000)
        right = rng.random(1000) < conf
        chosen = select_threshold(conf, right, target, confidence_level=1 - delta)
        true_accuracy = (1 + chosen.threshold) / 2
        if chosen.guaranteed:
            guaranteed += 1
            assert chosen.accuracy_lower_bound >= target
            broken += true_accuracy < chosen.accuracy_lower_bound
        # the plug-in rule on the same draw: lowest threshold with observed accuracy >= target
        order = np.argsort(-conf)
        observed = np.cumsum(right[order]) / np.arange(1, 1001)
        plug_in = conf[order][np.flatnonzero(observed >= target)[-1]]
        empirical_misses += (1 + plug_in) / 2 < target
    assert guaranteed >= runs // 2
    slack = 3 * np.sqrt(delta * (1 - delta) / guaranteed)
    assert broken / guaranteed <= delta + slack, (broken, guaranteed)
    assert empirical_misses / runs > 0.25  # the check above could fail: misses do happen


def test_too_few_images_give_an_empirical_threshold_and_say_so() -> None:
    from sconeflow.selective import select_threshold

    conf = np.linspace(0.6, 1.0, 200)
    right = np.ones(200, dtype=bool)
    right[:3] = False  # three errors among the least confident
    chosen = select_threshold(conf, right, 0.99, labels=np.arange(200) % 2,
                              class_names=["bicycle", "motorcycle"])  # fmt: skip
    assert not chosen.guaranteed and chosen.images_needed == 505  # ln(0.05/8) / ln(0.99)
    assert chosen.selective_accuracy is not None and chosen.selective_accuracy >= 0.99
    assert chosen.threshold == conf[2]  # 197 of 198 right; 197 of 199 would be < 99%
    assert chosen.accuracy_lower_bound < 0.99
    assert [c.images for c in chosen.per_class] == [100, 100]
    assert sum(c.passed for c in chosen.per_class) == chosen.passed == 198
    with pytest.raises(ValueError, match="target accuracy"):
        select_threshold(conf, right, 1.0)


def test_promise_check_flags_only_a_clear_breach() -> None:
    from sconeflow.selective import promise_check

    assert promise_check(100, 99, 0.99)[0] is False
    assert promise_check(100, 97, 0.99)[0] is False  # 3 errors in 100: P = 0.08 at 99%
    broken, observed, upper = promise_check(100, 90, 0.99)
    assert broken and observed == 0.9 and upper < 0.99


def test_threshold_flows_from_model_json_to_the_workflow_and_the_lambda(
    trained_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """evaluate --target-accuracy --save stores the threshold in model.json; `workflow run
    --threshold model` runs with it; the Lambda handler with THRESHOLD=model reads it."""
    import shutil

    from sconeflow.functions import filter_low_confidence
    from sconeflow.functions.errors import ThresholdConfidenceNotMet
    from sconeflow.serving.model import read_meta

    home = tmp_path / "home"
    shutil.copytree(trained_home.home, home)  # the artifact is ours to change
    base = ["--home", str(home)]
    with pytest.raises(SystemExit):  # no validation split staged, and test only when asked
        main([*base, "evaluate", "--model", "test-job", "--target-accuracy", "0.99"])
    assert "did not train on" in capsys.readouterr().err
    main([*base, "evaluate", "--model", "test-job", "--target-accuracy", "0.8", "--split",
          "test", "--save", "--out", str(tmp_path / "eval"), "--json"])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    entry = doc["selective"]
    assert entry["target_accuracy"] == 0.8 and entry["data"] == {"split": "test", "images": 200}
    assert 0 <= entry["coverage"] <= 1 and len(entry["per_class"]) == 2
    assert (tmp_path / "eval" / "risk_coverage.png").read_bytes()[:4] == b"\x89PNG"
    settings = Settings(home=home, store_uri=(home / "store").as_uri())
    store = open_store(settings)
    key = "models/test-job/output/model.tar.gz"
    artifact = tmp_path / "model.tar.gz"
    artifact.write_bytes(store.get(settings.bucket, key))
    from sconeflow.serving.model import extract_artifact

    meta = read_meta(extract_artifact(artifact, tmp_path / "unpacked")).raw
    assert meta["selective"]["threshold"] == entry["threshold"]
    threshold = entry["threshold"]

    # the workflow, against a real endpoint serving the model
    deploy(settings, "test-job", capture_config(0, "InputAndOutput", settings.bucket),
           name="thr-check", port=free_port(), workers=1)  # fmt: skip
    try:
        main([*base, "workflow", "run", "--endpoint", "thr-check", "--threshold", "model",
              "--count", "3", "--seed", "1", "--json"])  # fmt: skip
        runs = json.loads(capsys.readouterr().out)
    finally:
        delete_endpoint(settings, "thr-check")
    from sconeflow.executions.records import find_execution

    assert len(runs) == 3
    for run in runs:
        assert find_execution(settings, run["name"]).threshold == threshold

    # the Lambda handler, configured by environment only
    env = {"THRESHOLD": "model", "MODEL_DATA_URL": f"s3://{settings.bucket}/{key}",
           "SCONEFLOW_HOME": str(home)}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    filter_low_confidence._threshold.cache_clear()
    try:
        above = {"image_data": "", "inferences": [min(1.0, threshold + 1e-6), 0.0]}
        assert filter_low_confidence.lambda_handler(above, None)["inferences"]
        with pytest.raises(ThresholdConfidenceNotMet):
            filter_low_confidence.lambda_handler(
                {"image_data": "", "inferences": [threshold - 1e-3, 0.0]}, None)
        monkeypatch.setenv("MODEL_DATA_URL", f"s3://{settings.bucket}/models/none/model.tar.gz")
        filter_low_confidence._threshold.cache_clear()
        with pytest.raises(ConfigError, match="cannot read MODEL_DATA_URL"):
            filter_low_confidence.lambda_handler(above, None)
    finally:
        filter_low_confidence._threshold.cache_clear()

    # ... and into the AWS template, as the function's THRESHOLD
    main([*base, "aws", "synth", "--threshold", "model", "--out", str(tmp_path / "aws")])
    assert f"THRESHOLD {threshold:g} from the model's model.json" in capsys.readouterr().out
    template = json.loads((tmp_path / "aws" / "template.json").read_text())
    assert template["Parameters"]["Threshold"]["Default"] == f"{threshold:g}"


def test_threshold_model_without_a_stored_threshold_says_how_to_make_one(
    tmp_path: Path,
) -> None:
    from sconeflow.functions.config import FunctionConfig, resolve_threshold
    from sconeflow.serving.model import pack_artifact

    blob = pack_artifact(b"onnx", {"classes": ["a", "b"]})
    config = FunctionConfig.from_env({"THRESHOLD": "model", "SCONEFLOW_HOME": str(tmp_path),
                                      "MODEL_DATA_URL": "s3://b/m.tar.gz"})  # fmt: skip
    assert config.threshold_from_model
    with pytest.raises(ConfigError, match="--target-accuracy 0.99"):
        resolve_threshold(config, lambda bucket, key: blob)
    with pytest.raises(ConfigError, match="MODEL_DATA_URL"):
        FunctionConfig.from_env({"THRESHOLD": "model", "SCONEFLOW_HOME": str(tmp_path)})
    good = pack_artifact(b"onnx", {"selective": {"threshold": 0.97}})
    assert resolve_threshold(config, lambda bucket, key: good).threshold == 0.97
