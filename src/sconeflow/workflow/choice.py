"""Choice rules compiled to predicates (spec: "Choice State", "Choice Rules").

A comparison whose variable has the wrong type is false, as in AWS (a string is never
NumericEquals anything). A variable that is absent is a `States.Runtime` error, except
for `IsPresent`, which exists to test exactly that.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
from collections.abc import Callable
from typing import Any

from .errors import RUNTIME, StatesFailure
from .paths import PathNotFound, check_path, compile_path
from .variables import compile_variable_path, is_variable_path

Predicate = Callable[[Any, Any], bool]  # (state input, context object) -> matched?
MAX_RULE_DEPTH = 32  # nesting of And/Or/Not

_COMPARE = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}
_KINDS = ("String", "Numeric", "Boolean", "Timestamp")
_TYPE_TESTS = ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")
COMPARISON_OPERATORS = frozenset(
    [f"{kind}{op}" for kind in _KINDS for op in _COMPARE if kind != "Boolean" or op == "Equals"]
    + [
        f"{kind}{op}Path"
        for kind in _KINDS
        for op in _COMPARE
        if kind != "Boolean" or op == "Equals"
    ]
    + ["StringMatches", *_TYPE_TESTS]
)
_RULE_FIELDS = COMPARISON_OPERATORS | {"Variable", "Next", "Comment", "And", "Or", "Not"}

_INVALID_VALUE = "The choice state's condition path references an invalid value."  # AWS's words
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def parse_timestamp(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp with an offset (what AWS accepts), or None."""
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def compile_rule(rule: Any, *, top_level: bool, depth: int = 0) -> Predicate:
    """Compile one Choice rule; raises ValueError saying what is wrong and how to fix it."""
    if depth > MAX_RULE_DEPTH:
        raise ValueError(f"Choice rules nest deeper than {MAX_RULE_DEPTH} levels")
    if not isinstance(rule, dict):
        raise ValueError(f"a Choice rule must be an object, got {json.dumps(rule)[:60]}")
    unknown = set(rule) - _RULE_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} in Choice rule; remove them")
    if top_level and not isinstance(rule.get("Next"), str):
        raise ValueError("every top-level Choice rule needs a 'Next' state name")
    if not top_level and "Next" in rule:
        raise ValueError("'Next' is only allowed on top-level Choice rules, not inside And/Or/Not")
    boolean = [k for k in ("And", "Or", "Not") if k in rule]
    comparisons = [k for k in rule if k in COMPARISON_OPERATORS]
    if len(boolean) + len(comparisons) != 1:
        raise ValueError(
            "a Choice rule needs exactly one operator (e.g. 'StringEquals', 'And'), "
            f"found {boolean + comparisons or 'none'}"
        )
    if boolean:
        return _compile_boolean(boolean[0], rule, depth)
    if "Variable" not in rule:
        raise ValueError(f"the {comparisons[0]} rule needs a 'Variable' path, e.g. \"$.status\"")
    return _compile_comparison(comparisons[0], rule)


def _compile_boolean(op: str, rule: dict[str, Any], depth: int) -> Predicate:
    if "Variable" in rule:
        raise ValueError(f"a '{op}' rule has no 'Variable'; put it on the nested rules")
    if op == "Not":
        inner = compile_rule(rule["Not"], top_level=False, depth=depth + 1)
        return lambda data, ctx: not inner(data, ctx)
    subs = rule[op]
    if not isinstance(subs, list) or not subs:
        raise ValueError(f"'{op}' needs a non-empty array of rules")
    preds = [compile_rule(sub, top_level=False, depth=depth + 1) for sub in subs]
    if op == "And":
        return lambda data, ctx: all(p(data, ctx) for p in preds)
    return lambda data, ctx: any(p(data, ctx) for p in preds)


