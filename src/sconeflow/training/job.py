"""Training jobs as resources, like SageMaker's CreateTrainingJob / DescribeTrainingJob /
StopTrainingJob.

A job reads the staged channels from the store, trains (sconeflow.training.train), writes
`models/<job>/output/model.tar.gz`, and keeps its record (status, hyperparameters as
SageMaker strings, metrics, artifact) in the workspace database. Every line of its log, the
built-in algorithm's `Epoch[N] ...` lines included, goes to `<home>/logs/<job>.log`
(`sconeflow train logs JOB [--follow]`); the caller hears only a few lines.

Statuses as SageMaker's: InProgress, then Completed or Failed; a stop (`stop_job` from any
process, Ctrl-C or SIGTERM in the owner) goes Stopping, then Stopped with the partial log
kept; a job that runs past `max_runtime_in_seconds` ends Stopped / MaxRuntimeExceeded. The
owner process is recorded with its pid and its start time (field 22 of /proc/<pid>/stat), so
a job whose process died (SIGKILL, a crash, a reboot) is marked Failed with the reason the
next time the jobs are read, and a reused pid is never taken for the owner.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sconeflow import db
from sconeflow.channels import channel_keys, read_channel
from sconeflow.config import Settings
from sconeflow.errors import ConfigError, DataError
from sconeflow.processes import process_start
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.staging import MANIFEST_KEY
from sconeflow.store import Store, validate_key
from sconeflow.training.budget import TrainingStopped
from sconeflow.training.hyperparameters import Hyperparameters, parse_hyperparameters
from sconeflow.training.owner import (
    StopRequests,
    log_path,
    reconcile_jobs,
    sigterm_stops,
    utc_now,
)

JOB_PREFIX = "image-classification"
ACTIVE = ("InProgress", "Stopping")
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class JobRecord:
    name: str
    status: str  # InProgress | Completed | Failed | Stopping | Stopped
    created_at: str
    ended_at: str | None
    hyperparameters: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    artifact: str | None = None
    failure_reason: str | None = None
    secondary_status: str | None = None
    status_message: str | None = None
    owner_pid: int | None = None

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob's main fields (SecondaryStatusTransitions: the latest only)."""
        budget = self.hyperparameters.get("max_runtime_in_seconds")
        return {
            "TrainingJobName": self.name,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary_status or self.status,
            "SecondaryStatusTransitions": [
                {
                    "Status": self.secondary_status or self.status,
                    "StatusMessage": self.status_message or "",
                }
            ],
            "CreationTime": self.created_at,
            "TrainingEndTime": self.ended_at,
            "HyperParameters": self.hyperparameters,
            "StoppingCondition": {"MaxRuntimeInSeconds": int(budget) if budget else 86_400},
            "FinalMetricDataList": [
                {"MetricName": k, "Value": v}
                for k, v in self.metrics.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            ],
            "ModelArtifacts": {"S3ModelArtifacts": self.artifact},
            "FailureReason": self.failure_reason,
        }


def new_job_name(now: datetime | None = None) -> str:
    """`image-classification-YYYY-MM-DD-HH-MM-SS-mmm`, as the SageMaker SDK names jobs."""
    now = now or datetime.now(UTC)
    return f"{JOB_PREFIX}-{now:%Y-%m-%d-%H-%M-%S}-{now.microsecond // 1000:03d}"


def validate_job_name(name: str) -> str:
    """SageMaker's TrainingJobName rule: 1-63 letters, digits and inner hyphens. The name
    becomes a store key segment and a log file name, so nothing else may pass."""
    if not _JOB_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"--job-name {name[:80]!r} is not a training job name; expected 1-63 letters, "
            "digits and hyphens, starting and ending with a letter or digit (SageMaker's "
            "rule), e.g. 'scones-resnet-1'"
        )
    return name


_JOB_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def artifact_key(job: str) -> str:
    return f"models/{job}/output/model.tar.gz"


