"""Training jobs as resources: names, records, the CLI, and what a job refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sconeflow.cli import main
from sconeflow.config import Settings
from sconeflow.errors import ConfigError, DataError
from sconeflow.store import open_store
from sconeflow.training.job import describe_job, list_jobs, new_job_name, run_training_job


def test_job_names_look_like_the_sagemaker_sdks() -> None:
    assert re.fullmatch(
        r"image-classification-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}", new_job_name()
    )


def test_a_completed_job_is_recorded_with_its_artifact(trained_home: Settings) -> None:
    job = describe_job(trained_home, "test-job")
    assert job.status == "Completed" and job.ended_at
    assert job.hyperparameters["epochs"] == "1"  # SageMaker's string form
    assert job.hyperparameters["num_classes"] == "2"  # filled in from the staged classes
    assert job.artifact and job.artifact.endswith("models/test-job/output/model.tar.gz")
    store = open_store(trained_home)
    assert store.exists(trained_home.bucket, "models/test-job/output/model.tar.gz")
    assert 0 <= job.metrics["validation_accuracy"] <= 1
    assert len(job.metrics["train_sha256"]) == 64
    log = (trained_home.logs_dir / "test-job.log").read_text()
    assert re.search(r"^Epoch\[0\] Train-accuracy=\d\.\d{6}$", log, re.M)
    assert re.search(r"^Epoch\[0\] Time cost=\d+\.\d{3}$", log, re.M)
    assert re.search(r"^Epoch\[0\] Validation-accuracy=\d\.\d{6}$", log, re.M)


def test_train_list_and_describe_as_json(
    trained_home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--home", str(trained_home.home), "train", "list", "--json"])
    jobs = json.loads(capsys.readouterr().out)
    assert [j["TrainingJobName"] for j in jobs] == ["test-job"]
    main(["--home", str(trained_home.home), "train", "describe", "test-job", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["TrainingJobStatus"] == "Completed"
    assert doc["ModelArtifacts"]["S3ModelArtifacts"].endswith("model.tar.gz")


def test_invalid_hyperparameter_fails_before_any_job_is_recorded(
    staged_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--home", str(staged_home.home), "train", "-p", "epochs=0"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("HyperparameterError: hyperparameter 'epochs': got '0'")
    with pytest.raises(SystemExit):
        main(["--home", str(staged_home.home), "train", "-p", "learning_rat=0.1"])
    assert "unknown hyperparameter 'learning_rat'" in capsys.readouterr().err
    assert list_jobs(staged_home) == []


def test_hyperparameters_file_in_sagemaker_json_form(
    staged_home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "hp.json"
    f.write_text(json.dumps({"epochs": "30", "optimizer": "adamw"}))
    with pytest.raises(SystemExit):
        main(["--home", str(staged_home.home), "train", "--hyperparameters", str(f)])
    assert "hyperparameter 'optimizer': got 'adamw'" in capsys.readouterr().err
    f.write_text("[1, 2]")
    with pytest.raises(SystemExit):
        main(["--home", str(staged_home.home), "train", "--hyperparameters", str(f)])
    assert "expected a JSON object" in capsys.readouterr().err


def test_a_job_whose_data_is_bad_is_recorded_as_failed(settings: Settings) -> None:
    store = open_store(settings)
    store.put(settings.bucket, "data/train.lst", b"0\t0\tmissing.png\n")
    with pytest.raises(DataError, match="does not exist"):
        run_training_job(settings, store, {"epochs": "1"}, job_name="bad", log=lambda s: None)
    job = describe_job(settings, "bad")
    assert job.status == "Failed" and "does not exist" in (job.failure_reason or "")


def test_describe_unknown_job(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="not found"):
        describe_job(settings, "nope")