def _source(path: str) -> tuple[Callable[[Any], Any], bool]:
    if is_variable_path(path):  # `$name...`: a workflow variable
        read = compile_variable_path(path)
        return (lambda _: read()), False
    problem = check_path(path)
    if problem:
        raise ValueError(problem)
    context = path.startswith("$$")
    return compile_path(path[1:] if context else path), context


def _compile_comparison(op: str, rule: dict[str, Any]) -> Predicate:
    variable = rule["Variable"]
    if not isinstance(variable, str):
        raise ValueError("'Variable' must be a path string such as \"$.status\"")
    get_var, var_in_ctx = _source(variable)
    expected = rule[op]

    def read_variable(data: Any, ctx: Any) -> Any:
        try:
            return get_var(ctx if var_in_ctx else data)
        except PathNotFound as err:
            raise StatesFailure(
                RUNTIME,
                f"Invalid path '{variable}': {_INVALID_VALUE}",
            ) from err

    if op in _TYPE_TESTS:
        if not isinstance(expected, bool):
            raise ValueError(f"'{op}' takes true or false, got {json.dumps(expected)}")
        return _compile_type_test(op, expected, get_var, var_in_ctx, read_variable)
    if op == "StringMatches":
        if not isinstance(expected, str):
            raise ValueError("'StringMatches' takes a pattern string such as \"log-*.txt\"")
        pattern = compile_string_pattern(expected)
        return lambda data, ctx: (
            _is_str(v := read_variable(data, ctx)) and pattern.fullmatch(v) is not None
        )

    kind = next(k for k in _KINDS if op.startswith(k))
    comparison = op[len(kind) :]
    by_path = comparison.endswith("Path")
    compare = _COMPARE[comparison[:-4] if by_path else comparison]
    accepts, convert = _KIND_RULES[kind]

    if by_path:
        if not isinstance(expected, str):
            raise ValueError(f"'{op}' takes a path string such as \"$.limit\"")
        get_other, other_in_ctx = _source(expected)

        def predicate_path(data: Any, ctx: Any) -> bool:
            value = read_variable(data, ctx)
            try:
                other = get_other(ctx if other_in_ctx else data)
            except PathNotFound as err:
                raise StatesFailure(
                    RUNTIME,
                    f"Invalid path '{expected}': {_INVALID_VALUE}",
                ) from err
            if not (accepts(value) and accepts(other)):
                return False
            return bool(compare(convert(value), convert(other)))

        return predicate_path

    if not accepts(expected):
        raise ValueError(f"'{op}' takes a {kind.lower()} value, got {json.dumps(expected)}")
    target = convert(expected)

    def predicate(data: Any, ctx: Any) -> bool:
        value = read_variable(data, ctx)
        return accepts(value) and bool(compare(convert(value), target))

    return predicate


def _compile_type_test(
    op: str,
    expected: bool,
    get_var: Callable[[Any], Any],
    var_in_ctx: bool,
    read_variable: Callable[[Any, Any], Any],
) -> Predicate:
    if op == "IsPresent":

        def is_present(data: Any, ctx: Any) -> bool:
            try:
                get_var(ctx if var_in_ctx else data)
            except PathNotFound:
                return not expected
            return expected

        return is_present
    test: Callable[[Any], bool] = {
        "IsNull": lambda v: v is None,
        "IsNumeric": _is_number,
        "IsString": _is_str,
        "IsBoolean": lambda v: isinstance(v, bool),
        "IsTimestamp": lambda v: parse_timestamp(v) is not None,
    }[op]
    return lambda data, ctx: test(read_variable(data, ctx)) is expected


def compile_string_pattern(pattern: str) -> re.Pattern[str]:
    """StringMatches: `*` matches any run of characters; `\\*` and `\\\\` are literals."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if char == "*" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_KIND_RULES: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    "String": (_is_str, lambda v: v),
    "Numeric": (_is_number, lambda v: v),
    "Boolean": (lambda v: isinstance(v, bool), lambda v: v),
    "Timestamp": (lambda v: parse_timestamp(v) is not None, parse_timestamp),
}
