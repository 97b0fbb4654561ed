"""Progress reporting as a plain callable, so library code never imports a UI.

Library functions take `progress: ProgressFn` and call `progress(step, done, total)`;
`total=None` means unknown; `detail` is a short line shown beside the bar (training shows
its epoch and accuracies there). The CLI passes a `RichProgress`; tests and scripts pass
nothing (`no_progress`).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressFn(Protocol):
    def __call__(self, step: str, done: float, total: float | None, detail: str = "") -> None: ...


def no_progress(step: str, done: float, total: float | None, detail: str = "") -> None:
    """The default: report nothing."""


class RichProgress:
    """One bar per step name on stderr; byte-sized steps (names ending in 'bytes)') show
    sizes. A step whose count goes back (a new phase under the same name) restarts its bar,
    so the time-left estimate is made from the new phase's pace."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            console=self.console,
            transient=False,
            disable=not sys.stderr.isatty(),
        )
        self._bytes = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            console=self.console,
            disable=not sys.stderr.isatty(),
        )
        self._tasks: dict[str, tuple[Progress, TaskID]] = {}
        self._done: dict[str, float] = {}

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bars.stop()
        self._bytes.stop()

    def __call__(self, step: str, done: float, total: float | None, detail: str = "") -> None:
        if step not in self._tasks:
            bars = self._bytes if step.endswith("bytes)") else self._bars
            if bars is self._bytes:
                bars.start()
            self._tasks[step] = (bars, bars.add_task(step, total=total, detail=detail))
        bars, task = self._tasks[step]
        if done < self._done.get(step, 0):
            bars.reset(task, total=total, detail=detail)
        bars.update(task, completed=done, total=total, detail=detail)
        self._done[step] = done
