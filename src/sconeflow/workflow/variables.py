"""Workflow variables (AWS developer guide: "Passing data between states with variables").

* `Assign` works in Pass, Task, Map, Parallel, Choice (on the state and on each rule) and Wait
  states and in Catch clauses, in both query languages; a variable is read as `$name` (in
  JSONPath mode also `$name.field[0]` wherever a path is allowed).
* A state's assignments take effect when the state ends, after its output is computed: every
  expression of the state (its Output, each value of its Assign) reads the values the
  variables had when the state was entered. So `{"x": 1, "y": "{% $x %}"}` gives `y` the old x.
* Scopes: the top-level states share one. Each Parallel branch and each Map iteration runs in
  a scope of its own that reads the outer ones; what it assigns is gone when it ends (a
  branch hands data back through its output). An inner scope cannot assign a name that an
  outer scope holds.
* Size limits, as AWS's quotas: one variable's JSON at most 256 KiB, one Assign field's at
  most 256 KiB in all, and 10 MiB for the variables an execution holds at once; past them
  the state fails with States.DataLimitExceeded.

JSONPath-mode paths and templates are compiled into plain functions of (data, context)
long before any scope exists, so the scope of the state being run is handed to them through
`CURRENT`, a context variable set by the state loop (`run.run_states`) for its sub-machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from .data import dumps
from .errors import DATA_LIMIT_EXCEEDED, RUNTIME, StatesFailure
from .jsonata import UNDEFINED
from .paths import PathNotFound, compile_path

MAX_VARIABLE_BYTES = 262_144
MAX_ASSIGN_BYTES = 262_144
MAX_TOTAL_BYTES = 10_485_760
RESERVED = "states"

MAX_NAME_CHARS = 80


def check_name(name: str) -> str | None:
    """Why `name` cannot be a variable name, or None if it can.

    AWS: a Unicode identifier (UAX #31: an ID_Start character, then ID_Continue characters),
    at most 80 characters, "similar to rules for JavaScript". Python's identifiers follow
    the same annex (XID_Start or '_', then XID_Continue), so `str.isidentifier` decides.
    """
    if name == RESERVED:
        return "'states' is reserved (the $states variable of JSONata states); choose another name"
    if not name.isidentifier() or len(name) > MAX_NAME_CHARS:
        return (
            f"{name!r} is not a valid variable name: use a letter or '_' followed by letters, "
            "digits or '_' (at most 80 characters)"
        )
    return None


class _Store:
    """What every scope of one execution shares: the bytes its variables hold."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lock = threading.Lock()


class Scope:
    """The variables one line of states (top level, a branch, a Map iteration) can see."""

    __slots__ = ("parent", "sizes", "store", "values")

    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self.values: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}
        self.store: _Store = parent.store if parent is not None else _Store()

    def lookup(self, name: str) -> Any:
        """The value of `name` here or in an outer scope, or UNDEFINED."""
        scope: Scope | None = self
        while scope is not None:
            values = scope.values
            if name in values:
                return values[name]
            scope = scope.parent
        return UNDEFINED

    def assign(self, values: dict[str, Any], state: str) -> dict[str, str]:
        """Bind `values` (all computed from the values at state entry); returns each one's
        JSON text, for the StateExited event's `assignedVariables`."""
        texts = {name: dumps(value) for name, value in values.items()}
        sizes = {name: len(text.encode("utf-8")) for name, text in texts.items()}
        for name, size in sizes.items():
            if size > MAX_VARIABLE_BYTES:
                raise StatesFailure(
                    DATA_LIMIT_EXCEEDED,
                    f"The state '{state}' assigned variable '{name}' a value of {size} bytes; "
                    f"a variable holds at most {MAX_VARIABLE_BYTES} bytes",
                )
        if sum(sizes.values()) > MAX_ASSIGN_BYTES:
            raise StatesFailure(
                DATA_LIMIT_EXCEEDED,
                f"The Assign field of state '{state}' assigns {sum(sizes.values())} bytes; "
                f"the limit for one Assign field is {MAX_ASSIGN_BYTES} bytes",
            )
        outer = self.parent
        for name in values:
            if outer is not None and outer.lookup(name) is not UNDEFINED:
                raise StatesFailure(
                    RUNTIME,
                    f"The state '{state}' cannot assign variable '{name}': it belongs to an "
                    "outer scope, which a Parallel branch or Map iteration can read but not "
                    "assign; give the inner variable another name",
                )
        growth = sum(sizes.values()) - sum(self.sizes.get(name, 0) for name in values)
        with self.store.lock:
            if self.store.bytes + growth > MAX_TOTAL_BYTES:
                raise StatesFailure(
                    DATA_LIMIT_EXCEEDED,
                    f"The state '{state}' would make the execution's variables exceed "
                    f"{MAX_TOTAL_BYTES} bytes",
                )
            self.store.bytes += growth
        self.values.update(values)
        self.sizes.update(sizes)
        return texts

    def close(self) -> None:
        """An inner scope ends: its variables no longer count against the execution."""
        with self.store.lock:
            self.store.bytes -= sum(self.sizes.values())
        self.values, self.sizes = {}, {}


CURRENT: ContextVar[Scope | None] = ContextVar("sconeflow_workflow_scope", default=None)


def current_lookup(name: str) -> Any:
    """Look a variable up in the scope of the state being run."""
    scope = CURRENT.get()
    return UNDEFINED if scope is None else scope.lookup(name)


def _split_variable_path(text: str) -> tuple[str, str] | None:
    """`$name.a[0]` -> ("name", ".a[0]"): the longest identifier after `$`, then the rest."""
    if len(text) < 2 or text[0] != "$" or not text[1].isidentifier():
        return None
    end = 2
    while end < len(text) and text[1 : end + 1].isidentifier():
        end += 1
    return text[1:end], text[end:]


def is_variable_path(text: str) -> bool:
    """Whether a JSONPath-mode path reads a variable (`$name...`) rather than `$` or `$$`."""
    return _split_variable_path(text) is not None


def compile_variable_path(text: str) -> Callable[[], Any]:
    """`$name` or `$name.a[0]`: a function returning the value from the current scope.

    Raises ValueError for a malformed path; the returned function raises PathNotFound for an
    unknown variable or a path that selects nothing (callers turn it into their AWS cause).
    """
    split = _split_variable_path(text)
    if split is None:
        raise ValueError(f"{text!r} is not a variable reference such as '$name' or '$name.a'")
    name, rest = split
    getter = compile_path("$" + rest) if rest else None

    def read() -> Any:
        value = current_lookup(name)
        if value is UNDEFINED:
            raise PathNotFound(text, None)
        return value if getter is None else getter(value)

    return read
