"""Progress reporting as a plain callable, so library code never imports a UI.

Library functions take `progress: ProgressFn` and call `progress(step, done, total)`;
`total=None` means unknown. The CLI passes a `RichProgress`; tests and scripts pass
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
    def __call__(self, step: str, done: float, total: float | None) -> None: ...


def no_progress(step: str, done: float, total: float | None) -> None:
    """The default: report nothing."""


class RichProgress:
    """One bar per step name on stderr; byte-sized steps (names ending in 'bytes)') show sizes."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not sys.stderr.isatty(),
        )
        self._bytes = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not sys.stderr.isatty(),
        )
        self._tasks: dict[str, tuple[Progress, TaskID]] = {}

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

    def __call__(self, step: str, done: float, total: float | None) -> None:
        if step not in self._tasks:
            bars = self._bytes if step.endswith("bytes)") else self._bars
            if bars is self._bytes:
                bars.start()
            self._tasks[step] = (bars, bars.add_task(step, total=total))
        bars, task = self._tasks[step]
        bars.update(task, completed=done, total=total)
