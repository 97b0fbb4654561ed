"""JSONata expressions for JSONata-mode states (AWS developer guide: "Transforming data with
JSONata in Step Functions", "JSONata functions provided by Step Functions").

A field value written `"{% expression %}"` is an expression; every other string is a literal.
Each expression is parsed once, when the definition is parsed (`compile_expression`), and
checked the way CreateStateMachine checks it: a parse error, a path that starts from the
top-level context (`phone` instead of `$states.input.phone`), `$$`, and `$states.errorOutput`
outside a Catch are refused then. At run time an expression sees `$states` (input, result,
errorOutput, context) and the variables in scope; it fails with `States.QueryEvaluationError`
when it throws, when it returns nothing (undefined), or when it returns a function.

This module is the cheap front: the field syntax, templates and the constants the rest of
the engine names. The evaluator (`jsonata_eval.py`: jsonata-python, why that library, and
the bounds on hostile expressions) is imported by the first `compile_expression`, so a
JSONPath-only machine never loads jsonata-python or `regex` (about 35 ms of imports).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jsonata_eval import Expression

QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
MAX_DEPTH = 100  # nested evaluation steps of one expression
MAX_SECONDS = 5.0  # wall time of one evaluation
MAX_ITEMS = 1_000_000  # items of one array an expression builds
MAX_CHARS = 4_194_304  # characters of one string an expression builds (2**22)
MAX_EXPRESSION_CHARS = 65_536
REGEX_TIMEOUT_SECONDS = 1.0

UNDEFINED: Any = object()  # JSONata's "no value", distinct from JSON null
States = dict[str, Any]  # the `$states` object: input, context, result, errorOutput
Lookup = Callable[[str], Any]  # variable name -> value, or UNDEFINED
Template = Callable[[States, Lookup], Any]


def is_expression(value: Any) -> bool:
    """Whether a field value is a JSONata expression: a string `{% ... %}`."""
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}")


# --- templates: a JSON value whose strings may be expressions (Arguments, Output, Assign...)


def compile_expression(
    value: str, field: str, *, in_catch: bool = False, with_result: bool = False
) -> Expression:
    """Compile one `{% ... %}` field value; raises ValueError saying what is wrong.
    `$states.errorOutput` may be read only `in_catch`, `$states.result` only `with_result`."""
    from .jsonata_eval import Expression  # here, not at the top: see the module docstring

    return Expression(value[2:-2].strip(), field, in_catch=in_catch, with_result=with_result)


def compile_template(
    value: Any, field: str, *, in_catch: bool = False, with_result: bool = False
) -> Template:
    """A function (states, lookup) -> JSON value for a field value that may hold expressions.

    Expressions can sit at any depth of objects and arrays; each is named in errors by its
    location (`Output/a/b[0]`), as AWS names it.
    """
    if is_expression(value):
        return compile_expression(value, field, in_catch=in_catch, with_result=with_result).evaluate
    if isinstance(value, str) and _looks_opened(value.strip()):
        # AWS: "the string must start with {% with no leading spaces, and must end with %}
        # with no trailing spaces. Improperly opening or closing the expression will result
        # in a validation error."
        raise ValueError(
            f"{value!r} (at {field}) is not a JSONata expression: write "
            "'{% expression %}', starting with '{%' and ending with '%}' with nothing outside "
            "them, or leave both out for a plain string"
        )
    if isinstance(value, dict):
        parts = [
            (
                key,
                compile_template(sub, f"{field}/{key}", in_catch=in_catch, with_result=with_result),
            )
            for key, sub in value.items()
        ]
        if all(getattr(part, "constant", False) for _, part in parts):
            return _constant(value)
        return lambda states, lookup: {key: part(states, lookup) for key, part in parts}
    if isinstance(value, list):
        items = [
            compile_template(sub, f"{field}[{i}]", in_catch=in_catch, with_result=with_result)
            for i, sub in enumerate(value)
        ]
        if all(getattr(item, "constant", False) for item in items):
            return _constant(value)
        return lambda states, lookup: [item(states, lookup) for item in items]
    return _constant(value)


def _looks_opened(text: str) -> bool:
    """A string that opens or closes an expression without being one (`{%` ... `%}` inside
    it, or a `{%` start or `%}` end with spaces around)."""
    if text.startswith("{%") or text.endswith("%}"):
        return True
    start = text.find("{%")
    return start >= 0 and text.find("%}", start + 2) >= 0


def _constant(value: Any) -> Template:
    def evaluate(states: States, lookup: Lookup) -> Any:
        return value

    evaluate.constant = True  # type: ignore[attr-defined]
    return evaluate


def mentions_context(definition_text: str) -> bool:
    """Whether JSONata expressions of a definition read `$states.context`."""
    return "$states.context" in definition_text
