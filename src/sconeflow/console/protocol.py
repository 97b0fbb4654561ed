"""AWS's JSON protocols as the console speaks them: errors, timestamps, page tokens.

Errors are what botocore parses for the `json` protocol: HTTP 400 (or the status AWS uses)
with the body `{"__type": "<Code>", "message": "..."}` and the header `x-amzn-ErrorType`,
so `client.exceptions.<Code>` catches them. Timestamps go out as epoch seconds, as AWS
sends them. Page tokens are opaque to clients: base64 of a small JSON cursor.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any


class AwsError(Exception):
    """An error answered in AWS's shape: its code (the exception's name), message, status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status

    def body(self) -> dict[str, Any]:
        return {"__type": self.code, "message": self.message}


def epoch(stamp: str | dt.datetime | None) -> float | None:
    """An ISO 8601 timestamp (as the db keeps them) in epoch seconds (as AWS sends them)."""
    if stamp is None:
        return None
    moment = stamp if isinstance(stamp, dt.datetime) else dt.datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return round(moment.timestamp(), 3)


def encode_token(cursor: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor, separators=(",", ":")).encode()).decode()


def decode_token(token: str | None, kind: str) -> dict[str, Any] | None:
    """The cursor in a nextToken made by `encode_token` for `kind`; InvalidToken otherwise."""
    if token is None:
        return None
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, UnicodeError) as err:
        raise AwsError("InvalidToken", f"Invalid Token: '{token}'") from err
    if not isinstance(cursor, dict) or cursor.get("kind") != kind:
        raise AwsError("InvalidToken", f"Invalid Token: '{token}'")
    return cursor


def page_size(value: Any, field: str = "maxResults", default: int = 100,
              limit: int = 1000) -> int:  # fmt: skip
    """maxResults as AWS reads it: 0 or absent is the default; above `limit` is refused."""
    if value is None or value == 0:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
            f"constraint: Member must have value less than or equal to {limit}",
        )
    return value


def required(body: Mapping[str, Any], field: str) -> Any:
    value = body.get(field)
    if value is None or value == "":
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value null at '{field}' failed to satisfy "
            "constraint: Member must not be null",
        )
    return value


def text_field(body: Mapping[str, Any], field: str, max_length: int) -> str | None:
    """An optional string field, checked for type and AWS's length limit."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AwsError("ValidationException", f"'{field}' must be a string")
    if len(value) > max_length:
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value at '{field}' failed to satisfy constraint: "
            f"Member must have length less than or equal to {max_length}",
        )
    return value
