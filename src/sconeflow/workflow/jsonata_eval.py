"""The JSONata evaluator behind `jsonata.compile_expression`: one compiled `Expression` per
`{% %}` field value, and the functions Step Functions adds to JSONata. Only `jsonata.py`
imports this module, and only when a definition has an expression (why: `jsonata.py`).

The evaluator is `jsonata-python` (PyPI), a pure-Python port of the reference jsonata-js
(by way of Dashjoin's jsonata-java). It was chosen because it is the one maintained pure-Python
implementation of JSONata 2.x: its CI runs the upstream jsonata-js test suite (every group,
with a short overrides file), it has no dependencies, and it exposes the hooks this module
needs (bindings per evaluation, per-step callbacks for bounds, a pluggable regex engine).
Measured on the project's 2-core machine: 30-80 us to evaluate a typical field expression,
100-200 us to parse one (done once per definition). The other candidates wrap a JavaScript
engine or a native library. Two costs are cut here: a plain path such as
`$states.input.image` or `$items.name` is walked directly (the common case, ~1 us), and only
the variables an expression names are bound.

Hostile expressions are bounded: evaluation depth (`MAX_DEPTH`), wall time (`MAX_SECONDS`),
the size of any value built (`MAX_ITEMS` array items, `MAX_CHARS` string characters), `$range`
and `$pad` before they allocate, and regular expressions, which run on the `regex` module with
a timeout (a pathological pattern cannot hold the CPU). `$eval` is not available (AWS: "use
$parse instead"); calling it fails like calling any undefined function.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
import uuid
from typing import Any

import jsonata as jsonata_lib
import regex
from jsonata import jexception
from jsonata.regex_engine import RegexFlags
from jsonata.utils import Utils

from .errors import StatesFailure
from .jsonata import (
    MAX_CHARS,
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_ITEMS,
    MAX_SECONDS,
    QUERY_EVALUATION_ERROR,
    REGEX_TIMEOUT_SECONDS,
    UNDEFINED,
    Lookup,
    States,
)

_SIMPLE_PATH = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
# `$name`: the variables an expression may read. A name runs, as JSONata's tokenizer reads
# it, up to whitespace or an operator character, so a Unicode name (AWS allows any Unicode
# identifier: "Variable name syntax") is read whole. Names inside string or regex literals
# are collected too: binding a variable the expression does not read is harmless, while
# telling a regex literal from a division (`$a / $b / 2`) takes the parser.
_REFERENCE = re.compile(r"\$([^\s.\[\]{}(),@#;:?+\-*/%|=<>^&!~`'\"$]+)")
_RESULT = re.compile(r"\$states\.result(?![\w$])")
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384"}
_HASHES["SHA-512"] = "sha512"


class _Bounds:
    """Per-evaluation depth, time and size checks, run by the evaluator around every step."""

    __slots__ = ("deadline", "depth")

    def __init__(self) -> None:
        self.depth = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def enter(self, expr: Any, input: Any, env: Any) -> None:
        if env.is_parallel_call:
            return
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"Stack overflow error: the expression nests deeper than {MAX_DEPTH}")
        if time.monotonic() > self.deadline:
            raise _Refused(f"Evaluation timeout after {MAX_SECONDS:g} seconds")

    def exit(self, expr: Any, input: Any, env: Any, result: Any) -> None:
        if env.is_parallel_call:
            return
        self.depth -= 1
        if type(result) is str:
            if len(result) > MAX_CHARS:
                raise _Refused("Expression evaluation memory limit exceeded")
        elif (
            isinstance(result, list)
            and not isinstance(result, Utils.RangeList)  # lazy: [1..n] holds no items
            and len(result) > MAX_ITEMS
        ):
            raise _Refused("Expression evaluation memory limit exceeded")


class _Refused(Exception):
    """An evaluation stopped by a bound."""


class _TimedPattern:
    """A compiled `regex` pattern whose every match runs under REGEX_TIMEOUT_SECONDS."""

    def __init__(self, pattern: Any) -> None:
        self.pattern = pattern

    def search(self, string: str) -> Any:
        return self.pattern.search(string, timeout=REGEX_TIMEOUT_SECONDS)

    def finditer(self, string: str) -> Any:
        return self.pattern.finditer(string, timeout=REGEX_TIMEOUT_SECONDS)

    def sub(self, repl: Any, string: str, count: int = 0) -> str:
        return str(self.pattern.sub(repl, string, count=count, timeout=REGEX_TIMEOUT_SECONDS))

    def split(self, string: str, maxsplit: int = 0) -> list[str]:
        return list(self.pattern.split(string, maxsplit=maxsplit, timeout=REGEX_TIMEOUT_SECONDS))


def _regex_engine(pattern: str, flags: RegexFlags) -> _TimedPattern:
    options = (regex.IGNORECASE if flags.case_insensitive else 0) | (
        regex.MULTILINE if flags.multiline else 0
    )
    return _TimedPattern(regex.compile(pattern, options))


class Expression:
    """One compiled expression, evaluated against `$states` and the variables in scope."""

    __slots__ = ("compiled", "fast", "field", "refs", "text")

    def __init__(
        self, text: str, field: str, *, in_catch: bool = False, with_result: bool = False
    ) -> None:
        self.text = text
        self.field = field
        if len(text) > MAX_EXPRESSION_CHARS:
            raise ValueError(f"the expression is {len(text)} characters; the limit is 65536")
        try:
            self.compiled = jsonata_lib.Jsonata(text, _regex_engine)
        except jexception.JException as err:
            raise ValueError(f"INVALID_JSONATA_EXPRESSION: {err} (in '{text}')") from err
        except (RecursionError, regex.error) as err:
            raise ValueError(f"INVALID_JSONATA_EXPRESSION: {err} (in '{text}')") from err
        self.compiled.set_output_convert_nulls(False)
        self.compiled.set_validate_input(False)
        _register_aws_functions(self.compiled)
        _check_top_level(self.compiled.ast, text)
        if not in_catch and "$states.errorOutput" in text:
            raise ValueError(
                "UNSUPPORTED_JSONATA_EXPRESSION: $states.errorOutput exists only in a Catch's "
                "Output and Assign; read the error there"
            )
        if not with_result and _RESULT.search(text):
            # AWS: "Attempting to access $states.result or $states.errorOutput in fields and
            # states where they are not accessible will be caught at creation".
            raise ValueError(
                "UNSUPPORTED_JSONATA_EXPRESSION: $states.result exists only in the Output and "
                "Assign of a Task, Map or Parallel state; read the input as $states.input"
            )
        self.refs = tuple(sorted({m for m in _REFERENCE.findall(text) if m}))
        simple = _SIMPLE_PATH.fullmatch(text)
        self.fast = (simple.group(1), tuple(simple.group(2).split(".")[1:])) if simple else None

    def evaluate(self, states: States, lookup: Lookup) -> Any:
        """The expression's JSON value; raises States.QueryEvaluationError."""
        value = self.value(states, lookup)
        if value is UNDEFINED:
            raise self.failure(
                f"The JSONata expression '{self.text}' specified for the field "
                f"'{self.field}' returned nothing (undefined)."
            )
        return value

    def failure(self, cause: str) -> StatesFailure:
        """A States.QueryEvaluationError for this expression, with its field as location."""
        failure = StatesFailure(QUERY_EVALUATION_ERROR, cause)
        failure.location = self.field  # type: ignore[attr-defined]
        return failure

    def value(self, states: States, lookup: Lookup) -> Any:
        """Like `evaluate`, but returns UNDEFINED instead of failing on "nothing"."""
        if self.fast is not None:
            root, keys = self.fast
            node = states if root == "states" else lookup(root)
            if node is UNDEFINED:
                return UNDEFINED
            for key in keys:
                if type(node) is dict:
                    if key not in node:
                        return UNDEFINED
                    node = node[key]
                elif type(node) is list:
                    break  # JSONata maps a path over an array: the evaluator's job
                else:
                    return UNDEFINED
            else:
                return node
        return self._evaluate(states, lookup)

    def _evaluate(self, states: States, lookup: Lookup) -> Any:
        bounds = _Bounds()
        bindings: dict[str, Any] = {
            "__evaluate_entry": bounds.enter,
            "__evaluate_exit": bounds.exit,
            "states": states,
        }
        for name in self.refs:
            if name != "states":
                value = lookup(name)
                if value is not UNDEFINED:
                    bindings[name] = Utils.NULL_VALUE if value is None else value
        try:
            result = self.compiled.evaluate(None, bindings)
        except _Refused as err:
            raise self._threw(str(err)) from err
        except jexception.JException as err:
            raise self._threw(f"{err.error}: {_message(err)}") from err
        except RecursionError as err:
            raise self._threw(f"Stack overflow error: {err}") from err
        except TimeoutError as err:  # regex's timeout
            raise self._threw(f"Regular expression timed out: {err}") from err
        except (ArithmeticError, ValueError, TypeError, OverflowError) as err:
            raise self._threw(f"{type(err).__name__}: {err}") from err
        if result is None:
            return UNDEFINED
        return _to_json(result, self)

    def _threw(self, message: str) -> StatesFailure:
        return self.failure(
            f"The JSONata expression '{self.text}' specified for the field '{self.field}' "
            f"threw an error during evaluation. {message}"
        )


