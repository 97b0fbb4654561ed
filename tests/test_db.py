"""The workspace database opens safely from many threads and processes at once."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
