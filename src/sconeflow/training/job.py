"""Training jobs as resources, like SageMaker's CreateTrainingJob / DescribeTrainingJob.

A job reads the staged channels from the store, trains (sconeflow.training.train), writes
`models/<job>/output/model.tar.gz`, and keeps its record (status, hyperparameters as
SageMaker strings, metrics, artifact) in the workspace database. Its log, with the
built-in algorithm's `Epoch[N] ...` lines, goes to `<home>/logs/<job>.log` as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sconeflow import db
from sconeflow.channels import channel_keys, read_channel
from sconeflow.config import Settings
from sconeflow.errors import ConfigError, DataError
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.staging import MANIFEST_KEY
from sconeflow.store import Store, validate_key
from sconeflow.training.hyperparameters import Hyperparameters, parse_hyperparameters

JOB_PREFIX = "image-classification"
LogFn = Callable[[str], None]


@dataclass(frozen=True)
class JobRecord:
    name: str
    status: str  # InProgress | Completed | Failed
    created_at: str
    ended_at: str | None
    hyperparameters: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    artifact: str | None = None
    failure_reason: str | None = None

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob's main fields."""
        return {
            "TrainingJobName": self.name,
            "TrainingJobStatus": self.status,
            "CreationTime": self.created_at,
            "TrainingEndTime": self.ended_at,
            "HyperParameters": self.hyperparameters,
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
    """
    from sconeflow.training.artifact import write_artifact
    from sconeflow.training.train import train

    # errors before any record is made
    hp, names = resolve_hyperparameters(store, settings.bucket, hyperparameters)
    name = validate_job_name(job_name) if job_name is not None else new_job_name()
    if validation_channel is not None:
        validate_key(channel_keys(validation_channel)[1])
    now = _now()
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_file = (settings.logs_dir / f"{name}.log").open("a", encoding="utf-8")

    def both(line: str) -> None:
        log_file.write(line + "\n")
        log_file.flush()
        log(line)

    with closing(db.connect(settings.db_path)) as conn:
        conn.execute(
            "INSERT INTO training_jobs (name, status, created_at, hyperparameters) "
            "VALUES (?, 'InProgress', ?, ?)",
            (name, now, json.dumps(hp.to_strings())),
        )
    try:
        both(f"Training job {name}: {hp.num_classes} classes ({', '.join(names)})")
        train_ch = read_channel(store, settings.bucket, "train", num_classes=hp.num_classes,
                                image_shape=hp.image_shape, progress=progress)  # fmt: skip
        val_ch = None
        if validation_channel is not None:
            if validation_channel == "test":
                both("Note: validating and calibrating on the test split, as asked; its "
                     "accuracy is then no longer an unbiased estimate.")  # fmt: skip
            val_ch = read_channel(store, settings.bucket, validation_channel,
                                  num_classes=hp.num_classes, image_shape=hp.image_shape,
                                  progress=progress)  # fmt: skip
        result = train(
            train_ch.images,
            train_ch.labels,
            hp,
            val_images=None if val_ch is None else val_ch.images,
            val_labels=None if val_ch is None else val_ch.labels,
            log=both,
            progress=progress,
        )
        checksums = {"train": train_ch.sha256}
        if val_ch is not None:
            checksums[validation_channel or "validation"] = val_ch.sha256
        data = write_artifact(result, names, data_checksums=checksums)
        key = artifact_key(name)
        store.put(settings.bucket, key, data)
        metrics = {**_plain(result.metrics), "train_sha256": train_ch.sha256}
        if val_ch is not None:
            metrics["validation_channel"] = validation_channel
        with closing(db.connect(settings.db_path)) as conn:
            conn.execute(
                "UPDATE training_jobs SET status = 'Completed', ended_at = ?, metrics = ?, "
                "artifact = ? WHERE name = ?",
                (_now(), json.dumps(metrics), store.uri(settings.bucket, key), name),
            )
        both(f"Model artifact: {store.uri(settings.bucket, key)}")
    except BaseException as err:
        with closing(db.connect(settings.db_path)) as conn:
            conn.execute(
                "UPDATE training_jobs SET status = 'Failed', ended_at = ?, failure_reason = ? "
                "WHERE name = ?",
                (_now(), f"{type(err).__name__}: {err}", name),
            )
        raise
    finally:
        log_file.close()
    return describe_job(settings, name)


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


def list_jobs(settings: Settings) -> list[JobRecord]:
    """Every recorded job, newest first."""
    with closing(db.connect(settings.db_path)) as conn:
        rows = conn.execute(
            "SELECT * FROM training_jobs ORDER BY created_at DESC, name DESC"
        ).fetchall()
    return [_record(r) for r in rows]


def describe_job(settings: Settings, name: str) -> JobRecord:
    with closing(db.connect(settings.db_path)) as conn:
        row = conn.execute("SELECT * FROM training_jobs WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise ConfigError(
            f"training job {name!r} not found; `sconeflow train list` shows the recorded jobs"
        )
    return _record(row)


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
    )


def _staged_classes(store: Store, bucket: str) -> list[str]:
    try:
        return [str(c) for c in json.loads(store.get(bucket, MANIFEST_KEY))["classes"]]
    except Exception:
        return []


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as strict JSON (NaN -> None)."""
    return json.loads(json.dumps(metrics, default=str).replace("NaN", "null"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
