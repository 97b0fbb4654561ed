"""What each page shows, read from the workspace through the modules that own each record
(executions.records and .machines, serving.endpoints, training.job, monitoring.runner).
Plain dicts and records for the templates; no HTML here."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from sconeflow.config import Settings
from sconeflow.errors import SconeflowError
from sconeflow.executions import machines as machine_rows
from sconeflow.executions import records
from sconeflow.executions.records import ExecutionRecord

MAX_CHART_RECORDS = 5000  # capture records drawn in the confidence chart (the newest)


def _pretty(text: str | None) -> str:
    """JSON text indented for reading; anything else as it is."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def machines(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Registered state machines, and those that only `workflow run` ran (from executions)."""
    rows: list[dict[str, Any]] = [
        {"name": m.name, "arn": m.arn, "type": m.type, "created": m.created_at,
         "source": "CreateStateMachine"} for m in machine_rows.list_machines(conn)
    ]  # fmt: skip
    known = {r["name"] for r in rows}
    for name in records.machine_names(conn):
        if name not in known:
            rows.append({"name": name, "arn": machine_rows.machine_arn(name), "type": "STANDARD",
                         "created": None, "source": "sconeflow workflow run"})  # fmt: skip
    for row in rows:
        row["counts"] = records.count_by_status(conn, row["name"])
    return sorted(rows, key=lambda r: r["name"])


def machine(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    found = machine_rows.get_machine(conn, machine_rows.machine_arn(name))
    if found is not None:
        return {"name": found.name, "arn": found.arn, "type": found.type,
                "definition": found.definition, "pretty": _pretty(found.definition),
                "registered": True}  # fmt: skip
    page, _ = records.page_executions(conn, state_machine=name, limit=1)
    if not page:
        return None
    definition = json.dumps(records.read_definition(conn, page[0].arn))
    return {"name": name, "arn": machine_rows.machine_arn(name), "type": "STANDARD",
            "definition": definition, "pretty": _pretty(definition), "registered": False}


def executions_page(conn: sqlite3.Connection, *, machine: str | None, status: str | None,
                    limit: int, after: tuple[str, str] | None = None,
                    ) -> tuple[list[ExecutionRecord], list[str] | None]:  # fmt: skip
    page, cursor = records.page_executions(conn, state_machine=machine, status=status,
                                           limit=limit, after=after)  # fmt: skip
    return page, list(cursor) if cursor else None


def counts(conn: sqlite3.Connection, machine: str | None) -> dict[str, int]:
    by_status = records.count_by_status(conn, machine)
    return {"total": sum(by_status.values()), **by_status}


def execution(conn: sqlite3.Connection, arn: str) -> dict[str, Any] | None:
    """One execution: its record, history, per-state rows and outcomes."""
    from sconeflow.executions.graph import outcomes_from_history

    record = records.current_record(conn, arn) if arn else None
    if record is None:
        return None
    events = records.read_history(conn, arn)
    definition = records.read_definition(conn, arn)
    outcomes = outcomes_from_history(definition, events, finished=record.status != "RUNNING")
    states: list[dict[str, Any]] = []
    open_by_id: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = str(event["type"])
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            row = {"name": details.get("name"), "type": kind[: -len("StateEntered")],
                   "input": _pretty(details.get("input")), "output": "", "id": event["id"]}
            states.append(row)
            open_by_id[event["id"]] = row
        elif kind.endswith("StateExited"):
            details = event["stateExitedEventDetails"]
            for row in reversed(states):
                if row["name"] == details.get("name") and not row["output"]:
                    row["output"] = _pretty(details.get("output"))
                    break
    for row in states:
        tally = outcomes.get(str(row["name"]))
        row["outcome"] = tally.outcome if tally else "not reached"
        row["error"] = tally.error if tally else None
    shown = []
    for event in events:
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), None)
        note = ""
        if isinstance(details, dict):
            note = str(details.get("name") or details.get("error") or "")
        shown.append({"id": event["id"], "previous": event["previousEventId"],
                      "type": event["type"], "timestamp": event["timestamp"], "note": note,
                      "details": json.dumps(details, indent=1, ensure_ascii=False)[:4000]
                      if details else ""})  # fmt: skip
    return {"record": record, "events": shown, "states": states, "outcomes": outcomes,
            "definition": definition, "input": _pretty(record.input),
            "output": _pretty(record.output), "running": record.status == "RUNNING"}


def endpoints(settings: Settings, conn: sqlite3.Connection) -> list[Any]:
    from sconeflow.serving.endpoints import list_endpoints

    return list_endpoints(settings, conn=conn)


