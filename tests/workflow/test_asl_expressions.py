"""Paths, intrinsic functions and Choice patterns, unit by unit."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from sconeflow.workflow.choice import compile_rule, compile_string_pattern, parse_timestamp
from sconeflow.workflow.errors import StatesFailure
from sconeflow.workflow.intrinsics import IntrinsicSyntaxError, compile_intrinsic
from sconeflow.workflow.paths import PathNotFound, compile_path, parse_reference_path, set_path

DATA = {"a": {"b": [1, {"c": "deep"}]}, "x y": 1, "list": [{"n": 1}, {"n": 5}]}


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.a.b[1].c", ("a", "b", 1, "c")),
        ("$['x y']", ("x y",)),
        ('$["q\\"uote"]', ('q"uote',)),
        ("$.a[*]", None),
        ("$..c", None),
        ("$$.Execution", None),
        ("a.b", None),
    ],
)
def test_reference_path_parsing(path: str, steps: tuple[Any, ...] | None) -> None:
    assert parse_reference_path(path) == steps


def test_paths_select_like_aws() -> None:
    assert compile_path("$.a.b[1].c")(DATA) == "deep"
    assert compile_path("$['x y']")(DATA) == 1
    assert compile_path("$.list[*].n")(DATA) == [1, 5]
    assert compile_path("$.list[?(@.n > 2)]")(DATA) == [{"n": 5}]
    assert compile_path("$.missing[*]")(DATA) == []  # a wildcard matching nothing is an empty list
    for bad in ("$.nope", "$.a.b[5]", "$.a.b.c", "$['x y'].z"):
        with pytest.raises(PathNotFound):
            compile_path(bad)(DATA)


def test_a_string_is_not_indexed_like_an_array() -> None:
    with pytest.raises(PathNotFound):
        compile_path("$.s[0]")({"s": "text"})


def test_set_path_copies_only_the_spine() -> None:
    original = {"a": {"keep": [1]}, "other": {"z": 1}}
    updated = set_path(original, ("a", "new", "deep"), 5)
    assert updated == {"a": {"keep": [1], "new": {"deep": 5}}, "other": {"z": 1}}
    assert original == {"a": {"keep": [1]}, "other": {"z": 1}}
    assert updated["other"] is original["other"]
    assert set_path([1, 2], (1,), "x") == [1, "x"]
    with pytest.raises(ValueError, match="cannot set field"):
        set_path("text", ("a",), 1)
    with pytest.raises(ValueError, match="cannot set index"):
        set_path([1], (3,), 1)


def run(expr: str, data: Any = None, ctx: Any = None) -> Any:
    return compile_intrinsic(expr)(data if data is not None else {}, ctx)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("States.Format('a\\{\\}b {}', 1)", "a{}b 1"),
        ("States.Format('it\\'s {}', 'x')", "it's x"),
        ("States.Format('{}', 1.5)", "1.5"),
        ("States.Format('{}', null)", "null"),
        ("States.Array()", []),
        ("States.Array(null, -2, 1e2)", [None, -2, 100.0]),
        ("States.ArrayRange(5, 1, -2)", [5, 3, 1]),
        ("States.ArrayContains(States.Array(1, 'a'), 'a')", True),
        ("States.ArrayUnique(States.Array(States.Array(1), States.Array(1), 2))", [[1], 2]),
        ("States.MathAdd(2.5, -1)", 2),  # AWS rounds like Java's Math.round
        ("States.StringSplit('a b  c', ' ')", ["a", "b", "c"]),
        ("States.Base64Decode(States.Base64Encode('héllo'))", "héllo"),
        ("States.JsonToString(States.StringToJson('{\"a\": [1, 2]}'))", '{"a":[1,2]}'),
        ("States.Hash('', 'MD5')", "d41d8cd98f00b204e9800998ecf8427e"),
    ],
)
def test_intrinsic_values(expr: str, expected: Any) -> None:
    assert run(expr) == expected


def test_intrinsic_paths_and_context() -> None:
    assert (
        run(
            "States.Format('{} {}', $.a['b'][0], $$.Execution.Name)",
            DATA,
            {"Execution": {"Name": "e"}},
        )
        == "1 e"
    )
    assert run("States.MathRandom(3, 3)") == 3
    assert 1 <= run("States.MathRandom(1, 6)") <= 6
    assert uuid.UUID(run("States.UUID()")).version == 4


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("States.ArrayGetItem(States.Array(1), 3)", "out of bounds"),
        ("States.ArrayLength('x')", "expected an array"),
        ("States.StringToJson('{bad')", "not valid JSON"),
        ("States.Base64Decode('***')", "not valid base64"),
        ("States.Hash('x', 'SHA-3')", "unknown algorithm"),
        ("States.JsonMerge(States.StringToJson('{}'), States.StringToJson('{}'), true)", "shallow"),
        ("States.ArrayRange(1, 5000, 1)", "limit is 1000"),
        ("States.ArrayPartition(States.Array(1), 0)", "positive"),
        ("States.Format('{} {}', 1)", "placeholders"),
        ("States.Format($.missing)", "could not be found"),
    ],
)
def test_intrinsic_failures_are_intrinsic_failure(expr: str, message: str) -> None:
    with pytest.raises(StatesFailure) as info:
        run(expr)
    assert info.value.error == "States.IntrinsicFailure"
    assert message in (info.value.cause or "")


@pytest.mark.parametrize(
    "expr",
    [
        "States.Format('x'",
        "States.Format('x') extra",
        "States.Bad()",
        "States.UUID(1)",
        "States.Format('unterminated)",
        "States.Array(@)",
    ],
)
def test_intrinsic_syntax_errors(expr: str) -> None:
    with pytest.raises(IntrinsicSyntaxError):
        compile_intrinsic(expr)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("*.log", "a.log", True),
        ("*.log", "a.log.gz", False),
        ("a*b*c", "abc", True),
        ("literal\\*star", "literal*star", True),
        ("literal\\*star", "literalXstar", False),
        ("back\\\\slash", "back\\slash", True),
        ("[abc]?", "[abc]?", True),  # only * is special in AWS (unlike fnmatch)
        ("[abc]?", "a", False),
    ],
)
def test_string_matches(pattern: str, text: str, matches: bool) -> None:
    assert (compile_string_pattern(pattern).fullmatch(text) is not None) is matches


def test_timestamps() -> None:
    assert parse_timestamp("2024-01-01T00:00:00Z") is not None
    assert parse_timestamp("2024-01-01T00:00:00.123+02:00") is not None
    for bad in ("2024-01-01", "2024-01-01T00:00:00", "yesterday", 5, "2024-13-01T00:00:00Z"):
        assert parse_timestamp(bad) is None
    later = compile_rule(
        {"Variable": "$.t", "TimestampGreaterThan": "2024-01-01T01:00:00+02:00", "Next": "N"},
        top_level=True,
    )
    assert later({"t": "2024-01-01T00:00:01Z"}, None) is True


def test_missing_variable_is_a_runtime_error_except_is_present() -> None:
    rule = compile_rule({"Variable": "$.gone", "StringEquals": "x", "Next": "N"}, top_level=True)
    with pytest.raises(StatesFailure) as info:
        rule({}, None)
    assert info.value.error == "States.Runtime"
    assert re.search("Invalid path '\\$.gone'", info.value.cause or "")
    present = compile_rule({"Variable": "$.gone", "IsPresent": False, "Next": "N"}, top_level=True)
    assert present({}, None) is True


def test_numeric_comparisons_ignore_booleans() -> None:
    rule = compile_rule({"Variable": "$.v", "NumericEquals": 1, "Next": "N"}, top_level=True)
    assert rule({"v": True}, None) is False and rule({"v": 1.0}, None) is True
