"""Payload templates: Parameters, ResultSelector and ItemSelector (spec: "Payload Template").

A field whose name ends in `.$` takes its value from a path into the state's data, a path
into the context object (`$$.`), a workflow variable (`$name`, `$name.field`), or an
intrinsic call; every other field is copied as is.
Templates compile once into closures; constant sub-trees are built once and shared (the
engine never mutates values in place, so sharing is safe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .data import dumps
from .errors import RUNTIME, StatesFailure
from .intrinsics import compile_intrinsic, is_intrinsic
from .paths import PathNotFound, compile_path
from .variables import compile_variable_path, is_variable_path

Template = Callable[[Any, Any], Any]  # (state data, context object) -> value


def compile_template(template: Any) -> Template:
    """Compile a payload template; raises ValueError naming the bad field."""
    if isinstance(template, dict):
        return _compile_object(template)
    if isinstance(template, list):
        items = [compile_template(item) for item in template]
        if all(getattr(item, "constant", False) for item in items):
            return _constant(template)
        return lambda data, ctx: [item(data, ctx) for item in items]
    return _constant(template)


def compile_dynamic_value(field: str, expression: str) -> Template:
    """The evaluator for one `field.$: expression` pair."""
    if not isinstance(expression, str):
        raise ValueError(
            f"field {field!r} ends in '.$' so its value must be a path or intrinsic call string"
        )
    if is_intrinsic(expression):
        return compile_intrinsic(expression)
    if is_variable_path(expression):
        read = compile_variable_path(expression)
        return _guard(field, expression, lambda _: read(), context=False)
    if expression.startswith("$$"):
        getter = compile_path(expression[1:])
        return _guard(field, expression, getter, context=True)
    if expression.startswith("$"):
        return _guard(field, expression, compile_path(expression), context=False)
    raise ValueError(
        f"field {field!r} ends in '.$' but its value {expression!r} is neither a path ('$...'), "
        "a context path ('$$...') nor an intrinsic call ('States.Format(...)')"
    )


def _guard(field: str, expression: str, getter: Callable[[Any], Any], *, context: bool) -> Template:
    def evaluate(data: Any, ctx: Any) -> Any:
        source = ctx if context else data
        try:
            return getter(source)
        except PathNotFound as err:
            # Wording of AWS's States.Runtime cause for this case; AWS prints the input
            # as compact JSON ("...could not be found in the input '{"flagged":false}'").
            raise StatesFailure(
                RUNTIME,
                f"The JSONPath '{expression}' specified for the field '{field}' "
                f"could not be found in the input '{dumps(source)}'",
            ) from err

    return evaluate


def _compile_object(template: dict[str, Any]) -> Template:
    constant: dict[str, Any] = {}
    dynamic: list[tuple[str, Template]] = []
    order: list[str] = []
    for key, value in template.items():
        if key.endswith(".$"):
            name = key[:-2]
            dynamic.append((name, compile_dynamic_value(key, value)))
        else:
            name = key
            sub = compile_template(value)
            if getattr(sub, "constant", False):
                constant[name] = value
            else:
                dynamic.append((name, sub))
        order.append(name)
    if not dynamic:
        return _constant(constant)
    if len(dynamic) == len(order):
        pairs = tuple(dynamic)
        return lambda data, ctx: {name: fn(data, ctx) for name, fn in pairs}
    dyn = dict(dynamic)

    def evaluate(data: Any, ctx: Any) -> dict[str, Any]:
        # Keep the definition's key order, as AWS does in its output.
        return {name: dyn[name](data, ctx) if name in dyn else constant[name] for name in order}

    return evaluate


def _constant(value: Any) -> Template:
    def evaluate(data: Any, ctx: Any) -> Any:
        return value

    evaluate.constant = True  # type: ignore[attr-defined]
    return evaluate
