"""The event object the three functions pass along, parsed where it enters.

    {"image_data": "<base64 PNG>", "s3_bucket": "sconeflow",
     "s3_key": "data/test/bicycle_s_000513.png", "inferences": [0.97, 0.03]}

Keys are taken as given: the reference staged its images under `test/` in its bucket, so its
keys read `test/bicycle_s_000513.png`; sconeflow's staging writes `data/test/<file>.png`, and
the runner's generated test cases use those keys. Unknown keys (a ground-truth label, say)
ride along untouched, so a caller can carry its own bookkeeping through the workflow.

Some versions of the reference returned `{"statusCode": 200, "body": {...event...}}` from
each function; such a wrapper is unwrapped on the way in, and the bare event goes out.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sconeflow.functions.errors import InvalidEventError

EXAMPLE = (
    '{"image_data": "", "s3_bucket": "sconeflow", '
    '"s3_key": "data/test/bicycle_s_000513.png", "inferences": []}'
)


@dataclass
class ImageEvent:
    image_data: str = ""
    s3_bucket: str = ""
    s3_key: str = ""
    inferences: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "image_data": self.image_data,
            "s3_bucket": self.s3_bucket,
            "s3_key": self.s3_key,
            "inferences": list(self.inferences),
        }

    def image_bytes(self) -> bytes:
        """The decoded image; InvalidEventError when image_data is empty or not base64."""
        if not self.image_data:
            raise InvalidEventError(
                "event key 'image_data' is empty; run serializeImageData first, which fills it "
                "with the base64 of the image at s3_bucket/s3_key"
            )
        try:
            data = base64.b64decode(self.image_data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise InvalidEventError(
                f"event key 'image_data' is not valid base64 ({err}); expected the standard "
                "base64 of an image, as serializeImageData writes it"
            ) from err
        return data


def parse_event(event: object, require: Iterable[str] = ()) -> ImageEvent:
    """Check an incoming event's shape; the keys in `require` must be present and non-empty.

    Raises InvalidEventError naming the key, what it held and what was expected.
    """
    if isinstance(event, Mapping) and "body" in event and "image_data" not in event:
        body = event["body"]
        if isinstance(body, Mapping):
            event = body
    if not isinstance(event, Mapping):
        raise InvalidEventError(
            f"the event is a {type(event).__name__}, not a JSON object; expected e.g. {EXAMPLE}"
        )
    parsed = ImageEvent(extra={k: v for k, v in event.items() if k not in _KNOWN})
    for key in ("image_data", "s3_bucket", "s3_key"):
        value = event.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise InvalidEventError(
                f"event key {key!r} is a {type(value).__name__} ({_short(value)}); expected a "
                f"string, e.g. {EXAMPLE}"
            )
        setattr(parsed, key, value)
    parsed.inferences = _inferences(event.get("inferences"))
    for key in require:
        if key not in event:
            raise InvalidEventError(
                f"event has no key {key!r} (keys present: {sorted(event)}); expected e.g. {EXAMPLE}"
            )
        if key != "inferences" and not getattr(parsed, key):
            raise InvalidEventError(f"event key {key!r} is empty; expected e.g. {EXAMPLE}")
    return parsed


_KNOWN = frozenset({"image_data", "s3_bucket", "s3_key", "inferences"})


def _inferences(value: object) -> list[float]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidEventError(
            f"event key 'inferences' is a {type(value).__name__} ({_short(value)}); expected a "
            "list of class probabilities, e.g. [0.97, 0.03]"
        )
    out: list[float] = []
    for i, p in enumerate(value):
        # bool is an int subclass; a True in the list is a bug upstream, not a probability.
        if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p):
            raise InvalidEventError(
                f"event key 'inferences' item {i} is {_short(p)}; expected finite numbers, "
                "e.g. [0.97, 0.03]"
            )
        out.append(float(p))
    return out


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
