"""`sconeflow monitor`: baseline, run, report, schedule (Model Monitor's jobs, locally).

Thin: parse, resolve the model and the window, call sconeflow.monitoring, print. The
deployed model (the endpoint's training job, or --model) gives the embedding test and the
promise of its model.json; without it a run tests the other features only.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sconeflow.cli.common import Context, console, json_option, pass_context, print_json
from sconeflow.config import Settings
from sconeflow.db import connect
from sconeflow.errors import EndpointError, MonitoringError, ObjectNotFoundError
from sconeflow.monitoring import (
    DEFAULT_ALPHA,
    DEFAULT_CATEGORICAL_METHOD,
    DEFAULT_COMPARISON_THRESHOLD,
)
from sconeflow.monitoring.capture_reader import (
    DEFAULT_VARIANT,
    format_time,
    parse_time,
    read_capture,
)
from sconeflow.monitoring.schedule import parse_every, run_schedule

# numpy, scipy and matplotlib come in with the monitoring steps, imported where they run,
# so that `sconeflow monitor ... --help` stays fast.
if TYPE_CHECKING:
    from sconeflow.monitoring.runner import RunRecord, WindowAnalysis
    from sconeflow.store import Store

endpoint_option = click.option("--endpoint", required=True, help="Endpoint whose capture to watch.")
schedule_option = click.option(
    "--schedule", help="Monitoring schedule name (default: <endpoint>-monitor); its baseline "
    "lives in monitoring/<schedule>/baseline/."
)
variant_option = click.option("--variant", default=DEFAULT_VARIANT, show_default=True)
classes_option = click.option(
    "--classes", help="Comma-separated class names in label order (default: the model's).")


def _schedule(endpoint: str, schedule: str | None) -> str:
    return schedule or f"{endpoint}-monitor"


def _when(text: str | None, now: datetime) -> datetime | None:
    """ISO time (2025-08-22T04:00:00Z) or a period ago (2h, 30m, 1d)."""
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        pass
    try:
        return now - parse_every(text)
    except Exception as err:
        raise click.BadParameter(
            f"{text!r} is neither an ISO time like 2025-08-22T04:00:00Z nor a period like 2h"
        ) from err


def _classes(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _endpoint_model(settings: Settings, endpoint: str, model: str | None) -> str:
    """--model, else the model the endpoint was deployed with (job name or path)."""
    found = _known_model(settings, endpoint, model)
    if found is None:
        raise MonitoringError(
            f"endpoint {endpoint!r} is not in the workspace db, so its model is unknown; "
            "pass --model <training job name or model.tar.gz>"
        )
    return found


def _known_model(settings: Settings, endpoint: str, model: str | None) -> str | None:
    from sconeflow.serving.endpoints import describe_endpoint_row

    if model is not None:
        return model
    try:
        return describe_endpoint_row(settings, endpoint).model
    except EndpointError:  # not in the workspace db: deployed elsewhere, or deleted
        return None


@contextlib.contextmanager
def _model_dir(settings: Settings, endpoint: str, model: str | None
               ) -> Iterator[tuple[Path | None, str]]:
    """The deployed model's folder for a run (None when it is unknown), and its name."""
    from sconeflow.serving.endpoints import resolve_model

    name = _known_model(settings, endpoint, model)
    if name is None:
        yield None, ""
        return
    with tempfile.TemporaryDirectory(prefix="sconeflow-monitor-") as tmp:
        yield resolve_model(settings, name, Path(tmp) / "model"), name


@click.group()
def monitor() -> None:
    """Model monitoring of an endpoint's captured traffic, in Model Monitor's formats."""


@monitor.command()
@endpoint_option
@schedule_option
@variant_option
@classes_option
@click.option("--from-images", "images", default=None, metavar="PREFIX",
              help="Baseline from the model's predictions on staged images under PREFIX "
              "(default data/test: images the model did not train on).")
