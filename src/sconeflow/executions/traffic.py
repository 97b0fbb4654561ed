"""Test traffic for the workflow: the reference project's generator of test cases from
`data/test/`, and arrival times for a continuous or bursty stream."""

from __future__ import annotations

import random
from typing import Any

from sconeflow.errors import WorkflowError
from sconeflow.store import Store


def generate_test_cases(
    store: Store, bucket: str, count: int, *, prefix: str = "data/test/", seed: int | None = None
) -> list[dict[str, Any]]:
    """The reference's generator: events for random images under `prefix`
    (`{"image_data": "", "s3_bucket": ..., "s3_key": ..., "inferences": []}`)."""
    keys = [k for k in store.list(bucket, prefix) if k.endswith(".png")]
    if not keys:
        raise WorkflowError(
            f"no .png images under {store.uri(bucket, prefix)}; stage data first with "
            "`sconeflow stage`"
        )
    rng = random.Random(seed)
    picks = rng.sample(keys, count) if count <= len(keys) else rng.choices(keys, k=count)
    return [{"image_data": "", "s3_bucket": bucket, "s3_key": k, "inferences": []} for k in picks]


def arrival_offsets(
    count: int, rate: float | None, pattern: str = "continuous", burst: int = 10
) -> list[float]:
    """Seconds after the start at which each of `count` executions begins.

    continuous: evenly spaced at `rate` per second; bursty: groups of `burst` at once, the
    groups spaced so the average is still `rate`; no rate: all at once.
    """
    if rate is None:
        return [0.0] * count
    if not rate > 0:
        raise WorkflowError(f"rate: {rate!r} must be a positive number of executions per second")
    if pattern == "continuous":
        return [i / rate for i in range(count)]
    if pattern == "bursty":
        if burst < 1:
            raise WorkflowError(f"burst: {burst} must be at least 1")
        return [(i // burst) * burst / rate for i in range(count)]
    raise WorkflowError(f"pattern: {pattern!r} is not one of continuous, bursty")
