"""The packaged JSONata edition of the reference definition (definitions/stepfunction_jsonata.json):
after substitution it passes statelint and the engine's checks, keeps the reference's Retry,
and routes a bicycle to nearby orders and a motorcycle to farther ones through assignOrders.
The four Lambda functions are stand-ins here; the real handlers have their own tests."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from sconeflow.executions.definitions import substitute
from sconeflow.workflow import FakeClock, parse_definition, run_execution

ARNS = {
    f"{name[0].upper()}{name[1:]}Arn": f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    for name in ("serializeImageData", "classifyImage", "filterLowConfidence", "assignOrders")
}
PROBABILITIES = {"bicycle": [0.97, 0.03], "motorcycle": [0.04, 0.96], "unsure": [0.55, 0.45]}


def _text(name: str) -> str:
    return resources.files("sconeflow.definitions").joinpath(f"{name}.json").read_text()


def _handlers(calls: list[tuple[str, Any]]) -> dict[str, Any]:
    def serialize(event: Any, context: Any) -> Any:
        calls.append(("serializeImageData", event))
        return {**event, "image_data": "aW1hZ2U=", "inferences": []}

    def classify(event: Any, context: Any) -> Any:
        calls.append(("classifyImage", event))
        kind = event["s3_key"].split("/")[-1].split("_")[0]
        return {**event, "inferences": PROBABILITIES[kind]}

    def filter_low(event: Any, context: Any) -> Any:
        calls.append(("filterLowConfidence", event))
        if max(event["inferences"]) < 0.93:
            raise type("ThresholdConfidenceNotMet", (Exception,), {})("below 0.93")
        return event

    def assign_orders(event: Any, context: Any) -> Any:
        calls.append(("assignOrders", event))
        return {**event, "assignment": {"orders": event["orders"], "courier": "c-1"}}

    return {
        "serializeImageData": serialize,
        "classifyImage": classify,
        "filterLowConfidence": filter_low,
        "assignOrders": assign_orders,
    }


def _machine() -> Any:
    return parse_definition(substitute(_text("stepfunction_jsonata"), ARNS), name="scones-jsonata")


def test_it_is_a_jsonata_version_of_the_reference() -> None:
    jsonata = json.loads(substitute(_text("stepfunction_jsonata"), ARNS))
    reference = json.loads(_text("stepfunction"))
    assert jsonata["QueryLanguage"] == "JSONata"
    for name in ("serializeImageData", "classify", "filterLowConfidence"):
        ours, theirs = jsonata["States"][name], reference["States"][name]
        assert ours["Resource"] == theirs["Resource"] == "arn:aws:states:::lambda:invoke"
        assert ours["Retry"] == theirs["Retry"]
        assert ours["Arguments"]["Payload"] == "{% $states.input %}"
        assert ours["Output"] == "{% $states.result.Payload %}"
    assert _machine().function_names == {
        "serializeImageData",
        "classifyImage",
        "filterLowConfidence",
        "assignOrders",
    }


@pytest.mark.parametrize(("image", "orders"), [("bicycle", "nearby"), ("motorcycle", "farther")])
def test_the_predicted_class_picks_the_orders(image: str, orders: str) -> None:
    calls: list[tuple[str, Any]] = []
    event = {"s3_bucket": "sconeflow", "s3_key": f"data/test/{image}_s_000513.png"}
    result = run_execution(_machine(), event, _handlers(calls), clock=FakeClock())
    assert result.status == "SUCCEEDED", result.cause
    assert [name for name, _ in calls] == [
        "serializeImageData",
        "classifyImage",
        "filterLowConfidence",
        "assignOrders",
    ]
    # assignOrders gets the filter's event plus the vehicle and the orders it should take.
    filtered = calls[2][1]
    assert calls[3][1] == {**filtered, "vehicle": image, "orders": orders}
    assert result.output["assignment"] == {"orders": orders, "courier": "c-1"}
    assert result.output["inferences"] == PROBABILITIES[image]
    exited = [e for e in result.events if e["type"] == "TaskStateExited"]
    assert exited[2]["stateExitedEventDetails"]["assignedVariables"] == {
        "predictedClass": json.dumps(image)
    }


def test_a_low_confidence_image_fails_before_routing() -> None:
    calls: list[tuple[str, Any]] = []
    event = {"s3_bucket": "sconeflow", "s3_key": "data/test/unsure_s_000001.png"}
    result = run_execution(_machine(), event, _handlers(calls), clock=FakeClock())
    assert result.status == "FAILED"
    assert result.error == "ThresholdConfidenceNotMet"
    assert "assignOrders" not in [name for name, _ in calls]


def test_the_service_loads_it_with_the_project_substitution() -> None:
    from sconeflow.executions.definitions import load_definition

    definition = load_definition("stepfunction_jsonata")
    machine = parse_definition(definition.text, name=definition.name)
    assert "assignOrders" in machine.function_names
