"""`sconeflow workflow`: run the state machine, inspect executions, redrive, draw graphs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from sconeflow.cli.common import (
    Context,
    console,
    json_option,
    pass_context,
    print_json,
    print_table,
)
from sconeflow.config import Settings
from sconeflow.errors import WorkflowError
from sconeflow.executions import runner, traffic
from sconeflow.executions.definitions import load_definition
from sconeflow.executions.notify import Notifier
from sconeflow.executions.records import (
    ExecutionRecord,
    definition_of,
    find_execution,
    get_history,
    list_executions,
)
from sconeflow.executions.summary import SummaryRow, class_names, summarize
from sconeflow.functions.config import DEFAULT_THRESHOLD, THRESHOLD_FROM_MODEL
from sconeflow.store import open_store


class _Threshold(click.ParamType):
    """A probability, or `model`: the threshold stored in the endpoint's model.json."""

    name = "P|model"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str:
        if isinstance(value, float) or str(value).strip().lower() == THRESHOLD_FROM_MODEL:
            return value if isinstance(value, float) else THRESHOLD_FROM_MODEL
        try:
            number = float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a probability (e.g. 0.93) nor 'model'", param, ctx)
        if not 0.0 <= number <= 1.0:
            self.fail(f"{value!r} is not between 0 and 1 (e.g. 0.93)", param, ctx)
        return number

definition_option = click.option(
    "--definition",
    default="stepfunction",
    show_default=True,
    help="ASL file, or a packaged definition: stepfunction (the reference), fanout (Map) or "
    "fanout_distributed (a Distributed Map over data/test/).",
)
endpoint_option = click.option(
    "--endpoint", help="Endpoint name (default: the newest InService endpoint)."
)
threshold_option = click.option(
    "--threshold",
    type=_Threshold(),
    default=DEFAULT_THRESHOLD,
    show_default=True,
    help="filterLowConfidence's THRESHOLD, or 'model': the threshold stored in the "
    "endpoint's model.json (`sconeflow evaluate --target-accuracy ... --save`).",
)
notify_options = [
    click.option(
        "--notify-url",
        help="POST an EventBridge-style status event here when an execution fails "
        "(default: $SCONEFLOW_NOTIFY_URL).",
    ),
    click.option(
        "--notify-command",
        help="Run this command with the event JSON on stdin when an execution fails "
        "(default: $SCONEFLOW_NOTIFY_COMMAND).",
    ),
]


def _with_notify(func: Any) -> Any:
    for option in reversed(notify_options):
        func = option(func)
    return func


def _notifier(settings: Settings, url: str | None, command: str | None) -> Notifier:
    # Settings.env is the environment config.py read; the CLI is the edge that applies it.
    url = url or settings.env.get("SCONEFLOW_NOTIFY_URL") or None
    command = command or settings.env.get("SCONEFLOW_NOTIFY_COMMAND") or None
    return Notifier(url=url, command=shlex.split(command) if command else None)


@click.group()
def workflow() -> None:
    """Run the image-classification state machine and inspect its executions."""


