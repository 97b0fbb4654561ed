"""Parse and compile a definition into a `StateMachine` of ready-to-run `State` objects.

`parse_definition` validates first (validate.py), then compiles every path, payload
template, intrinsic call and Choice rule once, so an execution never parses text. A
compile error is reported like any other validation problem, with the state's name.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from . import jsonata as jsonata_mode
from .choice import compile_rule, parse_timestamp
from .errors import DefinitionError
from .intrinsics import IntrinsicSyntaxError, compile_intrinsic, is_intrinsic
from .mapspec import DistributedSpec, PathValue, compile_distributed, path_value
from .paths import PathNotFound, Step, compile_path, parse_reference_path
from .payload import Template, compile_template
from .validate import (
    INVOKE_RESOURCE,
    LAMBDA_ARN,
    MAX_DEFINITION_CHARS,
    check_definition,
    lint_definition,
)
from .variables import compile_variable_path, is_variable_path

Getter = Callable[[Any], Any]
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"


@dataclass(frozen=True)
class Retrier:
    """One Retry entry (spec: "Retrying after error"), with AWS's defaults."""

    errors: tuple[str, ...]
    interval: float = 1.0
    max_attempts: int = 3
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: str = "NONE"


@dataclass(frozen=True)
class Catcher:
    """One Catch entry (spec: "Fallback states"); result_path None discards the error.

    `assign`: JSONPath mode, a template on the error output; JSONata mode, a
    jsonata_mode.Template. `output` (JSONata only) replaces the error output as the state output.
    """

    errors: tuple[str, ...]
    next: str
    result_path: tuple[Step, ...] | None = ()
    assign: Any = None
    output: jsonata_mode.Template | None = None


@dataclass(frozen=True)
class ChoiceRule:
    """One top-level Choice rule: a predicate (JSONPath: (data, ctx) -> bool; JSONata: the
    compiled Condition), where it leads, and the rule's own Assign and (JSONata) Output."""

    predicate: Any
    next: str
    assign: Any = None
    output: jsonata_mode.Template | None = None


@dataclass(frozen=True)
class TaskResource:
    """A Lambda task: `invoke` (arn:aws:states:::lambda:invoke) or `function` (plain ARN)."""

    kind: str
    arn: str
    function_name: str | None  # known statically for plain ARNs and literal FunctionName
    region: str


@dataclass
class State:
    """One compiled state. Fields unused by a state's type stay at their defaults."""

    name: str
    type: str
    next: str | None = None
    jsonata: bool = False  # QueryLanguage JSONata: Arguments/Output/Assign and `fields` apply
    assign: Any = None  # JSONPath: Template on the state's result; JSONata: jsonata_mode.Template
    arguments: jsonata_mode.Template | None = None
    output: jsonata_mode.Template | None = None
    # JSONata-mode field values (TimeoutSeconds, Seconds, Items, MaxConcurrency, Error...),
    # each a constant or expression template; absent fields are not in the dict.
    fields: dict[str, jsonata_mode.Template] = field(default_factory=dict)
    input_path: Getter | None = None  # None with input_path_null False: "$"
    input_path_text: str = "$"
    input_path_null: bool = False
    output_path: Getter | None = None
    output_path_text: str = "$"
    output_path_null: bool = False
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: tuple[Step, ...] | None = ()  # None: ResultPath null (keep the input)
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()
    # Task
    resource: TaskResource | None = None
    # JSONPath: the literal or the Path; JSONata: both are `fields` (constant or expression)
    timeout_seconds: int | None = None
    timeout_path: PathValue | None = None
    heartbeat_seconds: int | None = None
    heartbeat_path: PathValue | None = None
    # Pass
    result: Any = None
    has_result: bool = False
    # Choice
    choices: tuple[ChoiceRule, ...] = ()
    default: str | None = None
    # Wait
    seconds: int | None = None
    timestamp: str | None = None
    seconds_path: Getter | None = None
    timestamp_path: Getter | None = None
    wait_path_text: str = ""
    # Fail
    error: str | None = None
    cause: str | None = None
    error_path: Template | None = None
    cause_path: Template | None = None
    # Parallel / Map
    branches: tuple[StateMachine, ...] = ()
    iterator: StateMachine | None = None
    items_path: Getter | None = None
    items_path_text: str = "$"
    item_selector: Template | None = None
    max_concurrency: int = 0
    tolerated_count: int | None = None
    tolerated_percentage: float | None = None
    max_concurrency_path: PathValue | None = None
    tolerated_count_path: PathValue | None = None
    tolerated_percentage_path: PathValue | None = None
    label: str | None = None
    distributed: DistributedSpec | None = None  # ProcessorConfig.Mode DISTRIBUTED


