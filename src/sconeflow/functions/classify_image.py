"""classifyImage: send the decoded `image_data` to the endpoint, store the probabilities in
`inferences` (label order: bicycle, motorcycle for the reference model).

Deploys to AWS Lambda as is, handler `sconeflow.functions.classify_image.lambda_handler`;
configuration (ENDPOINT_NAME, SCONEFLOW_ENDPOINT_URL) in sconeflow.functions.config.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from sconeflow.functions.config import FunctionConfig
from sconeflow.functions.event import parse_event
from sconeflow.functions.services import Services


def handle(event: object, services: Services) -> dict[str, Any]:
    """The event with `inferences` set to the endpoint's class probabilities."""
    parsed = parse_event(event, require=("image_data",))
    # The image key as inference id (AWS allows 1-64 printable characters, the first not a
    # space): monitoring joins captured records to this execution's outcome through it. It
    # travels as an HTTP header, so only ASCII keys qualify; others go without an id.
    key = parsed.s3_key
    usable = key and len(key) <= 64 and key.isascii() and key.isprintable() and key[0] != " "
    inference_id = key if usable else None
    parsed.inferences = services.invoke_endpoint(parsed.image_bytes(), "image/png", inference_id)
    return parsed.to_dict()


@functools.cache
def _services() -> Services:
    return Services(FunctionConfig.from_env(os.environ))


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return handle(event, _services())
