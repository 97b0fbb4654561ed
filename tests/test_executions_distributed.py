"""The execution service running Distributed Maps: the packaged fanout_distributed
definition over staged test images, every child execution recorded with its own history,
the results exported to the store, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sconeflow.config import Settings, load_settings
from sconeflow.executions import records, summary
from sconeflow.executions.definitions import load_definition
from sconeflow.executions.objects import StoreObjects
from sconeflow.executions.runner import WorkflowRunner
from sconeflow.store import LocalStore, S3Store, open_store
from test_executions_runner import Functions, _add_endpoint, _assert_chain, _cli
from test_functions import PNG, FakeEndpoint

IMAGES = 24  # staged test images copied into the workspace under test


@pytest.fixture
def staged_subset(staged_home: Settings, tmp_path: Path) -> tuple[Settings, list[str]]:
    """A fresh workspace whose data/test/ holds the first staged test images."""
    source = open_store(staged_home)
    keys = [k for k in source.list(staged_home.bucket, "data/test/") if k.endswith(".png")]
    keys = keys[:IMAGES]
    settings = load_settings(env={}, home=tmp_path / "subset")
    store = open_store(settings)
    for key in keys:
        store.put(settings.bucket, key, source.get(staged_home.bucket, key))
    return settings, keys


def _handlers(settings: Settings, seen: list[str]) -> dict[str, Any]:
    """Stand-ins that read each image from the store; images with an even length are
    classified confidently, the others fail filterLowConfidence."""
    fns = Functions([0.99, 0.01])
    store = open_store(settings)

    def serialize(event: dict[str, Any], context: Any) -> dict[str, Any]:
        data = store.get(event["s3_bucket"], event["s3_key"])
        seen.append(event["s3_key"])
        return {**fns.serialize(event, context), "size": len(data)}

    def classify(event: dict[str, Any], context: Any) -> dict[str, Any]:
        out = fns.classify(event, context)
        return out if event["size"] % 2 == 0 else {**out, "inferences": [0.6, 0.4]}

    return {**fns.table(), "serializeImageData": serialize, "classifyImage": classify}


def test_fanout_distributed_classifies_every_staged_image_and_records_each_child(
    staged_subset: tuple[Settings, list[str]],
) -> None:
    settings, keys = staged_subset
    seen: list[str] = []
    wf = WorkflowRunner(settings, load_definition("fanout_distributed"),
                        _handlers(settings, seen), max_workers=4)  # fmt: skip
    record = wf.start({"bucket": settings.bucket}, "all-test-images")
    assert record.status == "SUCCEEDED", record.cause
    assert sorted(seen) == keys  # every image, once
    results = json.loads(record.output)["results"]
    run_arn = results["MapRunArn"]
    assert run_arn.startswith(
        "arn:aws:states:us-east-1:123456789012:mapRun:fanout_distributed/classifyImages:"
    )
    # The parent's history: a Map Run, no MapIteration events.
    parent = records.get_history(settings, record.arn)
    _assert_chain(parent)
    kinds = [e["type"] for e in parent]
    assert "MapRunStarted" in kinds and "MapRunSucceeded" in kinds
    assert not [k for k in kinds if k.startswith("MapIteration")]
    # Every child: an execution of its own, listed under the Map Run, with its history.
    children = records.list_executions(settings, map_run_arn=run_arn)
    assert len(children) == IMAGES and len(record.children) == IMAGES
    assert {c.state_machine for c in children} == {"fanout_distributed/classifyImages"}
    assert all(c.map_run_arn == run_arn for c in children)
    assert all(c.describe()["mapRunArn"] == run_arn for c in children)
    sizes = {k: len(open_store(settings).get(settings.bucket, k)) for k in keys}
    expected_failed = sum(1 for s in sizes.values() if s % 2)
    assert 0 < expected_failed < IMAGES  # both outcomes occur in the subset
    assert sum(c.status == "FAILED" for c in children) == expected_failed
    for child in children:
        assert child.arn.startswith(
            "arn:aws:states:us-east-1:123456789012:execution:fanout_distributed/classifyImages:"
        )
        history = records.get_history(settings, child.arn)
        _assert_chain(history)
        assert history[0]["type"] == "ExecutionStarted"
        ending = "ExecutionSucceeded" if child.status == "SUCCEEDED" else "ExecutionFailed"
        assert history[-1]["type"] == ending
        assert json.loads(child.input)["s3_key"] in keys
        if child.status == "FAILED":
            assert child.error == "ThresholdConfidenceNotMet"
    # The top-level listing holds the parent only, as ListExecutions of its state machine.
    assert [r.name for r in records.list_executions(settings)] == ["all-test-images"]
    # The results the ResultWriter exported: manifest, SUCCEEDED_0.json, FAILED_0.json.
    store = open_store(settings)
    manifest = json.loads(store.get(settings.bucket, results["ResultWriterDetails"]["Key"]))
    assert manifest["MapRunArn"] == run_arn and manifest["DestinationBucket"] == settings.bucket
    run_id = run_arn.rsplit(":", 1)[1]
    succeeded = json.loads(
        store.get(settings.bucket, f"results/fanout_distributed/{run_id}/SUCCEEDED_0.json")
    )
    failed = json.loads(
        store.get(settings.bucket, f"results/fanout_distributed/{run_id}/FAILED_0.json")
    )
    assert len(succeeded) == IMAGES - expected_failed and len(failed) == expected_failed
    assert manifest["ResultFiles"]["PENDING"] == []
    assert {r["ExecutionArn"] for r in succeeded + failed} == {c.arn for c in children}
    # The run summary has one row per child.
    rows = summary.summarize(record, ["bicycle", "motorcycle"])
    assert len(rows) == IMAGES and sum(r.status == "FAILED" for r in rows) == expected_failed


def test_an_interrupted_distributed_map_leaves_no_child_running(settings: Settings) -> None:
    local = open_store(settings)
    for i in range(3):
        local.put(settings.bucket, f"data/test/img{i}.png", PNG)
    fns = Functions([0.99, 0.01])
    calls = {"n": 0}

    def classify(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second child runs
        return fns.classify(event, context)

    handlers = {**fns.table(), "classifyImage": classify}
    wf = WorkflowRunner(settings, load_definition("fanout_distributed"), handlers)
    with pytest.raises(KeyboardInterrupt):
        wf.start({"bucket": settings.bucket}, "interrupted")
    parent = records.find_execution(settings, "interrupted")
    assert parent.status == "ABORTED"
    with records.db.connect(settings.db_path) as conn:
        children = records.read_children(conn, parent.arn)
    assert [c.status for c in children] == ["SUCCEEDED", "ABORTED"]  # the third never started


def test_store_objects_lists_like_s3_on_both_backends(
    settings: Settings, s3_env: dict[str, str]
) -> None:
    local = open_store(settings)
    assert isinstance(local, LocalStore)
    s3 = S3Store(endpoint_url=s3_env["AWS_ENDPOINT_URL"])
    for store in (local, s3):
        store.put("objects-test", "p/b.txt", b"bb")
        store.put("objects-test", "p/a.txt", b"a")
        store.put("objects-test", "q/c.txt", b"c")
    listed = [StoreObjects(store).list("objects-test", "p/") for store in (local, s3)]
    for infos in listed:
        assert [(i.key, i.size) for i in infos] == [("p/a.txt", 1), ("p/b.txt", 2)]
    # S3's ETag of a single-part upload is the MD5 of the content, as the local one is.
    assert [i.etag for i in listed[0]] == [i.etag for i in listed[1]]
    assert StoreObjects(local).get("objects-test", "q/c.txt") == b"c"


def test_cli_runs_fanout_distributed_over_data_test(settings: Settings) -> None:
    local = open_store(settings)
    for i in range(3):
        local.put(settings.bucket, f"data/test/bicycle_s_{i:06d}.png", PNG)
    endpoint = FakeEndpoint(b"[0.6, 0.4]")  # unsure about every image: each child fails
    try:
        _add_endpoint(settings, "scones", endpoint.url, "2024-01-01T00:00:00")
        code, out = _cli(settings, "run", "--definition", "fanout_distributed", "--input",
                         json.dumps({"bucket": settings.bucket}), "--name", "fan")  # fmt: skip
        assert code == 0, out
        assert "3 FAILED" in out and "ThresholdConfidenceNotMet" in out
        assert len(endpoint.requests) == 3
        code, out = _cli(settings, "list", "--json")
        assert [e["name"] for e in json.loads(out)["executions"]] == ["fan"]
        code, out = _cli(settings, "history", "fan", "--json")
        events = json.loads(out)["events"]
        run_arn = next(e for e in events if e["type"] == "MapRunStarted")[
            "mapRunStartedEventDetails"
        ]["mapRunArn"]
        code, out = _cli(settings, "list", "--map-run", run_arn, "--json")
        children = json.loads(out)["executions"]
        assert code == 0 and len(children) == 3
        assert {c["status"] for c in children} == {"FAILED"}
        code, out = _cli(settings, "history", children[0]["executionArn"], "--json")
        assert json.loads(out)["events"][-1]["type"] == "ExecutionFailed"
        code, out = _cli(settings, "redrive", children[0]["executionArn"])
        assert code == 1 and "is a child execution of the Map Run" in out
    finally:
        endpoint.close()
