"""Pictures of definitions and executions: valid SVG and PNG files, every state named in the
SVG, states coloured by outcome from real execution histories."""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from sconeflow.config import Settings
from sconeflow.errors import WorkflowError
from sconeflow.executions import definitions, records, runner
from sconeflow.executions.graph import StateOutcome, outcomes_from_history, render_graph
from sconeflow.executions.runner import WorkflowRunner
from test_executions_runner import EVENT, Functions

TASK = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "${ClassifyImageArn}", "Payload.$": "$"},
        "OutputPath": "$.Payload"}  # fmt: skip
BRANCHY: dict[str, Any] = {
    "StartAt": "classify",
    "States": {
        "classify": {**TASK, "Next": "route",
                     "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "giveUp"}]},
        "route": {"Type": "Choice", "Default": "wait",
                  "Choices": [{"Variable": "$.inferences[0]", "NumericGreaterThanEquals": 0.5,
                               "Next": "both"}]},
        "wait": {"Type": "Wait", "Seconds": 0, "Next": "classify"},
        "both": {"Type": "Parallel", "Next": "each", "Branches": [
            {"StartAt": "left", "States": {"left": {"Type": "Pass", "End": True}}},
            {"StartAt": "right", "States": {"right": {"Type": "Pass", "Next": "right2"},
                                            "right2": {"Type": "Pass", "End": True}}}]},
        "each": {"Type": "Map", "ItemsPath": "$[0].images", "MaxConcurrency": 2, "End": True,
                 "ItemProcessor": {"StartAt": "item", "States": {
                     "item": {"Type": "Pass", "End": True}}}},
        "giveUp": {"Type": "Fail", "Error": "Unsure"},
    },
}  # fmt: skip


def _check_files(paths: list[Path], names: list[str]) -> str:
    svg, png = paths
    assert svg.suffix == ".svg" and png.suffix == ".png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert 200 < width < 6000 and 200 < height < 12000
    text = svg.read_text()
    root = ET.fromstring(text)  # well-formed XML
    assert root.tag.endswith("svg")
    texts = [t.text or "" for t in root.iter() if t.tag.endswith("text")]
    for name in names:
        assert name in texts, f"{name} not drawn as text"
    return text


def test_reference_definition_renders_svg_and_png(tmp_path: Path) -> None:
    spec = json.loads(definitions.load_definition().text)
    paths = render_graph(spec, tmp_path / "ref.png", title="stepfunction")
    assert paths == [tmp_path / "ref.svg", tmp_path / "ref.png"]
    _check_files(paths, ["serializeImageData", "classify", "filterLowConfidence"])


def test_choice_parallel_map_and_loops_render_with_labels(tmp_path: Path) -> None:
    paths = render_graph(BRANCHY, tmp_path / "branchy")
    names = ["classify", "route", "wait", "both", "left", "right", "right2", "each", "item",
             "giveUp", "branch 1", "branch 2", "each item", "Default", "catch States.ALL",
             "$.inferences[0] >= 0.5"]  # fmt: skip
    _check_files(paths, names)
    with pytest.raises(WorkflowError, match="no 'States'"):
        render_graph({"StartAt": "x"}, tmp_path / "bad")


def _run(settings: Settings, probabilities: list[float], name: str) -> records.ExecutionRecord:
    fns = Functions(probabilities)
    return WorkflowRunner(settings, definitions.load_definition(), fns.table()).start(EVENT, name)


def test_outcomes_follow_the_history(settings: Settings) -> None:
    spec = json.loads(definitions.load_definition().text)
    ok = _run(settings, [0.99, 0.01], "ok")
    tallies = outcomes_from_history(spec, ok.events)
    assert {n: t.outcome for n, t in tallies.items()} == {
        "serializeImageData": "succeeded", "classify": "succeeded",
        "filterLowConfidence": "succeeded",
    }  # fmt: skip
    bad = _run(settings, [0.5, 0.5], "bad")
    tallies = outcomes_from_history(spec, bad.events)
    assert tallies["filterLowConfidence"].outcome == "failed"
    assert tallies["filterLowConfidence"].error == "ThresholdConfidenceNotMet"
    assert tallies["classify"].outcome == "succeeded"
    running = outcomes_from_history(spec, bad.events[:-3], finished=False)
    assert running["filterLowConfidence"].outcome == "running"
    assert StateOutcome().outcome == "not reached"


def test_caught_errors_and_redrives_are_shown_as_such(settings: Settings) -> None:
    spec = {"StartAt": "classify", "States": {
        "classify": {**TASK, "Next": "never",
                     "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "fallback"}]},
        "fallback": {"Type": "Pass", "End": True},
        "never": {"Type": "Pass", "End": True}}}  # fmt: skip
    fns = Functions([0.9, 0.1])
    fns.classify_error = RuntimeError("endpoint down")
    definition = definitions.Definition("caught", definitions.substitute(json.dumps(spec),
                                   definitions.function_arns()), "test")  # fmt: skip
    handlers = {"classifyImage": fns.classify}
    record = WorkflowRunner(settings, definition, handlers).start({"x": 1}, "c")
    assert record.status == "SUCCEEDED"
    tallies = outcomes_from_history(spec, record.events)
    assert tallies["classify"].outcome == "caught" and tallies["classify"].error == "RuntimeError"
    assert tallies["fallback"].outcome == "succeeded" and "never" not in tallies
    # A failure that a redrive ran again is forgiven: the picture shows the final state.
    failed = _run(settings, [0.6, 0.4], "to-redrive")
    assert failed.status == "FAILED"
    lenient = Functions([0.6, 0.4], threshold=0.5)
    runner.redrive_execution(settings, failed.arn, lenient.table())
    reference = json.loads(definitions.load_definition().text)
    tally = outcomes_from_history(reference, records.get_history(settings, failed.arn))
    assert tally["filterLowConfidence"] == StateOutcome(entered=1, succeeded=1)
    assert tally["classify"].outcome == "succeeded"


def test_cli_graph_of_a_definition_and_of_an_execution(settings: Settings, tmp_path: Path) -> None:
    from test_executions_runner import _cli

    code, out = _cli(settings, "graph", "--definition", "fanout", "--out", str(tmp_path / "f"))
    assert code == 0, out
    _check_files([tmp_path / "f.svg", tmp_path / "f.png"], ["classifyImages", "each item"])
    record = _run(settings, [0.5, 0.5], "drawn")
    code, out = _cli(settings, "graph", "--execution", record.arn, "--out",
                     str(tmp_path / "e.svg"))  # fmt: skip
    assert code == 0, out
    svg = _check_files([tmp_path / "e.svg", tmp_path / "e.png"],
                       ["filterLowConfidence", "succeeded", "failed", "not reached"])  # fmt: skip
    assert "ThresholdConfidenceNotMet" in svg and "#ffcdd2" in svg  # the failed colour
    code, out = _cli(settings, "graph", "--out", str(tmp_path / "x"))
    assert code == 2 and "exactly one of --definition or --execution" in out
