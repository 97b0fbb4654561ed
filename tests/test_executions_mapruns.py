"""Redriving an execution whose Distributed Map failed redrives its Map Run (AWS developer
guide, "Redriving Map Runs"): only the children that did not succeed run again, the others'
outputs are reused, and the Map Run is the same one, redriven. On real SQLite records;
the handlers fail while a marker file exists and log every call to a file."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.errors import WorkflowError
from sconeflow.executions import records, runner
from sconeflow.executions.definitions import Definition
from sconeflow.executions.runner import WorkflowRunner
from sconeflow.store import open_store
from test_executions_runner import _assert_chain

ITEMS = [{"n": i} for i in range(20)]


class Marked:
    """Handlers `prepare` and `work` (the two states of each child) and `finish` (a state
    after the Map): each call is a line in calls.log; `work` of item n fails while the file
    fail-n exists, `finish` while fail-finish does, and `work` leaves "ok" out of its
    result while no-ok does."""

    def __init__(self, root: Path) -> None:
        self.root, self.log = root, root / "calls.log"

    def mark(self, *names: object) -> None:
        for name in names:
            (self.root / f"fail-{name}").touch()

    def unmark(self, *names: object) -> None:
        for name in names:
            (self.root / f"fail-{name}").unlink()

    def calls(self) -> Counter[tuple[str, int]]:
        lines = self.log.read_text().split() if self.log.exists() else []
        return Counter((lines[i], int(lines[i + 1])) for i in range(0, len(lines), 2))

    def _called(self, name: str, n: int) -> None:
        with self.log.open("a") as f:
            f.write(f"{name} {n}\n")

    def prepare(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._called("prepare", event["n"])
        return event

    def work(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._called("work", event["n"])
        if (self.root / f"fail-{event['n']}").exists():
            raise RuntimeError(f"item {event['n']} is marked to fail")
        out = {"n": event["n"], "squared": event["n"] ** 2}
        return out if (self.root / "no-ok").exists() else {**out, "ok": True}

    def finish(self, event: Any, context: Any) -> Any:
        self._called("finish", 0)
        if (self.root / "fail-finish").exists():
            raise RuntimeError("finish is marked to fail")
        return event

    def table(self) -> dict[str, Any]:
        return {"prepare": self.prepare, "work": self.work, "finish": self.finish}


def _task(fn: str, nxt: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": fn, "Payload.$": "$"},
        "OutputPath": "$.Payload",
    }
    return {**state, "Next": nxt} if nxt else {**state, "End": True}


def _fanout(execution_type: str = "STANDARD", *, then: str = "Done", **fan: Any) -> Definition:
    """Fan: a Distributed Map over $.items whose children run Prepare then Work, then a
    Pass (Done) or the Task finish (Finish)."""
    processor = {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type},
        "StartAt": "Prepare",
        "States": {"Prepare": _task("prepare", "Work"), "Work": _task("work", None)},
    }
    after = {"Done": {"Type": "Pass", "End": True}, "Finish": _task("finish", None)}[then]
    spec = {
        "StartAt": "Fan",
        "States": {
            "Fan": {"Type": "Map", "Label": "items", "ItemsPath": "$.items",
                    "ItemProcessor": processor, "ResultPath": "$.results", "Next": then, **fan},
            then: after,
        },
    }  # fmt: skip
    return Definition("fanout", json.dumps(spec), "test")


def _children(settings: Settings, map_run_arn: str) -> dict[int, list[records.ExecutionRecord]]:
    """The Map Run's child executions by item, in start order."""
    out: dict[int, list[records.ExecutionRecord]] = {}
    with db.connect(settings.db_path) as conn:
        for child in records.read_map_run_children(conn, map_run_arn):
            out.setdefault(json.loads(child.input)["n"], []).append(child)
    return out


def _map_run_events(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(e["type"], e.get("mapRunStartedEventDetails") or e.get("mapRunRedrivenEventDetails"))
            for e in events if e["type"].startswith("MapRun")]  # fmt: skip


def _clean_output(settings: Settings, definition: Definition, marked: Marked) -> Any:
    clean = WorkflowRunner(settings, definition, marked.table()).start({"items": ITEMS}, "clean")
    assert clean.status == "SUCCEEDED", clean.cause
    return json.loads(clean.output or "null")