def resolve_hyperparameters(
    store: Store, bucket: str, hyperparameters: Mapping[str, object]
) -> tuple[Hyperparameters, list[str]]:
    """Parse SageMaker-style hyperparameters, taking `num_classes` from the staged classes
    when it is not given; returns them with the class names in label order (generic names
    when nothing was staged with a manifest)."""
    raw = {str(k): v for k, v in hyperparameters.items()}
    staged = _staged_classes(store, bucket)
    if "num_classes" not in raw and staged:
        raw["num_classes"] = str(len(staged))
    hp = parse_hyperparameters(raw)
    if not staged:
        return hp, [f"class_{i}" for i in range(hp.num_classes)]
    if len(staged) != hp.num_classes:
        raise ConfigError(
            f"num_classes: {hp.num_classes} does not match the {len(staged)} staged classes "
            f"({', '.join(staged)}); leave num_classes out or stage other --classes"
        )
    return hp, staged


def run_training_job(
    settings: Settings,
    store: Store,
    hyperparameters: Mapping[str, object],
    *,
    validation_channel: str | None = None,
    job_name: str | None = None,
    log: LogFn = print,
    progress: ProgressFn = no_progress,
) -> JobRecord:
    """Train on the `train` channel and record the job; returns the finished record.

    Validation and calibration data are held out of `train` unless `validation_channel`
    names another staged split. The test split is only ever used when asked for by name.
    `log` hears the few lines a watching user needs (where the log is, the plan, the
    artifact); `progress` gets one bar, "train". A stop ends the job Stopped and raises
    TrainingStopped; Ctrl-C (KeyboardInterrupt) ends it Stopped and is raised again.
    """
    from sconeflow.training.artifact import write_artifact
    from sconeflow.training.train import train

    started = time.perf_counter()  # the budget counts from here, data reading included
    # errors before any record is made
    hp, names = resolve_hyperparameters(store, settings.bucket, hyperparameters)
    name = validate_job_name(job_name) if job_name is not None else new_job_name()
    if validation_channel is not None:
        validate_key(channel_keys(validation_channel)[1])
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    try:
        with closing(db.connect(settings.db_path)) as conn:
            conn.execute(
                "INSERT INTO training_jobs (name, status, created_at, hyperparameters, "
                "secondary_status, owner_pid, owner_start) VALUES (?, 'InProgress', ?, ?, "
                "'Starting', ?, ?)",
                (name, utc_now(), json.dumps(hp.to_strings()), pid, process_start(pid)),
            )
    except sqlite3.IntegrityError as err:
        raise ConfigError(
            f"training job {name!r} already exists; pass another --job-name, or leave it out "
            "for a new timestamped name"
        ) from err
    log_file = log_path(settings, name).open("a", encoding="utf-8")

    def write(line: str) -> None:
        log_file.write(line + "\n")
        log_file.flush()

    def tell(line: str) -> None:
        write(line)
        log(line)

    def reading(step: str, done: float, total: float | None, detail: str = "") -> None:
        progress("train", done, total, detail=step)

    requests = StopRequests(settings, name)
    try:
        with sigterm_stops(requests):
            tell(f"Training job {name}: {hp.num_classes} classes ({', '.join(names)}); log: "
                 f"{log_path(settings, name)} (sconeflow train logs {name} --follow)")  # fmt: skip
            _set(settings, name, secondary_status="Downloading")
            train_ch = read_channel(store, settings.bucket, "train", num_classes=hp.num_classes,
                                    image_shape=hp.image_shape, progress=reading)  # fmt: skip
            val_ch = None
            if validation_channel is not None:
                if validation_channel == "test":
                    tell("Note: validating and calibrating on the test split, as asked; its "
                         "accuracy is then no longer an unbiased estimate.")  # fmt: skip
                val_ch = read_channel(store, settings.bucket, validation_channel,
                                      num_classes=hp.num_classes, image_shape=hp.image_shape,
                                      progress=reading)  # fmt: skip
            _set(settings, name, secondary_status="Training")
            result = train(
                train_ch.images,
                train_ch.labels,
                hp,
                val_images=None if val_ch is None else val_ch.images,
                val_labels=None if val_ch is None else val_ch.labels,
                log=write,
                notice=log,
                progress=progress,
                should_stop=requests,
                started=started,
            )
            _set(settings, name, secondary_status="Uploading")
            checksums = {"train": train_ch.sha256}
            if val_ch is not None:
                checksums[validation_channel or "validation"] = val_ch.sha256
            data = write_artifact(result, names, data_checksums=checksums)
            key = artifact_key(name)
            store.put(settings.bucket, key, data)
            metrics = {**_plain(result.metrics), "train_sha256": train_ch.sha256}
            metrics["train_seconds"] = round(time.perf_counter() - started, 3)
            if val_ch is not None:
                metrics["validation_channel"] = validation_channel
            _set(settings, name, status="Completed", secondary_status="Completed",
                 ended_at=utc_now(), metrics=json.dumps(metrics),
                 artifact=store.uri(settings.bucket, key))  # fmt: skip
            tell(f"Model artifact: {store.uri(settings.bucket, key)}")
    except TrainingStopped as err:
        _stopped(settings, name, err.secondary_status, str(err), write)
        raise TrainingStopped(
            f"training job {name} stopped: {err}; its log: sconeflow train logs {name}",
            err.secondary_status,
        ) from err
    except KeyboardInterrupt:
        _stopped(settings, name, "Stopped", "interrupted (Ctrl-C)", write)
        raise
    except BaseException as err:
        reason = f"{type(err).__name__}: {err}"
        _set(settings, name, status="Failed", secondary_status="Failed", ended_at=utc_now(),
             failure_reason=reason)  # fmt: skip
        write(f"Failed: {reason}")
        raise
    finally:
        requests.close()
        log_file.close()
    return describe_job(settings, name)


