"""serializeImageData: read the image at s3_bucket/s3_key, put its base64 in `image_data`.

Deploys to AWS Lambda as is, handler `sconeflow.functions.serialize_image_data.lambda_handler`
(see sconeflow.functions.package); configuration in sconeflow.functions.config.
"""

from __future__ import annotations

import base64
import functools
import os
from typing import Any

from sconeflow.functions.config import FunctionConfig
from sconeflow.functions.event import parse_event
from sconeflow.functions.services import Services


def handle(event: object, services: Services) -> dict[str, Any]:
    """The event with `image_data` filled and `inferences` reset to []."""
    parsed = parse_event(event, require=("s3_bucket", "s3_key"))
    data = services.read_image(parsed.s3_bucket, parsed.s3_key)
    parsed.image_data = base64.b64encode(data).decode("ascii")
    parsed.inferences = []
    return parsed.to_dict()


@functools.cache
def _services() -> Services:
    # Read once per container (cold start), as Lambda configuration is meant to be read.
    return Services(FunctionConfig.from_env(os.environ))


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return handle(event, _services())