def test_a_redrive_reruns_only_the_children_that_did_not_succeed(
    settings: Settings, tmp_path: Path
) -> None:
    marked = Marked(tmp_path)
    marked.mark(3, 7)
    definition = _fanout(ToleratedFailureCount=1)
    first = WorkflowRunner(settings, definition, marked.table()).start({"items": ITEMS}, "fan")
    # The second failure exceeds the tolerance: items 8..19 never start (PENDING).
    assert first.status == "FAILED" and first.error == "States.ExceedToleratedFailureThreshold"
    assert marked.calls() == Counter(
        {(fn, n): 1 for n in range(8) for fn in ("prepare", "work")}
    )
    before = records.get_history(settings, first.arn)
    run_arn = _map_run_events(before)[0][1]["mapRunArn"]
    was = _children(settings, run_arn)
    assert sorted(was) == list(range(8)) and [was[3][0].status, was[7][0].status] == ["FAILED"] * 2

    marked.unmark(3, 7)
    again = runner.redrive_execution(settings, first.arn, marked.table())
    assert again.status == "SUCCEEDED", again.cause
    # Items 3 and 7 ran again, from Work, the state they failed in; 8..19 for the first
    # time; the six that had succeeded not at all.
    calls = marked.calls()
    assert {k: c for k, c in calls.items() if c > 1} == {("work", 3): 2, ("work", 7): 2}
    assert set(calls) == {(fn, n) for n in range(20) for fn in ("prepare", "work")}
    # The parent: the same Map Run, redriven once, no new one; history continues.
    after = records.get_history(settings, first.arn)
    _assert_chain(after)
    assert after[: len(before)] == before
    assert _map_run_events(after[len(before) :]) == [
        ("MapRunRedriven", {"mapRunArn": run_arn, "redriveCount": 1}),
        ("MapRunSucceeded", None),
    ]
    # One child execution per item; 3 and 7 are the same executions, redriven.
    now = _children(settings, run_arn)
    assert sorted(now) == list(range(20)) and all(len(c) == 1 for c in now.values())
    assert all(c[0].status == "SUCCEEDED" for c in now.values())
    assert {n for n, c in now.items() if c[0].redrive_count} == {3, 7}
    for n in (3, 7):
        child = now[n][0]
        assert child.arn == was[n][0].arn and child.started_at == was[n][0].started_at
        assert child.describe()["redriveCount"] == 1
        history = records.get_history(settings, child.arn)
        _assert_chain(history)
        kinds = [e["type"] for e in history]
        assert kinds.count("ExecutionFailed") == 1 and kinds[-1] == "ExecutionSucceeded"
        redriven = kinds.index("ExecutionRedriven")
        assert history[redriven]["executionRedrivenEventDetails"] == {"redriveCount": 1}
        assert history[redriven + 1]["stateEnteredEventDetails"]["name"] == "Work"
    for n in (0, 1, 2, 4, 5, 6):
        assert now[n][0].arn == was[n][0].arn and now[n][0].stopped_at == was[n][0].stopped_at
    # The output is a clean run's, the reused children's outputs in their places.
    assert json.loads(again.output or "null") == _clean_output(settings, definition, marked)
    with pytest.raises(WorkflowError, match="ExecutionNotRedrivable"):
        runner.redrive_execution(settings, first.arn, marked.table())


@pytest.mark.parametrize("execution_type", ["STANDARD", "EXPRESS"])
def test_each_redrive_of_a_map_run_counts_and_reruns_what_failed_again(
    settings: Settings, tmp_path: Path, execution_type: str
) -> None:
    marked = Marked(tmp_path)
    marked.mark(3)
    definition = _fanout(execution_type)  # no failure tolerated: item 3 stops the Map Run
    first = WorkflowRunner(settings, definition, marked.table()).start({"items": ITEMS}, "fan")
    assert first.status == "FAILED"
    second = runner.redrive_execution(settings, first.arn, marked.table())  # still marked
    assert second.status == "FAILED" and second.redrive_count == 1
    marked.unmark(3)
    third = runner.redrive_execution(settings, first.arn, marked.table())
    assert third.status == "SUCCEEDED" and third.redrive_count == 2
    events = records.get_history(settings, first.arn)
    run_arn = _map_run_events(events)[0][1]["mapRunArn"]
    assert [(kind, details) for kind, details in _map_run_events(events) if details] == [
        ("MapRunStarted", {"mapRunArn": run_arn}),
        ("MapRunRedriven", {"mapRunArn": run_arn, "redriveCount": 1}),
        ("MapRunRedriven", {"mapRunArn": run_arn, "redriveCount": 2}),
    ]
    calls = marked.calls()
    assert {k: c for k, c in calls.items() if c > 1 and k[1] != 3} == {}
    children = _children(settings, run_arn)
    assert sorted(children) == list(range(20))
    if execution_type == "STANDARD":
        # One execution, redriven twice, from Work each time.
        assert calls[("prepare", 3)] == 1 and calls[("work", 3)] == 3
        assert [(c.status, c.redrive_count) for c in children[3]] == [("SUCCEEDED", 2)]
    else:
        # AWS restarts an EXPRESS child with StartExecution: a new execution each time.
        assert calls[("prepare", 3)] == 3 and calls[("work", 3)] == 3
        assert [(c.status, c.redrive_count) for c in children[3]] == [
            ("FAILED", 0), ("FAILED", 0), ("SUCCEEDED", 0)]  # fmt: skip
        assert len({c.arn for c in children[3]}) == 3
    assert json.loads(third.output or "null") == _clean_output(settings, definition, marked)