@dataclass
class StateMachine:
    """A validated, compiled definition. `definition` keeps the parsed JSON."""

    start_at: str
    states: dict[str, State]
    definition: dict[str, Any]
    name: str = "sconeflow"
    timeout_seconds: int | None = None
    uses_context: bool = False  # the definition mentions `$$`, so states build the context
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT
    function_names: frozenset[str] = field(default_factory=frozenset)
    uses_store: bool = False  # a Distributed Map reads (ItemReader) or writes (ResultWriter)

    @property
    def arn(self) -> str:
        return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{self.name}"


def parse_definition(
    definition: str | dict[str, Any],
    *,
    name: str = "sconeflow",
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
) -> StateMachine:
    """Validate and compile an ASL definition (JSON text or parsed dict).

    Raises DefinitionError listing every problem found; nothing runs before that.
    The same JSON text is validated and compiled once (`_compiled`): a console starting
    one execution per state machine of the same definition, or CreateStateMachine then
    StartExecution, would otherwise lint it again each time, which costs more than
    running a short execution. The compiled states are shared, as they already are by
    the concurrent executions of one machine: nothing mutates them after compiling.
    """
    machine = _compiled(definition) if isinstance(definition, str) else _compile(definition)
    return replace(machine, name=name, region=region, account=account)


@functools.lru_cache(maxsize=64)
def _compiled(text: str) -> StateMachine:
    return _compile(text)


def _compile(definition: str | dict[str, Any]) -> StateMachine:
    text = definition if isinstance(definition, str) else None
    if text is not None:
        if len(text) > MAX_DEFINITION_CHARS:
            raise DefinitionError(
                [f"the definition has {len(text)} characters; the limit is {MAX_DEFINITION_CHARS}"]
            )
        try:
            definition = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise DefinitionError([f"the definition is not valid JSON: {err}"]) from err
    problems = check_definition(definition)
    if not problems:
        try:
            problems = lint_definition(definition)  # type: ignore[arg-type]
        except RecursionError:
            problems = ["the definition nests too deeply"]
    if problems:
        raise DefinitionError(problems)
    assert isinstance(definition, dict)  # check_definition guarantees it
    compiled: list[str] = []
    names: set[str] = set()
    language = definition.get("QueryLanguage", "JSONPath")
    machine = _compile_machine(definition, "", compiled, names, language)
    if compiled:
        raise DefinitionError(compiled)
    text = json.dumps(definition)
    machine.definition = definition
    machine.timeout_seconds = definition.get("TimeoutSeconds")
    machine.uses_context = "$$" in text or jsonata_mode.mentions_context(text)
    machine.function_names = frozenset(names)
    machine.uses_store = _uses_store(machine)
    return machine


def _uses_store(machine: StateMachine) -> bool:
    for state in machine.states.values():
        spec = state.distributed
        writer = spec.result_writer if spec is not None else None
        if spec is not None and (spec.item_reader or (writer and writer.parameters)):
            return True
        inner = [*state.branches, *([state.iterator] if state.iterator else [])]
        if any(_uses_store(m) for m in inner):
            return True
    return False


def _compile_machine(
    spec: dict[str, Any], where: str, problems: list[str], names: set[str], language: str
) -> StateMachine:
    # A state inside a Map or Parallel falls back to the state machine's QueryLanguage, not
    # to the enclosing state's: the States Language makes each state independent of it.
    states = {
        name: _compile_state(name, body, where, problems, names, language)
        for name, body in spec["States"].items()
    }
    return StateMachine(start_at=spec["StartAt"], states=states, definition=spec)


