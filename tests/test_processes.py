"""Owner checks on real processes: this one, a reused pid's wrong start, a zombie, a dead one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sconeflow.processes import is_alive, process_start


def test_this_process_is_alive_only_with_its_own_start_time() -> None:
    me, start = os.getpid(), process_start(os.getpid())
    assert start is not None
    assert is_alive(me, start) and is_alive(me, str(start)) and is_alive(me, None)
    assert not is_alive(me, start + 1)  # the same pid, given to a later process
    assert not is_alive(None, start)


def test_a_zombie_and_a_reaped_child_are_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # exited, not reaped: a zombie
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    assert process_start(child.pid) is None and not is_alive(child.pid, start)
    child.wait()
    assert not is_alive(child.pid, None)