@workflow.command()
@definition_option
@click.option("--state-machine", help="State machine name in ARNs (default: the file's stem).")
@endpoint_option
@threshold_option
@click.option("--input", "input_", help="Execution input: JSON text, or @file.json.")
@click.option("--name", help="Execution name (one execution only).")
@click.option("--count", type=click.IntRange(min=1), help="Generate N test cases from data/test/.")
@click.option("--seed", type=int, help="Seed for --count's random picks.")
@click.option("--batch", is_flag=True, help="Put the N test cases in one input {'images': [...]}.")
@click.option("--rate", type=float, help="Start executions at this many per second.")
@click.option(
    "--pattern", type=click.Choice(["continuous", "bursty"]), default="continuous",
    show_default=True, help="continuous: evenly spaced; bursty: groups of --burst at once.",
)  # fmt: skip
@click.option("--burst", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Executions running at once (also Map iterations at once).")  # fmt: skip
@_with_notify
@json_option
@pass_context
def run(
    ctx: Context, definition: str, state_machine: str | None, endpoint: str | None,
    threshold: float | str, input_: str | None, name: str | None, count: int | None,
    seed: int | None, batch: bool, rate: float | None, pattern: str, burst: int,
    concurrency: int, notify_url: str | None, notify_command: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Start executions and wait for them; print status, error, class and confidence.

    With --input, one execution of that input; with --count N, N generated test cases
    (the reference's generator: random images from data/test/), streamed at --rate.
    """
    settings = ctx.settings
    if (input_ is None) == (count is None):
        raise click.UsageError("give exactly one of --input JSON|@file or --count N")
    store = open_store(settings)
    if input_ is not None:
        inputs = [_read_input(input_)]
    else:
        assert count is not None
        cases = traffic.generate_test_cases(store, settings.bucket, count, seed=seed)
        inputs = [{"images": cases}] if batch else list(cases)
    if name is not None and len(inputs) != 1:
        raise click.UsageError("--name names one execution; leave it out with --count")
    loaded = load_definition(definition, name=state_machine)
    if threshold == THRESHOLD_FROM_MODEL:
        threshold = _model_threshold(settings, endpoint, quiet=as_json)
    assert isinstance(threshold, float)
    wf = runner.local_runner(
        settings, loaded, endpoint=endpoint, threshold=threshold,
        notifier=_notifier(settings, notify_url, notify_command), max_workers=concurrency,
    )  # fmt: skip
    names = [name] if name is not None else None
    names_of_classes = class_names(store, settings.bucket)

    def progress(record: ExecutionRecord) -> None:
        if not as_json and len(inputs) > 1:
            row = summarize(record, names_of_classes)[0]
            console.print(f"{record.status:<9} {record.name} {row.error or ''}", highlight=False)

    offsets = traffic.arrival_offsets(len(inputs), rate, pattern, burst)
    records = wf.stream(inputs, offsets=offsets, concurrency=concurrency, names=names,
                        on_done=progress)  # fmt: skip
    _print_summary(records, names_of_classes, as_json)


def _model_threshold(settings: Settings, endpoint: str | None, *, quiet: bool) -> float:
    """--threshold model: the `selective` threshold of the model the endpoint serves."""
    from sconeflow.evaluation import model_selective
    from sconeflow.serving.endpoints import describe_endpoint_row

    name, _ = runner.resolve_endpoint(settings, endpoint)
    model = describe_endpoint_row(settings, name).model
    entry = model_selective(settings, model)
    if not quiet:
        kind = "guaranteed" if entry.get("guaranteed") else "NOT guaranteed (empirical)"
        target = entry.get("target_accuracy")
        console.print(
            f"threshold {entry['threshold']:.4f} from model {model}'s model.json "
            f"(target selective accuracy {target}, {kind})", highlight=False)
    return float(entry["threshold"])


def _read_input(text: str) -> Any:
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise WorkflowError(f"cannot read input file {str(path)!r}: {err}") from err
    try:
        return json.loads(text)
    except ValueError as err:
        raise WorkflowError(
            f"--input is not JSON ({err}); expected e.g. "
            '\'{"s3_bucket": "sconeflow", "s3_key": "data/test/bicycle_s_000513.png"}\''
        ) from err


def _print_summary(records: list[ExecutionRecord], names: list[str], as_json: bool) -> None:
    rows: list[SummaryRow] = [row for r in records for row in summarize(r, names)]
    if as_json:
        print_json([
            {**r.describe(), "summary": [row.__dict__ for row in summarize(r, names)],
             **({"notificationError": r.notification_error} if r.notification_error else {})}
            for r in records
        ])  # fmt: skip
        return
    print_table(
        "Executions",
        ["execution", "status", "error", "predicted", "confidence"],
        [(r.execution, r.status, r.error, r.predicted,
          None if r.confidence is None else f"{r.confidence:.4f}") for r in rows],
    )  # fmt: skip
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(by_status.items())), highlight=False)
    for record in records:
        if record.notification_error:
            console.print(f"[yellow]notification not delivered for {record.name}: "
                          f"{record.notification_error}[/]")  # fmt: skip


@workflow.command("list")
@click.option("--status", type=click.Choice(["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT",
                                             "ABORTED"]))  # fmt: skip
@click.option("--map-run", help="List the child executions of this Map Run ARN instead.")
@json_option
@pass_context
def list_(ctx: Context, status: str | None, map_run: str | None, as_json: bool) -> None:
    """List executions, newest first (ListExecutions); a Distributed Map's child
    executions with --map-run (its ARN is in the parent's MapRunStarted event)."""
    records = list_executions(ctx.settings, status=status, map_run_arn=map_run)
    if as_json:
        print_json({"executions": [r.describe() for r in records]})
        return
    print_table(
        "Executions",
        ["name", "status", "state machine", "started", "stopped", "redrives", "error"],
        [(r.name, r.status, r.state_machine, r.started_at, r.stopped_at, r.redrive_count or "",
          r.error) for r in records],
    )  # fmt: skip


@workflow.command()
@click.argument("execution")
@json_option
@pass_context
def describe(ctx: Context, execution: str, as_json: bool) -> None:
    """Describe an execution by ARN or name (DescribeExecution)."""
    info = find_execution(ctx.settings, execution).describe()
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)


@workflow.command()
@click.argument("execution")
@json_option
@pass_context
def history(ctx: Context, execution: str, as_json: bool) -> None:
    """Show an execution's events (GetExecutionHistory)."""
    events = get_history(ctx.settings, execution)
    if as_json:
        print_json({"events": events})
        return
    rows = []
    for e in events:
        details: dict[str, Any] = (
            next((v for k, v in e.items() if k.endswith("EventDetails")), {}) or {}
        )
        note = details.get("name") or details.get("error") or ""
        if "redriveCount" in details:
            note = f"redrive {details['redriveCount']}"
        rows.append((e["id"], e["previousEventId"], e["timestamp"], e["type"], note))
    print_table("History", ["id", "prev", "timestamp", "type", "state / error"], rows)


@workflow.command()
@click.argument("execution")
@endpoint_option
@click.option("--threshold", type=float, default=None,
              help="filterLowConfidence's THRESHOLD (default: the one the execution ran with).")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@_with_notify
@json_option
@pass_context
def redrive(
    ctx: Context, execution: str, endpoint: str | None, threshold: float | None,
    concurrency: int, notify_url: str | None, notify_command: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Restart a failed or aborted execution from the state that failed (RedriveExecution)."""
    settings = ctx.settings
    record = runner.redrive_local(
        settings, execution, endpoint=endpoint, threshold=threshold, max_workers=concurrency,
        notifier=_notifier(settings, notify_url, notify_command),
    )  # fmt: skip
    _print_summary([record], class_names(open_store(settings), settings.bucket), as_json)


@workflow.command()
@click.argument("execution")
@click.option("--error", help="Error code to record on the ExecutionAborted event.")
@click.option("--cause", help="Cause to record on the ExecutionAborted event.")
@click.option("--wait", type=float, default=10.0, show_default=True,
              help="Seconds to wait for the execution to end.")  # fmt: skip
@json_option
@pass_context
def stop(ctx: Context, execution: str, error: str | None, cause: str | None, wait: float,
         as_json: bool) -> None:  # fmt: skip
    """Stop a running execution, whichever process runs it (StopExecution): it ends ABORTED
    with ExecutionAborted before its next state, and can be redriven."""
    from sconeflow.executions.stop import stop_execution

    record = stop_execution(ctx.settings, execution, error=error, cause=cause, wait=wait)
    if as_json:
        print_json(record.describe())
    elif record.status == "RUNNING":
        console.print(f"stop requested: {record.name} ends ABORTED when its running task "
                      "returns", highlight=False)  # fmt: skip
    else:
        console.print(f"{record.status} {record.name}", highlight=False)


@workflow.command()
@click.option(
    "--definition", help="ASL file or packaged name (stepfunction, fanout, fanout_distributed)."
)
@click.option("--execution", help="Execution ARN or name: colour states by outcome.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output path; both PATH.svg and PATH.png are written.")  # fmt: skip
@pass_context
def graph(ctx: Context, definition: str | None, execution: str | None, out: Path) -> None:
    """Draw a definition, or an execution coloured by outcome, as SVG and PNG."""
    from sconeflow.executions.graph import outcomes_from_history, render_graph

    if (definition is None) == (execution is None):
        raise click.UsageError("give exactly one of --definition or --execution")
    if execution is not None:
        record = find_execution(ctx.settings, execution)
        spec = definition_of(ctx.settings, record.arn)
        events = get_history(ctx.settings, record.arn)
        outcomes = outcomes_from_history(spec, events, finished=record.status != "RUNNING")
        title = f"{record.state_machine}:{record.name} — {record.status}"
        paths = render_graph(spec, out, outcomes=outcomes, title=title)
    else:
        assert definition is not None
        loaded = load_definition(definition)
        paths = render_graph(json.loads(loaded.text), out, title=loaded.name)
    for path in paths:
        console.print(f"wrote {path}", highlight=False)