@click.option("--from-capture", is_flag=True, help="Baseline from captured traffic instead.")
@click.option("--since", help="--from-capture: ISO time or period ago (e.g. 24h).")
@click.option("--until", help="--from-capture: ISO time or period ago (default: now).")
@click.option("--model", help="model.tar.gz path, store key or training job (default: the "
              "endpoint's model).")
@click.option("--comparison-threshold", type=float, default=DEFAULT_COMPARISON_THRESHOLD,
              show_default=True, help="Least KS / L-infinity distance that counts as drift.")
@click.option("--categorical-method", type=click.Choice(["ChiSquared", "LInfinity"]),
              default=DEFAULT_CATEGORICAL_METHOD, show_default=True)
@json_option
@pass_context
def baseline(ctx: Context, endpoint: str, schedule: str | None, variant: str,
             classes: str | None, images: str | None, from_capture: bool, since: str | None,
             until: str | None, model: str | None, comparison_threshold: float,
             categorical_method: str, as_json: bool) -> None:
    """Suggest statistics.json and constraints.json (plus baseline_sample.json)."""
    from sconeflow.monitoring import baseline as bl
    from sconeflow.monitoring.embeddings import load_embedder
    from sconeflow.monitoring.features import compute_features
    from sconeflow.store import open_store

    settings = ctx.settings
    store = open_store(settings)
    name = _schedule(endpoint, schedule)
    now = datetime.now(UTC)
    if not from_capture:
        _endpoint_model(settings, endpoint, model)  # a baseline from images needs the model
    with _model_dir(settings, endpoint, model) as (model_dir, _):
        if from_capture:
            batch = read_capture(store, settings.bucket, endpoint, variant=variant,
                                 since=_when(since, now), until=_when(until, now))
            records, problems = batch.records, len(batch.problems)
            names = _classes(classes)
            if not names:
                raise MonitoringError("--from-capture needs --classes (e.g. bicycle,motorcycle)")
        else:
            assert model_dir is not None
            records, names = bl.records_from_images(store, settings.bucket,
                                                    images or "data/test", model_dir)
            names = _classes(classes) or names
            problems = 0
        embedder = load_embedder(model_dir)[0] if model_dir is not None else None
        table = compute_features(records, names, embedder=embedder)
    base = bl.build_baseline(table, comparison_threshold=comparison_threshold,
                             categorical_threshold=comparison_threshold,
                             categorical_method=categorical_method)
    prefix = bl.baseline_prefix(name)
    keys = bl.save_baseline(store, settings.bucket, prefix, base)
    if as_json:
        print_json({"schedule": name, "records": len(table), "skipped": problems,
                    "est_accuracy": base.est_accuracy, "files": keys})
        return
    console.print(f"Baseline for schedule [bold]{name}[/]: {len(table)} records "
                  f"({problems} capture lines skipped), est. accuracy "
                  f"{base.est_accuracy or 0:.1%}")
    console.print(f"Wrote {store.uri(settings.bucket, prefix)}{{{','.join(bl.BASELINE_FILES)}}}")


def _print_run(record: RunRecord, analysis: WindowAnalysis, store: Store, bucket: str,
               as_json: bool) -> None:
    if as_json:
        print_json({**record.__dict__, "records": len(analysis.table),
                    "skipped": len(analysis.problems), "est_accuracy": analysis.est_accuracy,
                    "violations": analysis.checks.violations, "quality": analysis.quality,
                    "location": store.uri(bucket, record.prefix)})
        return
    colour = "green" if record.status == "Completed" else "red"
    acc = analysis.est_accuracy
    console.print(f"[{colour}]{record.status}[/] run {record.run_id}: {len(analysis.table)} "
                  f"records, {len(analysis.problems)} skipped lines, est. accuracy "
                  f"{'n/a' if acc is None else f'{acc:.1%}'}")
    for v in analysis.checks.violations:
        console.print(f"  - {v['feature_name']} ({v['constraint_check_type']}): "
                      f"{v['description']}", markup=False)
    if not analysis.table:
        window = (f" from {record.window_start} to {record.window_end}"
                  if record.window_start else "")  # fmt: skip
        console.print(f"No captured requests of endpoint {record.endpoint}{window}: captures "
                      f"appear under {store.uri(bucket, f'data_capture/{record.endpoint}/')} "
                      "once the endpoint has served traffic with capture on.",
                      highlight=False, soft_wrap=True)  # fmt: skip
    console.print(f"Results in {store.uri(bucket, record.prefix)}")


