"""Trivial Lambda handlers for console_bench.py (`sconeflow console --handlers THIS:HANDLERS`):
each returns its event, as moto's Lambda without Docker does, so both servers measure the
orchestration and not the functions."""

from __future__ import annotations

from typing import Any


def _echo(event: Any, context: Any) -> Any:
    return event


HANDLERS = {name: _echo for name in ("serializeImageData", "classifyImage", "filterLowConfidence")}
