"""Intrinsic functions (`States.Format(...)` and friends) for JSONPath-mode payload templates.

`compile_intrinsic(text)` parses a call once (spec: "Intrinsic Functions") into a plain
function `(data, context) -> value`. The grammar is small (a call, literals, paths, nested
calls), so it is a hand-written recursive-descent parser with bounded depth and length;
nothing is ever passed to eval.

Runtime failures (wrong argument types, bad JSON, out-of-range index) raise
`StatesFailure("States.IntrinsicFailure", cause)`; the spec names that error for "the
attempt to invoke an Intrinsic Function failed". Argument-count errors are found earlier,
when the definition is parsed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable
from typing import Any

from .errors import INTRINSIC_FAILURE, StatesFailure
from .paths import PathNotFound, compile_path
from .variables import compile_variable_path, is_variable_path

MAX_EXPRESSION_LENGTH = 10_000  # characters of one intrinsic call
MAX_NESTING = 10  # calls inside calls
MAX_STRING_INPUT = 10_000  # AWS's limit for Hash/Base64 inputs (characters)
MAX_ARRAY_RANGE = 1000  # AWS's limit on States.ArrayRange's result length

Evaluator = Callable[[Any, Any], Any]  # (state data, context object) -> value

# Escaped braces inside a string literal must survive until States.Format has found its
# `{}` placeholders, so the lexer swaps them for two private-use characters.
_LBRACE, _RBRACE = "\ue000", "\ue001"
_UNESCAPE_BRACES = str.maketrans({_LBRACE: "{", _RBRACE: "}"})


class IntrinsicSyntaxError(ValueError):
    """The text is not a well-formed intrinsic function call."""


def is_intrinsic(text: str) -> bool:
    """Whether a `.$` value is an intrinsic call rather than a path."""
    return text.startswith("States.")


def compile_intrinsic(text: str) -> Evaluator:
    """Parse one intrinsic call; raises IntrinsicSyntaxError with the position of the problem."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise IntrinsicSyntaxError(
            f"intrinsic call is {len(text)} characters; the limit is {MAX_EXPRESSION_LENGTH}"
        )
    parser = _Parser(text)
    evaluator = parser.call(depth=0)
    parser.skip_space()
    if parser.pos != len(text):
        raise IntrinsicSyntaxError(
            f"unexpected text at position {parser.pos}: {text[parser.pos :]!r}"
        )
    return evaluator


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\n\r":
            self.pos += 1

    def call(self, depth: int) -> Evaluator:
        if depth > MAX_NESTING:
            raise IntrinsicSyntaxError(f"intrinsic calls nest deeper than {MAX_NESTING}")
        match = re.compile(r"States\.[A-Za-z0-9]+").match(self.text, self.pos)
        if match is None:
            raise IntrinsicSyntaxError(f"expected 'States.<Function>(' at position {self.pos}")
        name = match.group(0)
        self.pos = match.end()
        if name not in _FUNCTIONS:
            known = ", ".join(sorted(_FUNCTIONS))
            raise IntrinsicSyntaxError(f"unknown intrinsic function {name}; known: {known}")
        self.skip_space()
        self.expect("(")
        args: list[Evaluator] = []
        literal_format: str | None = None
        self.skip_space()
        if self.peek() != ")":
            while True:
                self.skip_space()
                if not args and name == "States.Format" and self.peek() == "'":
                    literal_format = self.string()
                    args.append(_const(literal_format))
                else:
                    args.append(self.argument(depth))
                self.skip_space()
                if self.peek() == ",":
                    self.pos += 1
                    continue
                break
        self.expect(")")
        func, low, high = _FUNCTIONS[name]
        if not low <= len(args) <= high:
            expected = str(low) if low == high else f"{low} to {high}" if high < 99 else f"{low}+"
            raise IntrinsicSyntaxError(f"{name} takes {expected} arguments, got {len(args)}")
        return _bind(name, func, args)

    def argument(self, depth: int) -> Evaluator:
        char = self.peek()
        if char == "'":
            return _const(self.string().translate(_UNESCAPE_BRACES))
        if char == "$":
            return self.path()
        if self.text.startswith("States.", self.pos):
            return self.call(depth + 1)
        match = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null").match(
            self.text, self.pos
        )
        if match is None:
            raise IntrinsicSyntaxError(f"unexpected argument at position {self.pos}")
        self.pos = match.end()
        return _const(json.loads(match.group(0)))

    def string(self) -> str:
        self.expect("'")
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                out.append({"{": _LBRACE, "}": _RBRACE}.get(nxt, nxt))
                self.pos += 2
                continue
            if char == "'":
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise IntrinsicSyntaxError("unterminated string literal")

    def path(self) -> Evaluator:
        # A path runs to the next top-level ',' or ')'; brackets and quotes may hide either.
        start, depth, quote = self.pos, 0, ""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if quote:
                if char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char in "[(":
                depth += 1
            elif char in "])":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0:
                break
            self.pos += 1
        text = self.text[start : self.pos].strip()
        context = text.startswith("$$")
        try:
            if is_variable_path(text):  # `$name...`: a workflow variable
                read = compile_variable_path(text)
                getter: Callable[[Any], Any] = lambda _: read()  # noqa: E731
            else:
                getter = compile_path(text[1:] if context else text)
        except ValueError as err:
            raise IntrinsicSyntaxError(str(err)) from err

        def evaluate(data: Any, ctx: Any) -> Any:
            try:
                return getter(ctx if context else data)
            except PathNotFound as err:
                raise StatesFailure(
                    INTRINSIC_FAILURE, f"The JSONPath '{text}' could not be found in the input"
                ) from err

        return evaluate

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise IntrinsicSyntaxError(f"expected {char!r} at position {self.pos}")
        self.pos += 1


