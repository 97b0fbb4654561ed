"""Summaries of executions for people: the predicted class and confidence of each run, or of
each item of a fan-out (Map) run, as `workflow run` and the pipeline print them."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sconeflow.errors import SconeflowError
from sconeflow.executions.records import ExecutionRecord
from sconeflow.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SummaryRow:
    """One line of the run summary: an execution (or one Map item of it)."""

    execution: str
    status: str
    error: str | None
    predicted: str | None
    confidence: float | None


def class_names(store: Store, bucket: str) -> list[str]:
    """Class names in label order from the staging manifest; [] if there is none."""
    try:
        classes = json.loads(store.get(bucket, "data/manifest.json")).get("classes", [])
    except (SconeflowError, ValueError, AttributeError) as err:  # names are optional
        log.debug("no class names: %s", err)
        return []
    return [str(c) for c in classes]


def summarize(record: ExecutionRecord, names: Sequence[str] = ()) -> list[SummaryRow]:
    """Status, error, predicted class and confidence per execution, or per item of a
    fan-out execution (an output holding a `results` list), or per child execution of a
    Distributed Map whose results were exported (`results` names its Map Run)."""
    output = json.loads(record.output) if record.output else None
    results = output.get("results") if isinstance(output, dict) else None
    if isinstance(results, dict) and "MapRunArn" in results and record.children:
        return [
            dataclasses.replace(row, execution=f"{record.name}[{i}]")
            for i, child in enumerate(record.children)
            for row in summarize(child, names)
        ]
    if isinstance(output, dict) and isinstance(output.get("results"), list):
        rows = []
        for i, item in enumerate(output["results"]):
            failed = isinstance(item, dict) and "Error" in item and "inferences" not in item
            rows.append(SummaryRow(
                f"{record.name}[{i}]", "FAILED" if failed else "SUCCEEDED",
                item.get("Error") if failed else None,
                *_prediction(_inferences_in(item.get("Cause") if failed else item), names),
            ))  # fmt: skip
        return rows
    inferences = _inferences_in(output)
    for event in reversed(record.events or []):  # a failed run: the last inferences seen
        if inferences:
            break
        details = event.get("stateEnteredEventDetails") or {}
        inferences = _inferences_in(details.get("input"))
    predicted, confidence = _prediction(inferences, names)
    return [SummaryRow(record.name, record.status, record.error, predicted, confidence)]


def _inferences_in(value: Any) -> list[float]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        found = value.get("inferences")
        if isinstance(found, list) and found and all(isinstance(p, int | float) for p in found):
            return [float(p) for p in found]
    return []


def _prediction(
    inferences: Sequence[float], names: Sequence[str]
) -> tuple[str | None, float | None]:
    if not inferences:
        return None, None
    best = max(range(len(inferences)), key=inferences.__getitem__)
    label = names[best] if best < len(names) else str(best)
    return label, inferences[best]
