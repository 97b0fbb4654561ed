"""The workspace database opens safely from many threads and processes at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sconeflow import db


def test_many_threads_open_a_fresh_database_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ws" / "sconeflow.db"

    def open_and_write(i: int) -> int:
        conn = db.connect(path)
        conn.execute(
            "INSERT INTO training_jobs (name, status, created_at, hyperparameters) "
            "VALUES (?, 'Completed', 'now', '{}')",
            (f"job-{i}",),
        )
        conn.close()
        return i

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert sorted(pool.map(open_and_write, range(64))) == list(range(64))
    conn = db.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM training_jobs").fetchone()[0] == 64


def test_several_processes_open_a_fresh_database_at_once(tmp_path: Path) -> None:
    path = tmp_path / "sconeflow.db"
    code = "import sys; from sconeflow import db; db.connect(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(6)]
    assert [p.wait(60) for p in procs] == [0] * 6


def test_thread_connections_one_per_thread_closed_when_its_thread_ends(tmp_path: Path) -> None:
    """A server's worker threads come and go: a connection is the same on every call of its
    thread, and one whose thread has ended is closed when the next thread opens one."""
    connections = db.ThreadConnections(tmp_path / "sconeflow.db")
    mine = connections.get()
    assert connections.get() is mine
    seen: list[sqlite3.Connection] = []

    def in_a_thread() -> None:
        seen.extend([connections.get(), connections.get()])
        seen[-1].execute("INSERT INTO training_jobs (name, status, created_at, "
                         "hyperparameters) VALUES (?, 'Completed', 'now', '{}')",
                         (f"job-{len(seen)}",))  # fmt: skip

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    ended = seen[0]
    assert seen[1] is ended and ended is not mine
    assert mine.execute("SELECT COUNT(*) FROM training_jobs").fetchone()[0] == 1  # fresh
    ended.execute("SELECT 1")  # still open: nothing has opened a connection since
    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        ended.execute("SELECT 1")
    connections.close()
    for conn in (mine, seen[2]):
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")
    assert connections.get() is not mine  # after close, a thread opens a new one
    connections.close()


def test_using_leaves_the_callers_connection_open_and_closes_its_own(tmp_path: Path) -> None:
    path = tmp_path / "ws" / "sconeflow.db"
    mine = db.connect(path)
    with db.using(path, mine) as conn:
        assert conn is mine
    assert mine.execute("SELECT 1").fetchone()[0] == 1  # still open
    with db.using(path) as opened:
        assert opened is not mine
        opened.execute("INSERT INTO training_jobs (name, status, created_at, hyperparameters) "
                       "VALUES ('j', 'Completed', 'now', '{}')")  # fmt: skip
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened.execute("SELECT 1")
    # Autocommit: the kept connection reads what the other one wrote, at once.
    assert mine.execute("SELECT name FROM training_jobs").fetchall()[0][0] == "j"
    mine.close()
