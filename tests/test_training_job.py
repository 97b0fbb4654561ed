"""Training jobs as resources: names, records, the CLI, what a job refuses, and how it
stops: Ctrl-C, `train stop` and SIGKILL on real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from sconeflow import db
from sconeflow.cli import main
from sconeflow.config import Settings
from sconeflow.errors import ConfigError, DataError
from sconeflow.processes import process_start as process_start_time
from sconeflow.store import open_store
from sconeflow.training.hyperparameters import DEFAULT_MAX_RUNTIME
from sconeflow.training.job import (
    describe_job,
    job_log,
    list_jobs,
    new_job_name,
    run_training_job,
    stop_job,
)


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
    assert doc["TrainingJobStatus"] == "Completed" and doc["SecondaryStatus"] == "Completed"
    assert doc["StoppingCondition"] == {"MaxRuntimeInSeconds": DEFAULT_MAX_RUNTIME}
    metrics = {m["MetricName"] for m in doc["FinalMetricDataList"]}
    assert {"max_runtime_in_seconds", "epochs_planned", "seconds_per_epoch",
            "flops_per_epoch", "train_flops"} <= metrics  # fmt: skip
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


# ---------------------------------------------------------------- stop, kill, logs: real processes

# A long job on tiny data: one optimizer step per epoch, so it is interrupted mid-training.
LONG_HP = ["-p", "epochs=1000", "-p", "num_threads=1", "-p", "max_runtime_in_seconds=3600"]


@pytest.fixture
def tiny_home(tmp_path: Path) -> Settings:
    """A workspace with 64 synthetic bicycle/motorcycle training images staged."""
    from sconeflow.config import load_settings
    from sconeflow.staging import stage_cifar
    from sconeflow.synthetic import meta_dict, split_dict, write_tarball

    tarball = write_tarball(
        tmp_path / "tiny.tar.gz",
        {
            "cifar-100-python/meta": meta_dict(),
            "cifar-100-python/train": split_dict(64, labels=[8, 48] * 32, seed=1),
            "cifar-100-python/test": split_dict(8, labels=[8, 48] * 4, seed=2),
        },
    )
    s = load_settings(env={}, home=tmp_path / "home")
    stage_cifar(open_store(s), s.bucket, tarball)
    return s


def _start(settings: Settings, job: str, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "sconeflow", "--home", str(settings.home), "train",
           "--job-name", job, *args]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(settings: Settings, job: str, pattern: str, proc: subprocess.Popen[str]) -> None:
    path = settings.logs_dir / f"{job}.log"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if path.exists() and re.search(pattern, path.read_text(), re.M):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no {pattern!r} in {path}")


@pytest.mark.slow
def test_ctrl_c_ends_a_job_stopping_then_stopped_with_its_log(tiny_home: Settings) -> None:
    proc = _start(tiny_home, "ctrl-c", *LONG_HP)
    _wait_for_line(tiny_home, "ctrl-c", r"^Epoch\[2\] Time cost=", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Stopped ctrl-c (Ctrl-C)" in err and "sconeflow train logs ctrl-c" in err
    job = describe_job(tiny_home, "ctrl-c")
    assert (job.status, job.secondary_status) == ("Stopped", "Stopped")
    assert job.artifact is None and job.ended_at
    log = (tiny_home.logs_dir / "ctrl-c.log").read_text()
    assert "Epoch[0] Train-accuracy=" in log  # the partial log is kept ...
    assert log.index("Stopping: interrupted (Ctrl-C)") < log.index("Stopped (Stopped)")


@pytest.mark.slow
def test_train_stop_from_another_process(tiny_home: Settings) -> None:
    proc = _start(tiny_home, "stop-me", *LONG_HP)
    _wait_for_line(tiny_home, "stop-me", r"^Epoch\[1\] ", proc)
    assert describe_job(tiny_home, "stop-me").status == "InProgress"
    job = stop_job(tiny_home, "stop-me", wait_seconds=60)
    assert (job.status, job.secondary_status) == ("Stopped", "Stopped")
    assert "sconeflow train stop" in (job.status_message or "")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err.splitlines()[-1].startswith("TrainingStopped: ")
    log = (tiny_home.logs_dir / "stop-me.log").read_text()
    assert "Epoch[1] Train-accuracy=" in log and "Stopped (Stopped)" in log
    with pytest.raises(ConfigError, match="only an InProgress job can be stopped"):
        stop_job(tiny_home, "stop-me")


@pytest.mark.slow
def test_a_killed_job_is_marked_failed_when_the_jobs_are_next_read(tiny_home: Settings) -> None:
    proc = _start(tiny_home, "killed", *LONG_HP)
    _wait_for_line(tiny_home, "killed", r"^Epoch\[1\] ", proc)
    proc.kill()  # SIGKILL: no handler runs, nothing is recorded by the job itself
    proc.communicate(timeout=60)
    (job,) = list_jobs(tiny_home)
    assert job.status == "Failed" and f"pid {proc.pid}" in (job.failure_reason or "")
    assert "killed.log" in (job.failure_reason or "")
    log = (tiny_home.logs_dir / "killed.log").read_text()
    assert "Epoch[1] Train-accuracy=" in log and "Marked Failed" in log


@pytest.mark.slow
def test_logs_follow_a_running_job_and_the_terminal_stays_quiet(
    tiny_home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = _start(tiny_home, "follow", "-p", "epochs=6", "-p", "num_threads=1")
    _wait_for_line(tiny_home, "follow", r"^Plan: ", proc)
    lines = list(job_log(tiny_home, "follow", follow=True))  # returns when the job ends
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert lines[-1].startswith("Model artifact: ") and "Epoch[5] Time cost=" in "\n".join(lines)
    assert sum(line.startswith("Epoch[") for line in lines) >= 2 * 6 * 2  # both fits, logged
    assert "Epoch[" not in err and len(err.splitlines()) <= 4  # a few lines, no flood
    main(["--home", str(tiny_home.home), "train", "logs", "follow"])
    assert capsys.readouterr().out.splitlines() == lines


def test_a_reused_pid_is_not_taken_for_the_owner(settings: Settings) -> None:
    me = os.getpid()
    start = process_start_time(me)
    assert start is not None
    with closing(db.connect(settings.db_path)) as conn:
        for name, started in (("mine", start), ("reused", start + 1)):
            conn.execute(
                "INSERT INTO training_jobs (name, status, created_at, hyperparameters, "
                "owner_pid, owner_start) VALUES (?, 'InProgress', 'now', '{}', ?, ?)",
                (name, me, started),
            )
    assert describe_job(settings, "mine").status == "InProgress"  # alive: this process
    reused = describe_job(settings, "reused")  # same pid, another start time: not its owner
    assert reused.status == "Failed" and f"pid {me}" in (reused.failure_reason or "")


def test_an_older_workspace_gains_the_new_columns(tmp_path: Path) -> None:
    from sconeflow.config import load_settings

    s = load_settings(env={}, home=tmp_path / "old")
    s.home.mkdir()
    raw = sqlite3.connect(s.db_path)
    raw.execute(
        "CREATE TABLE training_jobs (name TEXT PRIMARY KEY, status TEXT NOT NULL, created_at "
        "TEXT NOT NULL, ended_at TEXT, hyperparameters TEXT NOT NULL, metrics TEXT NOT NULL "
        "DEFAULT '{}', artifact TEXT, failure_reason TEXT)"
    )
    raw.execute("INSERT INTO training_jobs (name, status, created_at, hyperparameters) "
                "VALUES ('old', 'InProgress', 'then', '{}')")  # fmt: skip
    raw.commit()
    raw.close()
    (job,) = list_jobs(s)  # an InProgress job nobody owns any more: Failed, with why
    assert job.status == "Failed" and "older sconeflow" in (job.failure_reason or "")
    assert job.describe()["StoppingCondition"] == {"MaxRuntimeInSeconds": 86_400}