def _message(err: jexception.JException) -> str:
    text = str(err)
    return text.split(": ", 1)[1] if text.startswith(f"{err.error}: ") else text


def _to_json(value: Any, expression: Expression) -> Any:
    """An evaluator result as plain JSON: lists, dicts, None for null, ints where integral."""
    kind = type(value)
    if kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if value is Utils.NULL_VALUE:
        return None
    if isinstance(value, dict):
        return {str(k): _to_json(v, expression) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v, expression) for v in value]
    raise expression.failure(
        f"The JSONata expression '{expression.text}' specified for the field "
        f"'{expression.field}' returned an unsupported result type."
    )


def _check_top_level(node: Any, text: str) -> None:
    """Refuse what CreateStateMachine refuses: reading the (absent) top-level context."""
    if node is None or not hasattr(node, "type"):
        return
    kind = node.type
    if kind == "variable" and node.value in ("$", ""):  # `$$` and `$`: no context item
        name = "$" + node.value
        raise ValueError(
            f"UNSUPPORTED_JSONATA_EXPRESSION: Reference to '{name}' is not supported; read the "
            "state input as $states.input and the context object as $states.context"
        )
    if kind == "name":
        raise ValueError(
            f"UNSUPPORTED_JSONATA_EXPRESSION: Reference to '{node.value}' at the top level is "
            f"not supported; read the input as $states.input.{node.value} or a variable as "
            f"${node.value}"
        )
    if kind == "path":
        _check_top_level(node.steps[0], text)  # later steps read the previous step's value
        return
    for attr in ("lhs", "rhs", "expression", "condition", "then", "_else", "body", "procedure"):
        _check_top_level(getattr(node, attr, None), text)
    for attr in ("arguments", "expressions"):
        for child in getattr(node, attr, None) or ():
            _check_top_level(child, text)
    for pair in getattr(node, "lhs_object", None) or ():
        for child in pair:
            _check_top_level(child, text)


