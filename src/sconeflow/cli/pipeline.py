"""`sconeflow pipeline` (the main job, end to end) and `sconeflow cleanup`."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import click

from sconeflow.cli.common import (
    Context,
    console,
    err_console,
    json_option,
    pass_context,
    print_json,
)
from sconeflow.cli.stage import source_option
from sconeflow.cli.train import read_hyperparameters
from sconeflow.pipeline import ENDPOINT_NAME, PipelineOptions, format_summary, run_pipeline
from sconeflow.progress import RichProgress


@click.command()
@source_option
@click.option(
    "--classes", default=",".join(PipelineOptions.classes), show_default=True,
    help="CIFAR-100 fine label names to stage and classify.",
)  # fmt: skip
@click.option("--hyperparameters", "hp_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Training hyperparameters, SageMaker JSON form.")  # fmt: skip
@click.option("-p", "--set", "overrides", multiple=True, metavar="NAME=VALUE",
              help="One training hyperparameter, e.g. -p epochs=5.")  # fmt: skip
@click.option("--endpoint", default=ENDPOINT_NAME, show_default=True,
              help="Endpoint name; if someone else's endpoint has it, the pipeline leaves "
              "that one alone and deploys <name>-pipeline.")  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535),
              help="Endpoint port (default: 8080 if free, else any).")  # fmt: skip
@click.option("--threshold", type=float, default=PipelineOptions.threshold, show_default=True,
              help="Confidence below which the workflow fails an image.")  # fmt: skip
@click.option("--keep-endpoint", is_flag=True, help="Leave the endpoint running at the end.")
@click.option("--console", "with_console", is_flag=True,
              help="Then serve the console (as `sconeflow console`) to look at what ran, "
              "until Ctrl-C; keeps the endpoint running.")  # fmt: skip
@click.option("--console-port", type=click.IntRange(1, 65535),
              help="The console's port (default: 4566, or the next free one).")  # fmt: skip
@json_option
@pass_context
def pipeline(
    ctx: Context,
    source: Path | None,
    classes: str,
    hp_file: Path | None,
    overrides: tuple[str, ...],
    endpoint: str,
    port: int | None,
    threshold: float,
    keep_endpoint: bool,
    with_console: bool,
    console_port: int | None,
    as_json: bool,
) -> None:
    """Run the whole workflow: stage -> train -> evaluate -> deploy -> workflow over the
    test images -> monitor (baseline, run, report) -> summary.

    Steps whose output is already current are skipped, so a second run is quick.
    """
    options = PipelineOptions(
        source=source,
        classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
        hyperparameters=read_hyperparameters(hp_file, overrides),
        endpoint=endpoint,
        threshold=threshold,
        keep_endpoint=keep_endpoint or with_console,
        port=port,
    )

    def log(line: str) -> None:
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)

    with RichProgress(err_console) as progress:
        summary = run_pipeline(ctx.settings, options, log=log, progress=progress)
    if as_json:
        print_json(summary.to_dict())
    else:
        _print_summary(summary, keep_endpoint or with_console)
    if with_console:
        from sconeflow.cli.console import run_console

        run_console(ctx, console_port, "127.0.0.1", None, None, 64, 5.0)


def _print_summary(summary: Any, keep_endpoint: bool) -> None:
    # Plain lines, not a table: paths and names must stay whole and copyable at any width.
    click.echo("\nSteps")
    for st in summary.steps:
        click.echo(f"  {st.name:<9} {st.status:<8} {st.seconds:6.1f} s  {st.detail}")
    click.echo("\nSummary")
    rows = format_summary(summary)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"  {key:<{width}}  {value}")
    if keep_endpoint and summary.endpoint:
        console.print(f"Endpoint {summary.endpoint} is still running: "
                      f"`sconeflow endpoint delete {summary.endpoint}` stops it.")  # fmt: skip


@click.command()
@click.option("--models", is_flag=True, help="Also delete trained models and their job records.")
@click.option("--captures", is_flag=True,
              help="Also delete captured data, ground truth and monitoring output.")
@click.option("--data", is_flag=True, help="Also delete the staged data.")
@click.option("--all", "everything", is_flag=True, help="All of the above.")
@json_option
@pass_context
def cleanup(
    ctx: Context, models: bool, captures: bool, data: bool, everything: bool, as_json: bool
) -> None:
    """Delete every endpoint (stopping its server) and, when asked, models, captures, data."""
    from sconeflow import db
    from sconeflow.monitoring.runner import delete_runs
    from sconeflow.serving.endpoints import delete_endpoint, list_endpoints
    from sconeflow.store import open_store
    from sconeflow.training.job import delete_jobs

    settings = ctx.settings
    store = open_store(settings)
    removed: dict[str, int] = {"endpoints": 0}
    for ep in list_endpoints(settings):
        delete_endpoint(settings, ep.name)
        removed["endpoints"] += 1
    prefixes = []
    if models or everything:
        prefixes.append(("models", "models/"))
    if captures or everything:
        prefixes += [("captures", "data_capture/"), ("monitoring", "monitoring/"),
                     ("ground_truth", "ground_truth/")]
    if data or everything:
        prefixes.append(("data", "data/"))
    for label, prefix in prefixes:
        keys = store.list(settings.bucket, prefix)
        for key in keys:
            store.delete(settings.bucket, key)
        removed[label] = len(keys)
    if models or everything:
        delete_jobs(settings)
    if captures or everything:
        with closing(db.connect(settings.db_path)) as conn:
            delete_runs(conn)
    if (captures or everything) and (settings.home / "pipeline.json").exists():
        (settings.home / "pipeline.json").unlink()  # the pipeline must monitor afresh
    if as_json:
        print_json(removed)
        return
    console.print(
        "Removed " + ", ".join(f"{n} {label}" for label, n in removed.items())
        + (" objects" if len(removed) > 1 else "")
    )
