"""A monitoring schedule: run every period over the period just ended, in the foreground.

Like Model Monitor's hourly schedule, the run at time t analyses the capture of
[t - every, t). Runs are aligned to the start of the loop, not to the wall clock; a run that
overruns its period delays the next one, which then starts at once, so consecutive windows
never overlap and never leave a gap. A failed run is
recorded (status Failed) and the schedule goes on; `max_runs` stops the loop (tests, cron).
The clock and the sleep are arguments, so tests run a day of schedule in milliseconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sconeflow.errors import ConfigError, SconeflowError

_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> timedelta:
    """'1h', '30m', '90s', '1d' -> timedelta; ConfigError shows a correct example."""
    m = _EVERY.match(text.lower())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"--every {text!r} is not a period; expected e.g. 1h, 30m, 90s or 1d")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def run_schedule(
    run_once: Callable[[datetime, datetime], object],
    *,
    every: timedelta,
    max_runs: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    on_error: Callable[[SconeflowError], None] | None = None,
) -> int:
    """Call run_once(since, until) every `every`; returns the number of runs made.

    SconeflowErrors of one run (already recorded as Failed by the runner) go to `on_error`
    and the loop continues; anything else is a bug and propagates.
    """
    if every <= timedelta(0):
        raise ConfigError("every must be a positive period, e.g. 1h")
    runs = 0
    tick = now()
    while max_runs is None or runs < max_runs:
        try:
            run_once(tick - every, tick)
        except SconeflowError as err:
            if on_error is None:
                raise
            on_error(err)
        runs += 1
        if max_runs is not None and runs >= max_runs:
            break
        tick += every
        wait = (tick - now()).total_seconds()
        if wait > 0:
            sleep(wait)
        # else: the last run overran; run the next period at once, so windows stay
        # contiguous (no gap, no overlap) and the schedule catches up.
    return runs
