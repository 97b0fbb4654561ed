"""JSON values as Step Functions handles them: compact text and the 256 KiB quota."""

from __future__ import annotations

import json
from typing import Any

MAX_PAYLOAD_BYTES = 262_144  # 256 KiB of UTF-8, AWS's quota on a state's input or output
TRUNCATED = {"truncated": False}  # the `inputDetails`/`outputDetails` of every history event

# Compact separators and raw UTF-8, as AWS writes JSON into history events.
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def within_quota(text: str) -> bool:
    """Whether JSON text fits AWS's payload quota (counted in UTF-8 bytes)."""
    if len(text) <= MAX_PAYLOAD_BYTES // 4:  # even 4-byte characters would fit
        return True
    return len(text.encode("utf-8")) <= MAX_PAYLOAD_BYTES


def json_type(value: Any) -> str:
    """The JSON type name of a value, for error messages."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"
