"""filterLowConfidence: pass the event on when max(inferences) >= THRESHOLD, else raise
ThresholdConfidenceNotMet, which fails the execution (or is caught by the definition).

Deploys to AWS Lambda as is, handler `sconeflow.functions.filter_low_confidence.lambda_handler`;
THRESHOLD (default 0.93, or `model`: the deployed model's stored threshold, read at cold
start from MODEL_DATA_URL) in sconeflow.functions.config.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from sconeflow.functions.config import FunctionConfig, resolve_threshold
from sconeflow.functions.errors import InvalidEventError, ThresholdConfidenceNotMet
from sconeflow.functions.event import parse_event
from sconeflow.functions.services import Services


def handle(event: object, threshold: float) -> dict[str, Any]:
    """The event unchanged if confident enough; raises ThresholdConfidenceNotMet otherwise."""
    parsed = parse_event(event, require=("inferences",))
    if not parsed.inferences:
        raise InvalidEventError(
            "event key 'inferences' is empty; run classifyImage first, which fills it with "
            "the endpoint's class probabilities"
        )
    confidence = max(parsed.inferences)
    if confidence < threshold:
        raise ThresholdConfidenceNotMet(confidence, threshold)
    return parsed.to_dict()


@functools.cache
def _threshold() -> float:
    config = FunctionConfig.from_env(os.environ)
    services = Services(config)
    return resolve_threshold(config, lambda b, k: services.store().get(b, k)).threshold


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return handle(event, _threshold())
