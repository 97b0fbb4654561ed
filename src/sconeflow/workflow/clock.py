"""The engine's only view of time: `now()` and `sleep(seconds)`.

Wait states, retry back-off and timeouts go through a clock passed to `run_execution`,
so tests pass a `FakeClock` and never sleep.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What the engine needs from time."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for `seconds` (the engine never passes a negative value)."""
        ...

    def wait(self, done: threading.Event, seconds: float) -> bool:
        """Block until `done` is set or `seconds` have passed; True if it was set."""
        ...


class SystemClock:
    """Wall-clock time and real sleeping."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, done: threading.Event, seconds: float) -> bool:
        return done.wait(max(0.0, seconds))


class FakeClock:
    """A clock for tests: `sleep` advances `now` instantly and records each call.

    `wait` cannot let fake time pass while a handler runs, so it waits for real, up to
    `real_wait_limit` seconds; a handler still running then counts as past its deadline.
    A slow handler is simulated with `advance` instead, and judged when it returns.
    """

    def __init__(self, start: dt.datetime | None = None, real_wait_limit: float = 10.0) -> None:
        self.current = start or dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        self.sleeps: list[float] = []
        self.real_wait_limit = real_wait_limit

    def now(self) -> dt.datetime:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += dt.timedelta(seconds=seconds)

    def wait(self, done: threading.Event, seconds: float) -> bool:
        if done.wait(self.real_wait_limit):
            return True
        self.current += dt.timedelta(seconds=max(0.0, seconds))
        return False

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep (e.g. a slow handler)."""
        self.current += dt.timedelta(seconds=seconds)


def iso_millis(moment: dt.datetime) -> str:
    """`2024-01-01T00:00:00.000Z`: the form of `$$.Execution.StartTime`, `$$.State.EnteredTime`."""
    return (
        moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}Z"
    )