def test_a_redrive_after_the_map_does_not_run_the_map_again(
    settings: Settings, tmp_path: Path
) -> None:
    # AWS: a redrive "continues the failed execution from the unsuccessful step"; the
    # Map exited, so it is not redriven.
    marked = Marked(tmp_path)
    marked.mark("finish")
    definition = _fanout(then="Finish")
    first = WorkflowRunner(settings, definition, marked.table()).start({"items": ITEMS[:5]}, "f")
    assert first.status == "FAILED" and first.error == "RuntimeError"
    before = records.get_history(settings, first.arn)
    marked.unmark("finish")
    again = runner.redrive_execution(settings, first.arn, marked.table())
    assert again.status == "SUCCEEDED", again.cause
    assert marked.calls()[("finish", 0)] == 2
    assert all(c == 1 for k, c in marked.calls().items() if k[0] != "finish")
    redone = records.get_history(settings, first.arn)[len(before) :]
    assert not [e for e in redone if e["type"].startswith("Map")]
    assert redone[1]["stateEnteredEventDetails"]["name"] == "Finish"


def test_a_map_that_failed_after_its_map_run_succeeded_starts_a_new_one(
    settings: Settings, tmp_path: Path
) -> None:
    # The Map Run succeeded and the state failed on its result (ResultSelector): nothing
    # of that Map Run failed, and reusing its outputs would fail the same way on every
    # redrive, so the redrive starts a new Map Run (as AWS does when the state's output,
    # not a child, failed; see mapruns.py).
    marked = Marked(tmp_path)
    (tmp_path / "no-ok").touch()
    definition = _fanout(ResultSelector={"ok.$": "$[0].ok"})
    first = WorkflowRunner(settings, definition, marked.table()).start({"items": ITEMS[:4]}, "r")
    assert first.status == "FAILED" and first.error == "States.Runtime"
    (tmp_path / "no-ok").unlink()
    again = runner.redrive_execution(settings, first.arn, marked.table())
    assert again.status == "SUCCEEDED", again.cause
    assert json.loads(again.output or "null")["results"] == {"ok": True}
    assert set(marked.calls().values()) == {2}  # every child ran twice
    starts = [d for kind, d in _map_run_events(records.get_history(settings, first.arn))
              if kind == "MapRunStarted"]  # fmt: skip
    assert len(starts) == 2 and starts[0] != starts[1]


def test_a_redriven_map_run_exports_every_child_to_the_same_prefix(
    settings: Settings, tmp_path: Path
) -> None:
    marked = Marked(tmp_path)
    marked.mark(1)
    writer = {"Resource": "arn:aws:states:::s3:putObject",
              "Parameters": {"Bucket": settings.bucket, "Prefix": "out"}}  # fmt: skip
    definition = _fanout(ResultWriter=writer)
    first = WorkflowRunner(settings, definition, marked.table()).start({"items": ITEMS[:4]}, "w")
    assert first.status == "FAILED"
    marked.unmark(1)
    again = runner.redrive_execution(settings, first.arn, marked.table())
    assert again.status == "SUCCEEDED", again.cause
    details = json.loads(again.output or "null")["results"]
    run_arn, store = details["MapRunArn"], open_store(settings)
    run_id = run_arn.rsplit(":", 1)[1]
    assert details["ResultWriterDetails"]["Key"] == f"out/{run_id}/manifest.json"
    manifest = json.loads(store.get(settings.bucket, f"out/{run_id}/manifest.json"))
    assert manifest["MapRunArn"] == run_arn
    assert manifest["ResultFiles"]["FAILED"] == manifest["ResultFiles"]["PENDING"] == []
    written = json.loads(store.get(settings.bucket, f"out/{run_id}/SUCCEEDED_0.json"))
    children = _children(settings, run_arn)
    assert [r["ExecutionArn"] for r in written] == [children[n][0].arn for n in range(4)]
    assert [r["RedriveCount"] for r in written] == [0, 1, 0, 0]
    assert [json.loads(r["Output"])["n"] for r in written] == [0, 1, 2, 3]


def test_a_map_run_that_could_not_read_its_items_is_started_anew(
    settings: Settings, tmp_path: Path
) -> None:
    # AWS: a Map Run that could not read its items (its example: no permission) "wasn't
    # started"; the redrive starts one.
    marked = Marked(tmp_path)
    reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
              "Parameters": {"Bucket": settings.bucket, "Key": "items.json"}}  # fmt: skip
    spec = json.loads(_fanout(ItemReader=reader).text)
    del spec["States"]["Fan"]["ItemsPath"]  # ItemsPath reads the state input, not a reader's
    definition = Definition("fanout", json.dumps(spec), "test")
    first = WorkflowRunner(settings, definition, marked.table()).start({}, "reader")
    assert first.status == "FAILED" and first.error == "States.ItemReaderFailed", first.cause
    open_store(settings).put(settings.bucket, "items.json", json.dumps(ITEMS[:3]).encode())
    again = runner.redrive_execution(settings, first.arn, marked.table())
    assert again.status == "SUCCEEDED", again.cause
    kinds = [kind for kind, _ in _map_run_events(records.get_history(settings, first.arn))]
    assert kinds == ["MapRunStarted", "MapRunFailed", "MapRunStarted", "MapRunSucceeded"]