def _monitor_once(settings: Settings, endpoint: str, name: str, variant: str,
                  classes: Sequence[str] | None, since: datetime | None,
                  until: datetime | None, ground_truth: str | None, alpha: float,
                  report: bool, threshold: float | None, model: str | None
                  ) -> tuple[RunRecord, WindowAnalysis]:
    from sconeflow.monitoring.report import render_report, write_report
    from sconeflow.monitoring.runner import run_monitoring
    from sconeflow.store import open_store

    store = open_store(settings)
    with (
        contextlib.closing(connect(settings.db_path)) as conn,
        _model_dir(settings, endpoint, model) as (model_dir, model_name),
    ):
        record, analysis = run_monitoring(
            store, settings.bucket, conn, endpoint=endpoint, schedule=name,
            class_names=classes, since=since, until=until, variant=variant,
            ground_truth_prefix=ground_truth, alpha=alpha, model_dir=model_dir,
            model_name=model_name,
        )
    if report:
        write_report(store, settings.bucket, record.prefix,
                     render_report(analysis, run=record, threshold=threshold))
    return record, analysis


run_options = [
    click.option("--ground-truth", metavar="PREFIX", help="Store prefix of ground truth JSONL "
                 "(merged on inferenceId, else eventId)."),
    click.option("--alpha", type=float, default=DEFAULT_ALPHA, show_default=True,
                 help="Family-wise false alarm rate of the drift tests (Holm)."),
    click.option("--report/--no-report", default=True, show_default=True,
                 help="Also write report.html and the plots into the run's folder."),
    click.option("--threshold", type=float, default=None,
                 help="Confidence threshold drawn in the report (default: the one the "
                 "window's workflow executions ran with)."),
    click.option("--model", help="The deployed model (training job, model.tar.gz or folder; "
                 "default: the endpoint's): its embedding of the images is tested, and "
                 "its model.json promise checked against --ground-truth."),
]


_F = TypeVar("_F", bound=Callable[..., Any])


def _with_run_options(fn: _F) -> _F:
    for option in reversed(run_options):
        fn = option(fn)
    return fn


@monitor.command()
@endpoint_option
@schedule_option
@variant_option
@classes_option
@click.option("--since", help="Window start: ISO time or period ago (default: 1h before --until).")
@click.option("--until", help="Window end: ISO time or period ago (default: now).")
@_with_run_options
@json_option
@pass_context
def run(ctx: Context, endpoint: str, schedule: str | None, variant: str, classes: str | None,
        since: str | None, until: str | None, ground_truth: str | None, alpha: float,
        report: bool, threshold: float | None, model: str | None, as_json: bool) -> None:
    """One monitoring execution over [since, until) of captured data."""
    from sconeflow.store import open_store

    now = datetime.now(UTC).replace(microsecond=0)
    end = _when(until, now) or now
    start = _when(since, now) or end - parse_every("1h")
    settings = ctx.settings
    record, analysis = _monitor_once(settings, endpoint, _schedule(endpoint, schedule), variant,
                                     _classes(classes), start, end, ground_truth, alpha,
                                     report, threshold, model)
    _print_run(record, analysis, open_store(settings), settings.bucket, as_json)


@monitor.command()
@endpoint_option
@schedule_option
@variant_option
@classes_option
@click.option("--run-id", help="Run to report on (default: the latest of the schedule).")
@click.option("--threshold", type=float, default=None,
              help="Confidence threshold drawn in the report (default: the one the window's "
              "workflow executions ran with).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Also copy report.html and the plots into this folder.")
