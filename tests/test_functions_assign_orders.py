"""assignOrders, the routing step: writes the assignment the state machine chose, idempotently."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sconeflow.config import Settings
from sconeflow.functions import FunctionConfig, InvalidEventError, Services, make_handlers
from sconeflow.functions.assign_orders import handle
from sconeflow.store import LocalStore

EVENT = {
    "image_data": "aGk=",
    "s3_bucket": "sconeflow",
    "s3_key": "data/test/bicycle_s_000513.png",
    "inferences": [0.97, 0.03],
    "vehicle": "bicycle",
    "orders": "nearby",
}


def test_assignment_is_written_and_returned(settings: Settings, local_store: LocalStore) -> None:
    handlers = make_handlers(FunctionConfig(settings=settings))
    out = handlers["assignOrders"](dict(EVENT), None)
    assert out["assignment"] == {
        "bucket": "sconeflow", "key": "orders/bicycle_s_000513.json", "vehicle": "bicycle",
        "orders": "nearby", "confidence": 0.97,
    }  # fmt: skip
    assert {k: out[k] for k in EVENT} == EVENT  # the event rides along unchanged
    stored = json.loads(local_store.get("sconeflow", "orders/bicycle_s_000513.json"))
    assert stored["image"] == {"s3_bucket": "sconeflow", "s3_key": EVENT["s3_key"]}
    assert stored["orders"] == "nearby" and "image_data" not in stored
    # Run again (a Lambda retry): the same object is overwritten, never a second booking.
    handlers["assignOrders"]({**EVENT, "orders": "farther", "vehicle": "motorcycle"}, None)
    assert local_store.list("sconeflow", "orders/") == ["orders/bicycle_s_000513.json"]
    again = json.loads(local_store.get("sconeflow", "orders/bicycle_s_000513.json"))
    assert again["orders"] == "farther"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"orders": "everywhere"}, "'orders' is 'everywhere'"),
        ({"orders": None}, "'orders' is None"),
        ({"vehicle": ""}, "'vehicle' is ''"),
        ({"inferences": []}, "'inferences' is empty"),
        ({"s3_key": ""}, "'s3_key' is empty"),
    ],
)
def test_bad_events_are_refused_by_name(
    settings: Settings, change: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidEventError, match=fragment):
        handle({**EVENT, **change}, Services(FunctionConfig(settings=settings)))


def test_unwritable_key_is_an_event_error(settings: Settings) -> None:
    with pytest.raises(InvalidEventError, match="cannot write the assignment"):
        handle({**EVENT, "s3_bucket": "../escape"}, Services(FunctionConfig(settings=settings)))