def _compile_state(
    name: str,
    spec: dict[str, Any],
    where: str,
    problems: list[str],
    names: set[str],
    language: str,
) -> State:
    at = f"State {name!r}" + (f" (in {where})" if where else "")
    state = State(name=name, type=spec["Type"], next=spec.get("Next"))
    state.jsonata = spec.get("QueryLanguage", language) == "JSONata"

    def attempt(field_name: str, build: Callable[[], Any]) -> Any:
        try:
            return build()
        except (ValueError, IntrinsicSyntaxError) as err:
            problems.append(f"{at}: {field_name}: {err}")
            return None

    if state.jsonata:
        _compile_jsonata_fields(state, spec, attempt)
    else:
        _compile_jsonpath_fields(state, spec, attempt)
    state.retry = tuple(_retrier(r) for r in spec.get("Retry", []))
    kind = state.type
    if kind == "Task":
        state.resource = attempt("Resource", lambda: _resource(spec, names, state.jsonata))
        if not state.jsonata:
            state.timeout_seconds = spec.get("TimeoutSeconds")
            state.heartbeat_seconds = spec.get("HeartbeatSeconds")
    elif kind == "Choice":
        state.choices = tuple(
            attempt(f"Choices[{i}]", partial(_choice_rule, rule, i, state.jsonata))
            for i, rule in enumerate(spec["Choices"])
        )
        state.default = spec.get("Default")
    elif kind == "Wait" and not state.jsonata:
        _compile_wait(state, spec, attempt)
    elif kind == "Fail" and not state.jsonata:
        state.error, state.cause = spec.get("Error"), spec.get("Cause")
        if "ErrorPath" in spec:
            state.error_path = attempt("ErrorPath", lambda: _dynamic(spec["ErrorPath"]))
        if "CausePath" in spec:
            state.cause_path = attempt("CausePath", lambda: _dynamic(spec["CausePath"]))
    elif kind == "Parallel":
        state.branches = tuple(
            _compile_machine(b, f"{name}.Branches[{i}]", problems, names, language)
            for i, b in enumerate(spec["Branches"])
        )
    elif kind == "Map":
        processor: dict[str, Any] = spec.get("ItemProcessor") or spec["Iterator"]
        state.iterator = _compile_machine(
            processor, f"{name}.ItemProcessor", problems, names, language
        )
        if not state.jsonata:
            if "ItemsPath" in spec:
                state.items_path = attempt(
                    "ItemsPath", lambda: _path(spec["ItemsPath"], reference=True)
                )
                state.items_path_text = spec["ItemsPath"]
            selector = spec.get("ItemSelector", spec.get("Parameters"))
            state.parameters = None  # for a Map, legacy Parameters is the ItemSelector
            if selector is not None:
                state.item_selector = attempt("ItemSelector", lambda: _template(selector))
        for fname, attr in (
            ("MaxConcurrency", "max_concurrency"),
            ("ToleratedFailureCount", "tolerated_count"),
            ("ToleratedFailurePercentage", "tolerated_percentage"),
        ):
            if fname in spec and not jsonata_mode.is_expression(spec[fname]):
                setattr(state, attr, spec[fname])
        for fname, attr in (
            ("MaxConcurrencyPath", "max_concurrency_path"),
            ("ToleratedFailureCountPath", "tolerated_count_path"),
            ("ToleratedFailurePercentagePath", "tolerated_percentage_path"),
        ):
            if fname in spec:
                setattr(state, attr, attempt(fname, partial(path_value, spec[fname])))
        state.label = spec.get("Label")
        if (processor.get("ProcessorConfig") or {}).get("Mode") == "DISTRIBUTED":
            state.distributed = attempt(
                "ItemProcessor", partial(compile_distributed, spec, processor, state.jsonata)
            )
    return state


def _compile_jsonpath_fields(
    state: State, spec: dict[str, Any], attempt: Callable[[str, Callable[[], Any]], Any]
) -> None:
    """InputPath, Parameters, ResultSelector, ResultPath, OutputPath, Assign, Catch, Result."""
    for fname in ("InputPath", "OutputPath"):
        if fname in spec:
            value = spec[fname]
            key = "input" if fname == "InputPath" else "output"
            if value is None:
                setattr(state, f"{key}_path_null", True)
            else:
                setattr(state, f"{key}_path", attempt(fname, partial(_path, value)))
                setattr(state, f"{key}_path_text", value)
    if "Parameters" in spec:
        state.parameters = attempt("Parameters", lambda: _template(spec["Parameters"]))
    if "ResultSelector" in spec:
        state.result_selector = attempt("ResultSelector", lambda: _template(spec["ResultSelector"]))
    if "ResultPath" in spec:
        state.result_path = attempt(
            "ResultPath", lambda: _reference(spec["ResultPath"], allow_null=True)
        )
    if "Assign" in spec:
        state.assign = attempt("Assign", lambda: _template(spec["Assign"]))
    state.catch = tuple(
        Catcher(
            tuple(c["ErrorEquals"]),
            c["Next"],
            attempt(
                f"Catch[{i}].ResultPath",
                partial(_reference, c.get("ResultPath", "$"), allow_null=True),
            ),
            attempt(f"Catch[{i}].Assign", partial(_template, c["Assign"]))
            if "Assign" in c
            else None,
        )
        for i, c in enumerate(spec.get("Catch", []))
    )
    if state.type == "Pass":
        state.has_result = "Result" in spec
        state.result = spec.get("Result")
    if state.type == "Task":
        for fname, attr in (
            ("TimeoutSecondsPath", "timeout_path"),
            ("HeartbeatSecondsPath", "heartbeat_path"),
        ):
            if fname in spec:
                setattr(state, attr, attempt(fname, partial(_seconds_path, spec[fname])))


