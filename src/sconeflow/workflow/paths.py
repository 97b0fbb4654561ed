"""Paths of the States Language (JSONPath mode): compile once, evaluate many times.

Two kinds, as in the spec (section "Paths" and "Reference Paths"):

* a *reference path* (`$`, `$.a.b`, `$['a b'][0]`) names one node. Nearly every path in real
  definitions is one, and they run on every state, so they compile here to a tuple of keys
  and indexes walked by a tiny loop (about 0.3 us per step, no allocation).
* any other *path* (`$..x`, `$.a[*].b`, `$[?(@.n > 1)]`, slices) goes to `jsonpath-ng`
  (its `ext` parser, for filters), compiled once and cached. Re-implementing JSONPath's
  full grammar here would duplicate a maintained library; routing only the rare complex
  paths through it keeps the hot path fast (jsonpath-ng takes 20-50 us per find).

Values are never mutated in place: `set_path` copies the containers it walks through, so
one state's output can be shared by the next state's input without deep copies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from .data import json_type

MAX_PATH_LENGTH = 2048  # characters; longer paths are rejected when the definition is parsed

Step = str | int
Getter = Callable[[Any], Any]

# One token of a reference path; anything else (wildcards, `..`, filters, slices) is not one.
_TOKEN = re.compile(
    r"""\.(?P<name>[^.\[\]*'"@?()$\s][^.\[\]*'"@?()]*)"""
    r"""|\['(?P<sq>(?:[^'\\]|\\.)*)'\]"""
    r"""|\["(?P<dq>(?:[^"\\]|\\.)*)"\]"""
    r"""|\[(?P<idx>\d+)\]"""
)


class PathNotFound(Exception):
    """A path selected nothing in the data it was applied to."""

    def __init__(self, path: str, data: Any) -> None:
        super().__init__(path)
        self.path = path
        self.data = data


def parse_reference_path(path: str) -> tuple[Step, ...] | None:
    """Steps of a reference path (spec: "Reference Paths"), or None if `path` is not one."""
    if not path.startswith("$") or path.startswith("$$"):
        return None
    steps: list[Step] = []
    pos = 1
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            return None
        if match.group("name") is not None:
            steps.append(match.group("name"))
        elif match.group("sq") is not None:
            steps.append(_unescape(match.group("sq")))
        elif match.group("dq") is not None:
            steps.append(_unescape(match.group("dq")))
        else:
            steps.append(int(match.group("idx")))
        pos = match.end()
    return tuple(steps)


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)


def _unescape(text: str) -> str:
    """A bracket-notation key as AWS's JSONPath (Jayway) reads it: `\\'`, `\\"` and `\\\\`
    stand for the character, `\\n` `\\t` `\\r` `\\b` `\\f` and `\\uXXXX` for control and
    Unicode characters, and any other escaped character for itself."""
    if "\\" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) == 5:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(one, text)


def bracket_notation(steps: tuple[Step, ...]) -> str:
    """`$['a']['b'][0]`, the form AWS prints in "No results for path" causes."""
    return "$" + "".join(f"[{s}]" if isinstance(s, int) else f"['{s}']" for s in steps)


def _walk(path: str, steps: tuple[Step, ...]) -> Getter:
    if not steps:
        return _identity
    if len(steps) == 1 and isinstance(steps[0], str):
        key = steps[0]

        def get_one(value: Any) -> Any:
            # `type(...) is dict`: JSON objects are plain dicts, and this is the hot path.
            if type(value) is dict and key in value:
                return value[key]
            raise PathNotFound(path, value)

        return get_one

    def get(value: Any) -> Any:
        node = value
        for step in steps:
            if type(step) is str:
                if type(node) is not dict or step not in node:
                    raise PathNotFound(path, value)
            elif type(node) is not list or step >= len(node):  # type: ignore[operator]
                raise PathNotFound(path, value)
            node = node[step]
        return node

    return get


def _identity(value: Any) -> Any:
    return value


@lru_cache(maxsize=4096)
def compile_path(path: str) -> Getter:
    """A function that applies the path (spec: "Paths") to a JSON value.

    Reference paths return the node or raise PathNotFound. Other paths follow AWS: a path
    ending in a literal index returns that element, other multi-match paths return a list
    (empty when a wildcard or slice matches nothing), and no match at all raises.
    """
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"path is {len(path)} characters long; the limit is {MAX_PATH_LENGTH}")
    steps = parse_reference_path(path)
    if steps is not None:
        return _walk(path, steps)
    return _jsonpath_getter(path)


def _jsonpath_getter(path: str) -> Getter:
    # Imported here: only definitions with non-reference paths pay for jsonpath-ng's parser.
    from jsonpath_ng import Index
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.ext import parse

    if not path.startswith("$") or path.startswith("$$"):
        raise ValueError(f"path {path!r} must start with '$'")
    try:
        expr = parse(path)
    except (JsonPathLexerError, JsonPathParserError, Exception) as err:
        raise ValueError(f"{path!r} is not a valid JSONPath: {err}") from err
    wildcard_or_slice = re.search(r"\[\*\]|\[-?\d*:-?\d*\]|\.\*", path) is not None
    ends_with_index = re.search(r"\[\d+\]$", path) is not None

    def get(value: Any) -> Any:
        try:
            matches = expr.find(value)
        except Exception as err:  # jsonpath-ng raises assorted errors on odd data
            raise PathNotFound(path, value) from err
        if not matches:
            if wildcard_or_slice:
                return []
            raise PathNotFound(path, value)
        first = matches[0]
        if (
            len(matches) > 1
            or isinstance(first.path, Index)
            or (first.context is not None and isinstance(first.context.path, Index))
        ):
            values = [m.value for m in matches]
            # AWS unpacks a path that ends in one literal index into that element.
            if ends_with_index and len(values) == 1:
                return values[0]
            return values
        return first.value

    return get


def check_path(path: Any, *, reference: bool = False) -> str | None:
    """Why `path` is not a valid (reference) path, or None if it is."""
    if not isinstance(path, str):
        return f"expected a path string such as '$.field', got {type(path).__name__}"
    if len(path) > MAX_PATH_LENGTH:
        return f"path is {len(path)} characters; the limit is {MAX_PATH_LENGTH}"
    body = path[1:] if path.startswith("$$") else path
    if reference:
        if parse_reference_path(body) is None:
            return f"{path!r} is not a reference path: use '$', '$.a.b', \"$['a b']\" or '$.a[0]'"
        return None
    try:
        compile_path(body)
    except ValueError as err:
        return str(err)
    return None


def set_path(root: Any, steps: tuple[Step, ...], value: Any) -> Any:
    """`root` with `value` placed at the reference path (spec: "ResultPath").

    Missing intermediate objects are created; the containers along the path are copied,
    the rest is shared. Raises ValueError when a step meets a non-object (or an index
    meets a non-array or runs past its end): AWS's States.ResultPathMatchFailure.
    """
    if not steps:
        return value
    step = steps[0]
    if isinstance(step, str):
        if root is None:
            root = {}
        if type(root) is not dict:
            raise ValueError(f"cannot set field {step!r} on a {json_type(root)}")
        copy = dict(root)
        copy[step] = set_path(root.get(step), steps[1:], value)
        return copy
    if type(root) is not list or step >= len(root):
        raise ValueError(f"cannot set index [{step}] on a {json_type(root)}")
    items = list(root)
    items[step] = set_path(root[step], steps[1:], value)
    return items
