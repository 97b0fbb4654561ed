"""The reference workflow's three Lambda functions and the routing step after them, each a
plain `lambda_handler(event, context)`.

    serializeImageData   serialize_image_data.py   s3_bucket/s3_key -> image_data (base64)
    classifyImage        classify_image.py         image_data -> inferences (endpoint call)
    filterLowConfidence  filter_low_confidence.py  passes if max(inferences) >= THRESHOLD
    assignOrders         assign_orders.py          records the routing (nearby / farther
                                                   orders) that the state machine chose

On AWS each file is a Lambda handler configured by environment (functions.config); locally
`make_handlers` binds the same `handle` functions to a config built from sconeflow Settings,
so the workflow runner needs no environment variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sconeflow.functions.config import FunctionConfig, resolve_threshold
from sconeflow.functions.errors import (
    AccessDeniedError,
    EndpointInvocationError,
    FunctionError,
    ImageNotFoundError,
    InvalidEventError,
    ThresholdConfidenceNotMet,
)
from sconeflow.functions.services import Services

Handler = Callable[[Any, Any], Any]

# Function name (as in the Lambda ARN) -> module holding its lambda_handler.
FUNCTION_MODULES = {
    "serializeImageData": "sconeflow.functions.serialize_image_data",
    "classifyImage": "sconeflow.functions.classify_image",
    "filterLowConfidence": "sconeflow.functions.filter_low_confidence",
    "assignOrders": "sconeflow.functions.assign_orders",
}


def make_handlers(config: FunctionConfig) -> dict[str, Handler]:
    """The handlers by function name, sharing one Services (clients built once)."""
    # Imported here, not at the top, so that a Lambda zip of one function (its module's
    # import closure, see sconeflow.aws.bundle) need not carry the others.
    from sconeflow.functions import (
        assign_orders,
        classify_image,
        filter_low_confidence,
        serialize_image_data,
    )

    services = Services(config)
    # THRESHOLD=model: the stored threshold, read once (the store opens only then).
    config = resolve_threshold(config, lambda bucket, key: services.store().get(bucket, key))

    def serialize(event: Any, context: Any = None) -> Any:
        return serialize_image_data.handle(event, services)

    def classify(event: Any, context: Any = None) -> Any:
        return classify_image.handle(event, services)

    def filter_(event: Any, context: Any = None) -> Any:
        return filter_low_confidence.handle(event, config.threshold)

    def assign(event: Any, context: Any = None) -> Any:
        return assign_orders.handle(event, services)

    return {
        "serializeImageData": serialize,
        "classifyImage": classify,
        "filterLowConfidence": filter_,
        "assignOrders": assign,
    }


__all__ = [
    "FUNCTION_MODULES",
    "AccessDeniedError",
    "EndpointInvocationError",
    "FunctionConfig",
    "FunctionError",
    "Handler",
    "ImageNotFoundError",
    "InvalidEventError",
    "Services",
    "ThresholdConfidenceNotMet",
    "make_handlers",
]