# JSONata fields whose value is a constant or an expression, evaluated by the state's runner.
_JSONATA_VALUE_FIELDS = (
    "TimeoutSeconds",
    "HeartbeatSeconds",
    "Seconds",
    "Timestamp",
    "Items",
    "ItemSelector",
    "MaxConcurrency",
    "ToleratedFailureCount",
    "ToleratedFailurePercentage",
    "Error",
    "Cause",
)


def _compile_jsonata_fields(
    state: State, spec: dict[str, Any], attempt: Callable[[str, Callable[[], Any]], Any]
) -> None:
    """Arguments, Output, Assign, Catch and the fields that take an expression."""
    for fname in ("Arguments", "Output", "Assign"):
        if fname in spec:
            # $states.result: the Output and Assign of the states that have a result.
            result = fname != "Arguments" and state.type in ("Task", "Map", "Parallel")
            build = partial(jsonata_mode.compile_template, spec[fname], fname, with_result=result)
            setattr(state, fname.lower(), attempt(fname, build))
    for fname in _JSONATA_VALUE_FIELDS:
        if fname in spec:
            template = attempt(fname, partial(jsonata_mode.compile_template, spec[fname], fname))
            if template is not None:
                state.fields[fname] = template
    catchers = []
    for i, c in enumerate(spec.get("Catch", [])):
        parts = {}
        for fname in ("Assign", "Output"):
            if fname in c:
                build = partial(
                    jsonata_mode.compile_template, c[fname], f"Catch[{i}]/{fname}", in_catch=True
                )
                parts[fname.lower()] = attempt(f"Catch[{i}].{fname}", build)
        catchers.append(Catcher(tuple(c["ErrorEquals"]), c["Next"], (), **parts))
    state.catch = tuple(catchers)


def _choice_rule(rule: dict[str, Any], index: int, in_jsonata: bool) -> ChoiceRule:
    where = f"Choices[{index}]"
    if in_jsonata:
        condition = rule.get("Condition")
        if not jsonata_mode.is_expression(condition) and not isinstance(condition, bool):
            raise ValueError(
                "a JSONata Choice rule needs 'Condition': a boolean expression such as "
                '"{% $states.input.count > 10 %}"'
            )
        predicate: Any = jsonata_mode.compile_template(condition, f"{where}/Condition")
        output = (
            jsonata_mode.compile_template(rule["Output"], f"{where}/Output")
            if "Output" in rule
            else None
        )
        assign = (
            jsonata_mode.compile_template(rule["Assign"], f"{where}/Assign")
            if "Assign" in rule
            else None
        )
        return ChoiceRule(predicate, rule["Next"], assign, output)
    body = {k: v for k, v in rule.items() if k != "Assign"}
    predicate = compile_rule(body, top_level=True)
    assign = _template(rule["Assign"]) if "Assign" in rule else None
    return ChoiceRule(predicate, rule["Next"], assign)


def _compile_wait(
    state: State, spec: dict[str, Any], attempt: Callable[[str, Callable[[], Any]], Any]
) -> None:
    if "Seconds" in spec:
        seconds = spec["Seconds"]
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            attempt("Seconds", lambda: _fail("must be a non-negative integer number of seconds"))
        state.seconds = seconds
    if "Timestamp" in spec:
        if parse_timestamp(spec["Timestamp"]) is None:
            attempt(
                "Timestamp",
                lambda: _fail("must be an RFC 3339 timestamp like '2026-01-31T12:00:00Z'"),
            )
        state.timestamp = spec["Timestamp"]
    for fname, attr in (("SecondsPath", "seconds_path"), ("TimestampPath", "timestamp_path")):
        if fname in spec:
            setattr(state, attr, attempt(fname, partial(_path, spec[fname], reference=True)))
            state.wait_path_text = spec[fname]


def _fail(message: str) -> None:
    raise ValueError(message)