def endpoint(settings: Settings, conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    from sconeflow.serving.endpoints import describe_endpoint_row

    try:
        return describe_endpoint_row(settings, name, conn=conn).describe(settings)
    except SconeflowError:
        return None


def jobs(settings: Settings, conn: sqlite3.Connection) -> list[Any]:
    from sconeflow.training.job import list_jobs

    return list_jobs(settings, conn=conn)


def job(settings: Settings, conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    from sconeflow.training.job import describe_job

    try:
        record = describe_job(settings, name, conn=conn)
    except SconeflowError:
        return None
    numbers = {k: v for k, v in record.metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}  # fmt: skip
    other = {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.metrics.items()
             if k not in numbers}
    return {"job": record, "numbers": numbers, "other": other}


def job_log(settings: Settings, name: str) -> str | None:
    path = settings.logs_dir / f"{name}.log"
    if "/" in name or name.startswith(".") or not path.is_file():
        return None
    return path.read_text(errors="replace")


def monitoring(settings: Settings, conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Per endpoint: its latest monitoring run and that run's violations."""
    from sconeflow.monitoring.runner import list_runs
    from sconeflow.store import open_store

    store = open_store(settings)
    runs = list_runs(conn)
    latest: dict[str, Any] = {}
    for run in runs:  # newest first
        latest.setdefault(run.endpoint, run)
    reports = []
    for name, run in sorted(latest.items()):
        violations: list[dict[str, Any]] = []
        try:
            doc = json.loads(store.get(settings.bucket, run.prefix + "constraint_violations.json"))
            violations = list(doc.get("violations", []))
        except (SconeflowError, ValueError):
            pass
        has_report = store.exists(settings.bucket, run.prefix + "report.html")
        reports.append({"endpoint": name, "run": run, "violations": violations,
                        "report": store.uri(settings.bucket, run.prefix + "report.html")
                        if has_report else None,
                        "runs": sum(1 for r in runs if r.endpoint == name)})  # fmt: skip
    return reports


def confidence_chart(settings: Settings, conn: sqlite3.Connection, endpoint: str) -> bytes:
    """Top probability of each captured inference over the latest run's window, with the
    threshold the workflow ran with: the run's own chart (drawn from the capture it read,
    whichever variant that was, e.g. the pipeline's simulated day), or, before any run or
    for a run that has none, one drawn from the endpoint's live capture of the last day."""
    import numpy as np

    from sconeflow.console.charts import message_chart
    from sconeflow.monitoring.capture_reader import parse_time, read_capture
    from sconeflow.monitoring.outcomes import read_workflow_outcomes, workflow_threshold
    from sconeflow.monitoring.plots import confidence_over_time
    from sconeflow.monitoring.runner import list_runs
    from sconeflow.store import open_store

    store = open_store(settings)
    runs = [r for r in list_runs(conn) if r.endpoint == endpoint]
    until = datetime.now(UTC) + timedelta(minutes=1)
    since = until - timedelta(days=1)
    if runs:
        drawn = f"{runs[0].prefix.rstrip('/')}/confidence_over_time.png"
        with contextlib.suppress(SconeflowError):
            return bytes(store.get(settings.bucket, drawn))
    if runs and runs[0].window_start and runs[0].window_end:
        since, until = parse_time(runs[0].window_start), parse_time(runs[0].window_end)
    threshold = workflow_threshold(read_workflow_outcomes(conn, since, until))
    batch = read_capture(store, settings.bucket, endpoint, since=since, until=until)
    captured = batch.records[-MAX_CHART_RECORDS:]
    if not captured:
        return message_chart("No captured inference in this window.",
                             f"{endpoint}: confidence over time")  # fmt: skip
    names = _class_names(store, settings.bucket, len(captured[0].probabilities))
    conf = np.array([max(r.probabilities) if r.probabilities else np.nan for r in captured])
    predicted = [names[int(np.argmax(r.probabilities))] if r.probabilities else None
                 for r in captured]  # fmt: skip
    return confidence_over_time([r.inference_time for r in captured], conf, predicted, names,
                                threshold)  # fmt: skip


def _class_names(store: Any, bucket: str, count: int) -> list[str]:
    from sconeflow.staging import MANIFEST_KEY

    try:
        names = [str(c) for c in json.loads(store.get(bucket, MANIFEST_KEY))["classes"]]
    except (SconeflowError, ValueError, KeyError):
        names = []
    return names if len(names) == count else [f"class_{i}" for i in range(count)]