def _const(value: Any) -> Evaluator:
    return lambda data, ctx: value


def _bind(name: str, func: Callable[..., Any], args: list[Evaluator]) -> Evaluator:
    def evaluate(data: Any, ctx: Any) -> Any:
        values = [arg(data, ctx) for arg in args]
        try:
            return func(*values)
        except StatesFailure:
            raise
        except (TypeError, ValueError, IndexError, KeyError, OverflowError) as err:
            raise StatesFailure(INTRINSIC_FAILURE, f"{name}: {err}") from err

    return evaluate


# --- the functions (AWS developer guide, "Intrinsic functions") --------------------------


def _format(template: Any, *values: Any) -> str:
    if not isinstance(template, str):
        raise TypeError(f"the template must be a string, got {_describe(template)}")
    parts = template.split("{}")
    if len(parts) - 1 != len(values):
        raise ValueError(
            f"the template has {len(parts) - 1} '{{}}' placeholders but {len(values)} values came"
        )
    out = [parts[0]]
    for value, part in zip(values, parts[1:], strict=True):
        out.append(_to_format_string(value))
        out.append(part)
    return "".join(out).translate(_UNESCAPE_BRACES)


def _to_format_string(value: Any) -> str:
    # AWS renders objects and arrays the way Java's toString does: {a=1, b=[x, y]}.
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_to_format_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_to_format_string(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _string_to_json(text: Any) -> Any:
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {_describe(text)}")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"the string is not valid JSON: {err}") from err


def _json_to_string(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _array(*values: Any) -> list[Any]:
    return list(values)


def _array_partition(array: Any, size: Any) -> list[list[Any]]:
    _need_array(array)
    chunk = _need_int(size, "chunk size")
    if chunk <= 0:
        raise ValueError(f"the chunk size must be a positive integer, got {size}")
    return [array[i : i + chunk] for i in range(0, len(array), chunk)]


def _array_contains(array: Any, value: Any) -> bool:
    _need_array(array)
    return any(_json_equal(item, value) for item in array)


def _array_range(first: Any, last: Any, step: Any) -> list[int]:
    start, end, inc = _need_int(first, "start"), _need_int(last, "end"), _need_int(step, "step")
    if inc == 0:
        raise ValueError("the step must not be 0")
    count = max(0, (end - start) // inc + 1)
    if count > MAX_ARRAY_RANGE:
        raise ValueError(f"the range has {count} items; the limit is {MAX_ARRAY_RANGE}")
    return list(range(start, end + (1 if inc > 0 else -1), inc))


def _array_get_item(array: Any, index: Any) -> Any:
    _need_array(array)
    i = _need_int(index, "index")
    if not 0 <= i < len(array):
        raise IndexError(f"index {i} is out of bounds for an array of {len(array)} items")
    return array[i]


def _array_length(array: Any) -> int:
    _need_array(array)
    return len(array)


def _array_unique(array: Any) -> list[Any]:
    _need_array(array)
    seen: set[str] = set()
    out = []
    for item in array:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _base64_encode(text: Any) -> str:
    _need_short_string(text)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _base64_decode(text: Any) -> str:
    _need_short_string(text)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError) as err:
        raise ValueError(f"the string is not valid base64 of UTF-8 text: {err}") from err


_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


def _hash(data: Any, algorithm: Any) -> str:
    _need_short_string(data)
    if algorithm not in _HASHES:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {', '.join(_HASHES)}")
    return hashlib.new(_HASHES[algorithm], data.encode("utf-8")).hexdigest()


def _json_merge(first: Any, second: Any, deep: Any) -> dict[str, Any]:
    if not isinstance(first, dict) or not isinstance(second, dict):
        raise TypeError("both values to merge must be JSON objects")
    if deep is not False:
        raise ValueError("only shallow merging is supported: pass false as the third argument")
    return {**first, **second}


def _math_random(start: Any, end: Any, seed: Any = None) -> int:
    low, high = _need_int(start, "start"), _need_int(end, "end")
    if low > high:
        raise ValueError(f"start {low} is greater than end {high}")
    rng = random.Random(_need_int(seed, "seed")) if seed is not None else random
    return rng.randint(low, high)


def _math_add(first: Any, second: Any) -> int:
    return _need_int(first, "first value") + _need_int(second, "second value")


def _string_split(text: Any, delimiters: Any) -> list[str]:
    if not isinstance(text, str) or not isinstance(delimiters, str):
        raise TypeError("both arguments of States.StringSplit must be strings")
    if not delimiters:
        return [text] if text else []
    pattern = "|".join(re.escape(c) for c in delimiters)
    return [part for part in re.split(pattern, text) if part]


def _uuid() -> str:
    return str(uuid.uuid4())


def _need_array(value: Any) -> None:
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {_describe(value)}")


def _need_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected an integer {what}, got {_describe(value)}")
    # AWS runs on Java: a float argument is rounded like Math.round (half up).
    return math.floor(value + 0.5) if isinstance(value, float) else value


def _need_short_string(value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    if len(value) > MAX_STRING_INPUT:
        raise ValueError(f"the string has {len(value)} characters; the limit is {MAX_STRING_INPUT}")


def _json_equal(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (_is_number(a) and _is_number(b) and a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    return json.dumps(value)[:80]


_MANY = 1 << 30
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "States.Format": (_format, 1, _MANY),
    "States.StringToJson": (_string_to_json, 1, 1),
    "States.JsonToString": (_json_to_string, 1, 1),
    "States.Array": (_array, 0, _MANY),
    "States.ArrayPartition": (_array_partition, 2, 2),
    "States.ArrayContains": (_array_contains, 2, 2),
    "States.ArrayRange": (_array_range, 3, 3),
    "States.ArrayGetItem": (_array_get_item, 2, 2),
    "States.ArrayLength": (_array_length, 1, 1),
    "States.ArrayUnique": (_array_unique, 1, 1),
    "States.Base64Encode": (_base64_encode, 1, 1),
    "States.Base64Decode": (_base64_decode, 1, 1),
    "States.Hash": (_hash, 2, 2),
    "States.JsonMerge": (_json_merge, 3, 3),
    "States.MathRandom": (_math_random, 2, 3),
    "States.MathAdd": (_math_add, 2, 2),
    "States.StringSplit": (_string_split, 2, 2),
    "States.UUID": (_uuid, 0, 0),
}