def stop_job(settings: Settings, name: str, *, wait_seconds: float = 120.0) -> JobRecord:
    """StopTrainingJob: mark the job Stopping; its owner sees it between two optimizer steps
    and ends it Stopped. Waits up to `wait_seconds` (SageMaker allows 120) and returns the
    record as it then is (still Stopping if the owner has not got there yet)."""
    job = describe_job(settings, name)
    if job.status not in ACTIVE:
        raise ConfigError(
            f"training job {name!r} is {job.status}; only an InProgress job can be stopped "
            "(`sconeflow train list` shows each job's status)"
        )
    with closing(db.connect(settings.db_path)) as conn:
        conn.execute(
            "UPDATE training_jobs SET status = 'Stopping', secondary_status = 'Stopping', "
            "status_message = ? WHERE name = ? AND status = 'InProgress'",
            ("stopped by request (sconeflow train stop)", name),
        )
    deadline = time.monotonic() + wait_seconds
    while True:
        job = describe_job(settings, name)  # reconciles: a dead owner's job ends here
        if job.status != "Stopping" or time.monotonic() >= deadline:
            return job
        time.sleep(0.1)


def job_log(
    settings: Settings, name: str, *, follow: bool = False, poll_seconds: float = 0.3
) -> Iterator[str]:
    """The job's log lines; with `follow`, keeps yielding new lines until the job ends."""
    describe_job(settings, name)  # an unknown job is an error, not an empty log
    path = log_path(settings, name)
    while not path.exists():
        if not follow or describe_job(settings, name).status not in ACTIVE:
            raise ConfigError(f"training job {name!r} has no log at {path}")
        time.sleep(poll_seconds)
    with path.open(encoding="utf-8", errors="replace") as f:
        partial = ""
        while True:
            chunk = f.readline()
            if chunk:
                partial += chunk
                if partial.endswith("\n"):
                    yield partial.rstrip("\n")
                    partial = ""
                continue
            if not follow:
                break
            if describe_job(settings, name).status not in ACTIVE:
                follow = False  # one more pass drains what was written before it ended
                continue
            time.sleep(poll_seconds)
        if partial:
            yield partial


