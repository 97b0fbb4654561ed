"""`sconeflow train` (+ `list`, `describe`, `stop`, `logs`): SageMaker-style training jobs.

Training speaks little: one progress bar (epoch, accuracy, time left) and a few lines; the
job's whole log, the built-in algorithm's `Epoch[N] ...` lines included, is in its log file,
shown by `sconeflow train logs JOB [--follow]`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from sconeflow.cli.common import (
    Context,
    console,
    err_console,
    json_option,
    pass_context,
    print_json,
    print_table,
)
from sconeflow.errors import ConfigError
from sconeflow.progress import RichProgress
from sconeflow.store import open_store
from sconeflow.training.hyperparameters import NAMES


def read_hyperparameters(path: Path | None, overrides: tuple[str, ...]) -> dict[str, str]:
    """SageMaker's JSON form ({"epochs": "30", ...}) from a file, then NAME=VALUE overrides."""
    values: dict[str, str] = {}
    if path is not None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(f"--hyperparameters {path}: cannot read JSON ({err})") from err
        if not isinstance(doc, dict):
            raise ConfigError(
                f"--hyperparameters {path}: expected a JSON object of names to string values, "
                'e.g. {"epochs": "30", "learning_rate": "0.05"}'
            )
        values.update({str(k): str(v) for k, v in doc.items()})
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"-p {item!r}: expected NAME=VALUE, e.g. -p epochs=20")
        values[name.strip()] = value.strip()
    return values


@click.group(
    invoke_without_command=True,
    epilog="Hyperparameters (-p NAME=VALUE; ranges as SageMaker documents them): "
    + ", ".join(NAMES),
)
@click.option(
    "--hyperparameters",
    "hp_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file of hyperparameters in SageMaker's form (string values).",
)
@click.option(
    "-p",
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="One hyperparameter, e.g. -p epochs=20 (repeatable; wins over the file).",
)
@click.option(
    "--validation-channel",
    help="Validate and calibrate on this staged split instead of a held-out part of train "
    "(e.g. 'test', as the reference did; then test accuracy is no longer unbiased).",
)
@click.option("--job-name", help="Default: image-classification-YYYY-MM-DD-HH-MM-SS-mmm.")
@json_option
@click.pass_context
def train(
    click_ctx: click.Context,
    hp_file: Path | None,
    overrides: tuple[str, ...],
    validation_channel: str | None,
    job_name: str | None,
    as_json: bool,
) -> None:
    """Train the vehicle classifier on the staged `train` channel (a training job).

    Accepts the SageMaker built-in image-classification hyperparameters (epochs,
    learning_rate, mini_batch_size, optimizer, augmentation_type, ...); our defaults are
    tuned for this task. The job ends within max_runtime_in_seconds (default
    {DEFAULT_MAX_RUNTIME} s, SageMaker's MaxRuntimeInSeconds): without -p epochs=N the epochs
    are planned to fit it on this machine. Writes models/<job>/output/model.tar.gz and
    records the job. Ctrl-C stops the job (Stopped, log kept).
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from sconeflow.training.job import new_job_name, run_training_job

    ctx: Context = click_ctx.obj
    settings = ctx.settings
    values = read_hyperparameters(hp_file, overrides)
    name = job_name or new_job_name()
    try:
        with RichProgress(err_console) as progress:
            job = run_training_job(
                settings,
                open_store(settings),
                values,
                validation_channel=validation_channel,
                job_name=name,
                log=_say,
                progress=progress,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"Stopped {name} (Ctrl-C); its log: sconeflow train logs {name}", highlight=False
        )
        raise SystemExit(130) from None
    if as_json:
        print_json(job.describe())
        return
    m = job.metrics
    console.print(
        f"[green]Completed[/] {job.name} in {m.get('train_seconds', 0):.0f} s "
        f"({m.get('epochs_run', '?')} epochs, final fit on {m.get('train_images', '?')} "
        f"images): held-out accuracy {m.get('validation_accuracy', float('nan')):.3f}, ECE "
        f"{m.get('validation_ece', float('nan')):.3f} (temperature "
        f"{m.get('temperature', 1):.2f}); artifact {job.artifact}",
        highlight=False,
    )
    console.print(f"Next: sconeflow evaluate --model {job.name}", highlight=False)


def _say(line: str) -> None:
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)


@train.command("list")
@json_option
@pass_context
def list_cmd(ctx: Context, as_json: bool) -> None:
    """List training jobs, newest first."""
    from sconeflow.training.job import list_jobs

    jobs = list_jobs(ctx.settings)
    if as_json:
        print_json([j.describe() for j in jobs])
        return
    print_table(
        "Training jobs",
        ["name", "status", "created", "held-out acc", "train s"],
        [
            (
                j.name,
                j.status,
                j.created_at,
                _fmt(j.metrics.get("validation_accuracy")),
                _fmt(j.metrics.get("train_seconds"), ".0f"),
            )
            for j in jobs
        ],
    )


@train.command()
@click.argument("name")
@click.option("--wait", "wait_seconds", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the job to reach Stopped.")  # fmt: skip
@json_option
@pass_context
def stop(ctx: Context, name: str, wait_seconds: float, as_json: bool) -> None:
    """Stop a running training job (StopTrainingJob): Stopping, then Stopped, log kept."""
    from sconeflow.training.job import stop_job

    if not as_json:
        err_console.print(f"Stopping {name} ...", highlight=False)
    job = stop_job(ctx.settings, name, wait_seconds=wait_seconds)
    if as_json:
        print_json(job.describe())
    elif job.status == "Stopping":
        console.print(f"{name} is still Stopping after {wait_seconds:g} s; it stops at its "
                      f"next training step (`sconeflow train describe {name}`)")  # fmt: skip
    else:
        console.print(f"{name}: {job.status} ({job.secondary_status}); its log: "
                      f"sconeflow train logs {name}")  # fmt: skip


@train.command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
@pass_context
def logs(ctx: Context, name: str, follow: bool) -> None:
    """Print a training job's log (the built-in algorithm's lines and ours)."""
    from sconeflow.training.job import job_log

    for line in job_log(ctx.settings, name, follow=follow):
        click.echo(line)


@train.command()
@click.argument("name")
@json_option
@pass_context
def describe(ctx: Context, name: str, as_json: bool) -> None:
    """Show one training job (DescribeTrainingJob's fields)."""
    from sconeflow.training.job import describe_job

    job = describe_job(ctx.settings, name)
    doc = job.describe()
    if as_json:
        print_json(doc)
        return
    print_table(
        f"Training job {job.name}",
        ["field", "value"],
        [
            ("status", job.status),
            ("secondary status", job.secondary_status),
            ("status message", job.status_message),
            ("created", job.created_at),
            ("ended", job.ended_at),
            ("artifact", job.artifact),
            ("failure", job.failure_reason),
            *[(f"metric {m['MetricName']}", _fmt(m["Value"])) for m in doc["FinalMetricDataList"]],
            *[(f"hp {k}", v) for k, v in sorted(job.hyperparameters.items())],
        ],
    )


def _fmt(value: object, spec: str = ".4f") -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, spec)
    return "" if value is None else str(value)