# --- the functions Step Functions adds (AWS: "JSONata functions provided by Step Functions")


def _whole(value: Any) -> int:
    return int(value)  # AWS truncates a non-integer argument towards zero


def _partition(array: Any, size: Any) -> Any:
    if not isinstance(array, list) or not array or _whole(size) <= 0:
        return None
    step = _whole(size)
    return Utils.JList([Utils.JList(array[i : i + step]) for i in range(0, len(array), step)])


def _range(start: Any, end: Any, step: Any = None) -> Any:
    if step is None or _whole(step) == 0:
        return None
    first, last, by = _whole(start), _whole(end), _whole(step)
    if (last - first) * by < 0:
        return None
    count = (last - first) // by + 1
    if count > MAX_ITEMS:
        raise _Refused("Expression evaluation memory limit exceeded")
    values = list(range(first, last + (1 if by > 0 else -1), by))
    return values[0] if len(values) == 1 else Utils.JList(values)


def _hash(data: Any, algorithm: Any = None) -> Any:
    if algorithm is None:
        return None
    name = _HASHES.get(algorithm)
    if name is None:
        raise jexception.JException("D3137", -1, f"$hash: algorithm must be one of {_HASHES}")
    return hashlib.new(name, str(data).encode("utf-8")).hexdigest()


_LOCAL = threading.local()


def _random(seed: Any = None) -> float:
    if seed is not None:
        return random.Random(_whole(seed)).random()
    rng = getattr(_LOCAL, "rng", None)
    if rng is None:
        rng = _LOCAL.rng = random.Random()
    return float(rng.random())


def _uuid() -> str:
    return str(uuid.uuid4())


def _parse(text: Any) -> Any:
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError) as err:
        raise jexception.JException("D3140", -1, f"$parse: not a JSON string: {err}") from err
    return Utils.NULL_VALUE if value is None else value


def _pad(string: Any, width: Any, char: Any = None) -> Any:
    if width is not None and abs(_whole(width)) > MAX_CHARS:
        raise _Refused("Expression evaluation memory limit exceeded")
    return jsonata_lib.Functions.pad(string, width, char)


_AWS_FUNCTIONS = {
    "partition": (_partition, "<an:a>"),
    "range": (_range, "<nnn?:a>"),
    "hash": (_hash, "<ss?:s>"),
    "random": (_random, "<n?:n>"),
    "uuid": (_uuid, "<:s>"),
    "parse": (_parse, "<s:x>"),
    "pad": (_pad, "<s-ns?:s>"),
}


def _register_aws_functions(compiled: Any) -> None:
    for name, (function, signature) in _AWS_FUNCTIONS.items():
        compiled.register_function(
            name, jsonata_lib.Jsonata.JFunction(jsonata_lib.Jsonata.JLambda(function), signature)
        )
    compiled.register_function("eval", None)  # AWS: "$eval is not available, use $parse"