def _stopped(settings: Settings, name: str, secondary: str, why: str, write: LogFn) -> None:
    """Stopping, then Stopped: the two records SageMaker shows, and the reason in the log."""
    _set(settings, name, status="Stopping", secondary_status="Stopping", status_message=why)
    write(f"Stopping: {why}")
    _set(settings, name, status="Stopped", secondary_status=secondary, ended_at=utc_now())
    write(f"Stopped ({secondary})")


def _set(settings: Settings, name: str, **fields: Any) -> None:
    cols = ", ".join(f"{k} = ?" for k in fields)
    with closing(db.connect(settings.db_path)) as conn:
        conn.execute(f"UPDATE training_jobs SET {cols} WHERE name = ?", (*fields.values(), name))


def find_current_job(
    settings: Settings, store: Store, hyperparameters: Mapping[str, object]
) -> str | None:
    """The newest Completed job trained with these hyperparameters on the staged data as
    it is now (same `train` channel sha256), or None."""
    hp, _ = resolve_hyperparameters(store, settings.bucket, hyperparameters)
    wanted = hp.to_strings()
    candidates = [
        j for j in list_jobs(settings) if j.status == "Completed" and j.hyperparameters == wanted
    ]
    if not candidates:
        return None
    try:
        sha = read_channel(store, settings.bucket, "train",
                           num_classes=int(wanted["num_classes"])).sha256  # fmt: skip
    except DataError:
        return None
    for job in candidates:  # newest first
        if job.metrics.get("train_sha256") == sha and store.exists(
            settings.bucket, artifact_key(job.name)
        ):
            return job.name
    return None


def list_jobs(settings: Settings, *, conn: sqlite3.Connection | None = None) -> list[JobRecord]:
    """Every recorded job, newest first (jobs whose process died marked first), read
    through `conn` when given (the console's per-thread connection), else through a
    connection opened for this call."""
    with db.using(settings.db_path, conn) as c:
        reconcile_jobs(settings, conn=c)
        rows = c.execute(
            "SELECT * FROM training_jobs ORDER BY created_at DESC, name DESC"
        ).fetchall()
    return [_record(r) for r in rows]


def describe_job(
    settings: Settings, name: str, *, conn: sqlite3.Connection | None = None
) -> JobRecord:
    """One job (ConfigError when there is none), read as `list_jobs` reads."""
    with db.using(settings.db_path, conn) as c:
        reconcile_jobs(settings, conn=c)
        row = c.execute("SELECT * FROM training_jobs WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ConfigError(
            f"training job {name!r} not found; `sconeflow train list` shows the recorded jobs"
        )
    return _record(row)


def delete_jobs(settings: Settings) -> int:
    """Forget every training job (`sconeflow cleanup --models`, which deletes the models
    themselves from the store); how many records there were."""
    with closing(db.connect(settings.db_path)) as conn:
        return int(conn.execute("DELETE FROM training_jobs").rowcount)


def _record(row: Any) -> JobRecord:
    return JobRecord(
        name=row["name"],
        status=row["status"],
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        hyperparameters=json.loads(row["hyperparameters"]),
        metrics=json.loads(row["metrics"] or "{}"),
        artifact=row["artifact"],
        failure_reason=row["failure_reason"],
        secondary_status=row["secondary_status"],
        status_message=row["status_message"],
        owner_pid=row["owner_pid"],
    )


def _staged_classes(store: Store, bucket: str) -> list[str]:
    try:
        return [str(c) for c in json.loads(store.get(bucket, MANIFEST_KEY))["classes"]]
    except Exception:
        return []


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as strict JSON (NaN -> None)."""
    return json.loads(json.dumps(metrics, default=str).replace("NaN", "null"))
