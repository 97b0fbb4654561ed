"""assignOrders: the routing step after the confidence filter. The state machine's Choice
on the predicted class decides the orders (a bicycle gets nearby orders, a motorcycle
farther ones) and passes them in the event; this handler records the assignment in the
store, where the dispatch side picks it up, and returns the event with `assignment` added.

    in:  {...filterLowConfidence's event..., "vehicle": "bicycle", "orders": "nearby"}
    out: the same event plus "assignment": {"bucket", "key", "vehicle", "orders",
         "confidence"}; the object at `key` holds that assignment and the image's s3 location

The object is `<ASSIGNMENTS_PREFIX><image file stem>.json` (prefix `orders/` by default), so
a retried or redriven execution overwrites its own assignment instead of adding a second
one: Lambda may run a handler more than once, and routing must not double-book a driver.
Deploys to AWS Lambda as is, handler `sconeflow.functions.assign_orders.lambda_handler`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
from typing import Any

from sconeflow.errors import StoreError
from sconeflow.functions.config import FunctionConfig
from sconeflow.functions.errors import InvalidEventError
from sconeflow.functions.event import parse_event
from sconeflow.functions.services import Services

ORDERS = ("nearby", "farther")
ASSIGNMENTS_PREFIX = "orders/"
_STEM = re.compile(r"[^0-9A-Za-z._-]+")


def handle(event: object, services: Services, prefix: str = ASSIGNMENTS_PREFIX) -> dict[str, Any]:
    """Write the assignment object and return the event with `assignment` filled."""
    parsed = parse_event(event, require=("s3_bucket", "s3_key", "inferences"))
    orders, vehicle = parsed.extra.get("orders"), parsed.extra.get("vehicle")
    if orders not in ORDERS:
        raise InvalidEventError(
            f"event key 'orders' is {orders!r}; expected one of {list(ORDERS)}, set by the "
            "state machine's Choice on the predicted class"
        )
    if not isinstance(vehicle, str) or not vehicle:
        raise InvalidEventError(
            f"event key 'vehicle' is {vehicle!r}; expected the predicted class name, e.g. "
            "'bicycle'"
        )
    if not parsed.inferences:
        raise InvalidEventError("event key 'inferences' is empty; run classifyImage first")
    stem = _STEM.sub("-", parsed.s3_key.rsplit("/", 1)[-1].rsplit(".", 1)[0]).strip("-.")
    key = f"{prefix}{stem or 'image'}.json"
    assignment = {
        "bucket": parsed.s3_bucket,
        "key": key,
        "vehicle": vehicle,
        "orders": orders,
        "confidence": max(parsed.inferences),
    }
    record = {
        **assignment,
        "image": {"s3_bucket": parsed.s3_bucket, "s3_key": parsed.s3_key},
        "inferences": parsed.inferences,
        "assigned_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
    }
    try:
        services.store().put(parsed.s3_bucket, key, json.dumps(record).encode())
    except StoreError as err:
        raise InvalidEventError(
            f"cannot write the assignment to bucket {parsed.s3_bucket!r} key {key!r}: {err}"
        ) from err
    return {**parsed.to_dict(), "assignment": assignment}


@functools.cache
def _services() -> Services:
    return Services(FunctionConfig.from_env(os.environ))


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    prefix = os.environ.get("ASSIGNMENTS_PREFIX") or ASSIGNMENTS_PREFIX
    return handle(event, _services(), prefix)
