"""What every command module shares: the lazily built settings and output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sconeflow.config import Settings

# Piped output (scripts, logs, `| less`) gets a wide console instead of rich's 80-column
# fallback, so names, ARNs and paths are never cut short.
console = Console(width=None if sys.stdout.isatty() else 240)
# Logs and progress go to stderr, so stdout holds only results (and clean --json).
err_console = Console(stderr=True)


class Context:
    """ctx.obj: builds Settings once, on first use (so --help never needs valid settings)."""

    def __init__(self, build: Callable[[], Settings]) -> None:
        self._build = build
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._build()
        return self._settings


pass_context = click.make_pass_decorator(Context)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")  # wrap a long value, never cut it off
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