@click.option("--model", help="The deployed model (default: the endpoint's), as for `run`.")
@pass_context
def report(ctx: Context, endpoint: str, schedule: str | None, variant: str, classes: str | None,
           run_id: str | None, threshold: float | None, out: Path | None,
           model: str | None) -> None:
    """Write report.html (self-contained) and PNG plots for a monitoring run."""
    from sconeflow.monitoring import baseline as bl
    from sconeflow.monitoring.outcomes import read_workflow_outcomes
    from sconeflow.monitoring.report import render_report, write_report
    from sconeflow.monitoring.runner import analyse_window, list_runs, load_model_for_monitoring
    from sconeflow.store import open_store

    settings = ctx.settings
    store = open_store(settings)
    name = _schedule(endpoint, schedule)
    with contextlib.closing(connect(settings.db_path)) as conn:
        runs = [r for r in list_runs(conn, name)
                if (run_id is None or r.run_id == run_id) and r.status != "Failed"]
    if not runs:
        raise MonitoringError(f"no completed run{' ' + run_id if run_id else ''} for schedule "
                              f"{name!r}; start one with `sconeflow monitor run`")
    record = runs[0]
    try:
        summary = json.loads(store.get(settings.bucket, record.prefix + "summary.json"))
    except (ObjectNotFoundError, ValueError) as err:
        raise MonitoringError(
            f"run {record.run_id}: {store.uri(settings.bucket, record.prefix)}summary.json is "
            f"missing or not JSON ({err}); run `sconeflow monitor run` again"
        ) from err
    base = bl.load_baseline(store, settings.bucket, bl.baseline_prefix(name))
    since = parse_time(record.window_start) if record.window_start else None
    until = parse_time(record.window_end) if record.window_end else None
    with (
        contextlib.closing(connect(settings.db_path)) as conn,
        _model_dir(settings, endpoint, model) as (model_dir, model_name),
    ):
        embedder, promise, notes = load_model_for_monitoring(model_dir, model_name)
        analysis = analyse_window(
            store, settings.bucket, endpoint=endpoint,
            class_names=_classes(classes) or base.class_names, baseline=base, since=since,
            until=until, variant=variant,
            outcomes=read_workflow_outcomes(conn, since, until),
            ground_truth_prefix=summary.get("ground_truth_prefix"), embedder=embedder,
            promise=promise, notes=notes,
        )
    rendered = render_report(analysis, run=record, threshold=threshold)
    keys = write_report(store, settings.bucket, record.prefix, rendered)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.html").write_text(rendered.html, encoding="utf-8")
        for fname, data in rendered.plots.items():
            (out / fname).write_bytes(data)
    console.print(f"Report: {store.uri(settings.bucket, keys[0])}"
                  + (f" (copied to {out / 'report.html'})" if out else ""))


@monitor.command("schedule")
@endpoint_option
@schedule_option
@variant_option
@classes_option
@click.option("--every", default="1h", show_default=True, help="Period: 1h, 30m, 90s, 1d.")
@click.option("--max-runs", type=int, help="Stop after this many runs (default: never).")
@_with_run_options
@pass_context
def schedule_cmd(ctx: Context, endpoint: str, schedule: str | None, variant: str,
                 classes: str | None, every: str, max_runs: int | None,
                 ground_truth: str | None, alpha: float, report: bool,
                 threshold: float | None, model: str | None) -> None:
    """Run monitoring every period over the period just ended, in the foreground."""
    from sconeflow.store import open_store

    settings = ctx.settings
    name = _schedule(endpoint, schedule)
    period = parse_every(every)
    store = open_store(settings)

    def once(since: datetime, until: datetime) -> None:
        record, analysis = _monitor_once(settings, endpoint, name, variant, _classes(classes),
                                         since, until, ground_truth, alpha, report, threshold,
                                         model)
        _print_run(record, analysis, store, settings.bucket, False)

    console.print(f"Schedule [bold]{name}[/]: every {every} ({format_time(datetime.now(UTC))}"
                  f" start){'' if max_runs is None else f', {max_runs} runs'}; Ctrl-C stops.")
    run_schedule(once, every=period, max_runs=max_runs,
                 on_error=lambda err: console.print(f"[red]{type(err).__name__}[/]: {err}"))