def _path(value: Any, *, reference: bool = False) -> Getter:
    """A path's getter. A `$$...` path compiles as `$...`: the states apply it to the
    context object (dataflow.select), as AWS does in InputPath, OutputPath and ItemsPath."""
    if not isinstance(value, str):
        raise ValueError(f"expected a path string such as '$.field', got {json.dumps(value)}")
    if is_variable_path(value):  # `$name...`: a workflow variable (variables.py)
        read = compile_variable_path(value)
        return lambda data: read()
    body = value[1:] if value.startswith("$$") else value
    if reference and parse_reference_path(body) is None:
        raise ValueError(f"{value!r} must be a reference path such as '$.field' or '$.list[0]'")
    return compile_path(body)


def _seconds_path(value: Any) -> PathValue:
    """TimeoutSecondsPath / HeartbeatSecondsPath: a reference path into the raw state input
    (or a variable, `$name`), read when the Task starts."""
    return PathValue(_path(value, reference=True), value)


def _reference(value: Any, *, allow_null: bool) -> tuple[Step, ...] | None:
    if value is None and allow_null:
        return None
    steps = parse_reference_path(value) if isinstance(value, str) else None
    if steps is None:
        raise ValueError(
            f"{json.dumps(value)} must be a reference path such as '$.result' (or null)"
        )
    return steps


def _template(value: Any) -> Template:
    return compile_template(value)


def _dynamic(value: Any) -> Template:
    """ErrorPath/CausePath: a reference path (into the context object for `$$...`) or an
    intrinsic call. A path that selects nothing raises PathNotFound(path as written, the
    value it was applied to), for the cause AWS gives."""
    if isinstance(value, str) and is_intrinsic(value):
        return compile_intrinsic(value)
    getter = _path(value, reference=True)
    context = value.startswith("$$")

    def select(data: Any, ctx: Any) -> Any:
        source = ctx if context else data
        try:
            return getter(source)
        except PathNotFound as err:
            raise PathNotFound(value, source) from err

    return select


def _retrier(spec: dict[str, Any]) -> Retrier:
    return Retrier(
        errors=tuple(spec["ErrorEquals"]),
        interval=spec.get("IntervalSeconds", 1),
        max_attempts=spec.get("MaxAttempts", 3),
        backoff=spec.get("BackoffRate", 2.0),
        max_delay=spec.get("MaxDelaySeconds"),
        jitter=spec.get("JitterStrategy", "NONE"),
    )


def _resource(spec: dict[str, Any], names: set[str], in_jsonata: bool = False) -> TaskResource:
    resource = spec["Resource"]
    if resource == INVOKE_RESOURCE:
        params = spec.get("Arguments" if in_jsonata else "Parameters")
        if in_jsonata and jsonata_mode.is_expression(params):
            return TaskResource("invoke", resource, None, DEFAULT_REGION)  # named at run time
        if in_jsonata and not (isinstance(params, dict) and "FunctionName" in params):
            raise ValueError(
                "lambda:invoke needs Arguments with 'FunctionName' (and usually "
                "'Payload': '{% $states.input %}'), e.g. {\"FunctionName\": "
                '"arn:aws:lambda:us-east-1:123456789012:function:classify:$LATEST", '
                '"Payload": "{% $states.input %}"}'
            )
        if not isinstance(params, dict) or not (
            "FunctionName" in params or "FunctionName.$" in params
        ):
            raise ValueError(
                "lambda:invoke needs Parameters with 'FunctionName' (and usually "
                "'Payload.$': '$'), e.g. {\"FunctionName\": "
                '"arn:aws:lambda:us-east-1:123456789012:function:classify:$LATEST", '
                '"Payload.$": "$"}'
            )
        literal = params.get("FunctionName")
        function_name, region = None, DEFAULT_REGION
        if isinstance(literal, str) and not jsonata_mode.is_expression(literal):
            function_name, region = function_name_of(literal)
            names.add(function_name)
        return TaskResource("invoke", resource, function_name, region)
    match = LAMBDA_ARN.fullmatch(resource)
    assert match is not None  # validate.py accepted only these two forms
    names.add(match.group(3))
    return TaskResource("function", resource, match.group(3), match.group(1))


def function_name_of(function_name: str) -> tuple[str, str]:
    """(name, region) of a FunctionName: a bare name, `name:qualifier`, or an ARN."""
    match = LAMBDA_ARN.fullmatch(function_name)
    if match:
        return match.group(3), match.group(1)
    parts = function_name.split(":")
    if len(parts) >= 3 and parts[1] == "function":  # ACCOUNT:function:NAME[:QUALIFIER]
        return parts[2], DEFAULT_REGION
    return parts[0], DEFAULT_REGION
