"""Is the process that owns a record still the one running? Training jobs and workflow
executions record their owner's pid and start time; a pid alone is not enough, because
the kernel gives a dead process's pid to a later one."""

from __future__ import annotations

import os
from pathlib import Path


def process_start(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/<pid>/stat field 22); None
    without /proc or when the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    if fields[0] in ("Z", "X"):  # exited, not yet reaped: dead to us
        return None
    return int(fields[19])  # fields[0] is field 3 (state), so field 22 is fields[19]


def is_alive(pid: int | None, start: int | str | None) -> bool:
    """True if `pid` runs and is the process that was recorded (same start time; a start
    of None matches any). Without /proc (macOS) the pid alone decides."""
    if pid is None:
        return False
    if Path("/proc/self/stat").exists():
        now = process_start(pid)
        return now is not None and (start is None or str(now) == str(start))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True
