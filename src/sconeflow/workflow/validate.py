"""Definition checks that run before any state does (spec: "Structure of a State Machine").

Two layers, both reported together:

* `statelint` (PyPI, a Python port of awslabs/statelint) checks field names, field types
  and path syntax against the States Language schema;
* the checks below add what sconeflow itself needs or what AWS rejects at
  CreateStateMachine: graph checks (every `Next` exists, every state reachable, a terminal
  state reachable), `States.ALL` alone and last, supported Task resources, bounded nesting
  and size. Expressions (paths, intrinsics, Choice rules, payload templates) are checked by
  compiling them, in `machine.py`, so that one parser decides what is valid.

Every message names the state and says how to fix the problem.
"""

from __future__ import annotations

import re
from typing import Any

from .jsonata import is_expression
from .mapspec import check_map_fields, check_processor_config
from .variables import check_name

MAX_DEFINITION_CHARS = 1_048_576  # AWS's limit on a definition's size
MAX_NESTING_DEPTH = 10  # Parallel/Map inside Parallel/Map
MAX_STATES = 10_000

INVOKE_RESOURCE = "arn:aws:states:::lambda:invoke"
LAMBDA_ARN = re.compile(r"arn:aws[\w-]*:lambda:([\w-]+):(\d{12}):function:([\w-]{1,64})(:[\w$-]+)?")

_COMMON = {"Type", "Comment", "QueryLanguage"}
_IO = {"InputPath", "OutputPath", "Output"}
_FLOW = {"Next", "End", "Assign"}
_RESULT = {"ResultPath", "ResultSelector", "Parameters", "Arguments"}
_ERRORS = {"Retry", "Catch"}
QUERY_LANGUAGES = ("JSONPath", "JSONata")
# Fields of one query language only (AWS: "Transforming data with JSONata"): a JSONata state
# has Arguments and Output instead of the five JSONPath fields, and expressions instead of
# the *Path variants; Assign belongs to both.
JSONPATH_ONLY = frozenset(
    {
        "InputPath",
        "OutputPath",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "Result",
        "ItemsPath",
        "MaxConcurrencyPath",
        "TimeoutSecondsPath",
        "HeartbeatSecondsPath",
        "SecondsPath",
        "TimestampPath",
        "ErrorPath",
        "CausePath",
        "ToleratedFailureCountPath",
        "ToleratedFailurePercentagePath",
    }
)
JSONATA_ONLY = frozenset({"Arguments", "Output", "Items"})
ALLOWED_FIELDS: dict[str, set[str]] = {
    "Task": _COMMON
    | _IO
    | _FLOW
    | _RESULT
    | _ERRORS
    | {
        "Resource",
        "TimeoutSeconds",
        "TimeoutSecondsPath",
        "HeartbeatSeconds",
        "HeartbeatSecondsPath",
    },
    "Pass": _COMMON | _IO | _FLOW | {"Result", "ResultPath", "Parameters"},
    "Choice": _COMMON | _IO | {"Choices", "Default", "Assign"},
    "Wait": _COMMON | _IO | _FLOW | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath"},
    "Succeed": _COMMON | _IO,
    "Fail": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": _COMMON | _IO | _FLOW | _RESULT | _ERRORS | {"Branches"},
    "Map": _COMMON
    | _IO
    | _FLOW
    | _RESULT
    | _ERRORS
    | {
        "Iterator",
        "ItemProcessor",
        "ItemsPath",
        "Items",
        "ItemSelector",
        "MaxConcurrency",
        "ToleratedFailurePercentage",
        "ToleratedFailureCount",
        "Label",
        "ItemReader",
        "ItemBatcher",
        "ResultWriter",
        "MaxConcurrencyPath",
        "ToleratedFailurePercentagePath",
        "ToleratedFailureCountPath",
    },
}
_RETRIER_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
_CATCHER_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Comment", "Assign", "Output"}
_NOT_SUPPORTED = {
    "Credentials": "cross-account task credentials are not supported",
}


def lint_definition(definition: dict[str, Any]) -> list[str]:
    """Problems statelint finds.

    Its path checks are switched off: its path grammar rejects filters such as
    `$.items[?(@.n > 1)]` and bracketed names with spaces, which AWS runs; machine.py checks
    every path by compiling it instead. So is its float check: AWS accepts `BackoffRate: 2`.
    Its schema predates the Distributed Map, so a Map's Label, ItemReader, ItemBatcher,
    ResultWriter and a legacy Iterator's ProcessorConfig are hidden from it (mapspec.py
    checks those).
    """
    # Imported here, with the first definition checked: statelint and the `regex` module it
    # needs take about 40 ms to import, which `import sconeflow.workflow` need not pay.
    from statelint.config import Config
    from statelint.linter import Linter
    from statelint.problem import ProblemType

    ignored = {
        ProblemType.FLOAT,
        ProblemType.JSON_PATH,
        ProblemType.REFERENCE_PATH,
        ProblemType.REFERENCE_PATH_OR_FUNC,
    }
    problems = Linter.validate(_statelint_view(definition), Config(ignored_problem_types=ignored))
    return [
        f"statelint: {p}"
        for p in problems
        if _PATH_PROBLEM not in p and _EXPRESSION_VALUE not in p and _ASSIGN not in p
    ]


_PATH_PROBLEM = "is not a JSONPath or intrinsic function expression"  # reported untyped
# statelint types TimeoutSeconds, Seconds, MaxConcurrency... as numbers only; a JSONata
# expression there is checked by compiling it (machine.py) and by its value at run time.
_EXPRESSION_VALUE = 'is "{%'
# statelint 3.1 takes Assign for a JSONata-only field; AWS accepts it in JSONPath states too
# (AWS: "Passing data between states with variables"), and _check_assign checks it.
_ASSIGN = 'Field "Assign" not allowed'
_MAP_FIELDS_UNKNOWN_TO_STATELINT = ("Label", "ItemReader", "ItemBatcher", "ResultWriter")


def _statelint_view(machine: Any) -> Any:
    """A copy of a (sub-)machine without the Map fields statelint does not know."""
    if not isinstance(machine, dict) or not isinstance(machine.get("States"), dict):
        return machine
    states = {}
    for name, state in machine["States"].items():
        if isinstance(state, dict) and state.get("Type") == "Map":
            state = {k: v for k, v in state.items() if k not in _MAP_FIELDS_UNKNOWN_TO_STATELINT}
            for key in ("ItemProcessor", "Iterator"):
                if isinstance(state.get(key), dict):
                    inner = _statelint_view(state[key])
                    if key == "Iterator":
                        inner = {k: v for k, v in inner.items() if k != "ProcessorConfig"}
                    state[key] = inner
        elif isinstance(state, dict) and isinstance(state.get("Branches"), list):
            state = {**state, "Branches": [_statelint_view(b) for b in state["Branches"]]}
        states[name] = state
    return {**machine, "States": states}


def check_definition(definition: Any) -> list[str]:
    """Structural problems of a whole definition (empty list when it is sound)."""
    if not isinstance(definition, dict):
        return ["the definition must be a JSON object with 'StartAt' and 'States'"]
    problems: list[str] = []
    language = definition.get("QueryLanguage", "JSONPath")
    if language not in QUERY_LANGUAGES:
        problems.append(
            f"QueryLanguage {language!r}: Value should be one of the following: "
            "[JSONPath, JSONata]"
        )
        language = "JSONPath"
    timeout = definition.get("TimeoutSeconds")
    if timeout is not None and not _positive_int(timeout):
        problems.append(f"TimeoutSeconds must be a positive integer, got {timeout!r}")
    _check_machine(definition, "", 0, problems, language)
    return problems


def _check_machine(
    machine: Any, where: str, depth: int, problems: list[str], language: str = "JSONPath"
) -> None:
    label = where or "the state machine"
    if depth > MAX_NESTING_DEPTH:
        problems.append(
            f"{label}: Parallel/Map states nest deeper than {MAX_NESTING_DEPTH}; flatten them"
        )
        return
    if not isinstance(machine, dict):
        problems.append(f"{label}: expected an object with 'StartAt' and 'States'")
        return
    states = machine.get("States")
    start = machine.get("StartAt")
    if not isinstance(states, dict) or not states:
        problems.append(f"{label}: 'States' must be a non-empty object of state name -> state")
        return
    if len(states) > MAX_STATES:
        problems.append(f"{label}: {len(states)} states; the limit is {MAX_STATES}")
        return
    if start not in states:
        problems.append(
            f"{label}: StartAt {start!r} is not a state; use one of {sorted(states)[:10]}"
        )
    for name, state in states.items():
        if len(name) > 80:
            problems.append(f"State {name[:40]!r}...: state names are limited to 80 characters")
        _check_state(name, state, states, where, depth, problems, language)
    if start in states:
        _check_graph(states, str(start), label, problems)


def _check_state(
    name: str,
    state: Any,
    states: dict[str, Any],
    where: str,
    depth: int,
    problems: list[str],
    language: str = "JSONPath",
) -> None:
    at = f"State {name!r}" + (f" (in {where})" if where else "")
    if not isinstance(state, dict):
        problems.append(f"{at}: must be an object with a 'Type'")
        return
    kind = state.get("Type")
    if kind not in ALLOWED_FIELDS:
        problems.append(f"{at}: Type {kind!r} is not one of {sorted(ALLOWED_FIELDS)}")
        return
    for field in state:
        if field in _NOT_SUPPORTED:
            problems.append(f"{at}: field {field!r} is not supported: {_NOT_SUPPORTED[field]}")
        elif field not in ALLOWED_FIELDS[kind]:
            problems.append(f"{at}: field {field!r} is not allowed in a {kind} state; remove it")
    mode = _check_query_language(at, state, language, problems)
    expression_ok = (lambda value: mode == "JSONata" and is_expression(value))  # noqa: E731
    if kind in ("Task", "Pass", "Wait", "Parallel", "Map"):
        has_next, has_end = "Next" in state, state.get("End") is True
        if has_next == has_end:
            problems.append(f"{at}: set exactly one of 'Next' (a state name) or 'End': true")
        if has_next and state["Next"] not in states:
            problems.append(f"{at}: Next {state['Next']!r} is not a state in this scope")
    if kind == "Choice":
        for i, rule in enumerate(state.get("Choices") or []):
            if isinstance(rule, dict) and "Next" in rule and rule["Next"] not in states:
                problems.append(
                    f"{at}: Choices[{i}].Next {rule['Next']!r} is not a state in this scope"
                )
        if "Default" in state and state["Default"] not in states:
            problems.append(f"{at}: Default {state['Default']!r} is not a state in this scope")
        if not isinstance(state.get("Choices"), list) or not state["Choices"]:
            problems.append(f"{at}: 'Choices' must be a non-empty array of rules")
    if kind == "Task":
        _check_resource(at, state.get("Resource"), problems)
    if kind == "Wait":
        given = [f for f in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if f in state]
        if len(given) != 1:
            problems.append(
                f"{at}: a Wait state needs exactly one of "
                "Seconds, Timestamp, SecondsPath, TimestampPath"
            )
    if kind == "Fail":
        for a, b in (("Error", "ErrorPath"), ("Cause", "CausePath")):
            if a in state and b in state:
                problems.append(f"{at}: give either {a!r} or {b!r}, not both")
    if kind in ("Task", "Parallel", "Map"):
        _check_retry_catch(at, state, states, problems, mode)
    _check_assign(at, state, mode, problems)
    if kind == "Parallel":
        branches = state.get("Branches")
        if not isinstance(branches, list) or not branches:
            problems.append(f"{at}: 'Branches' must be a non-empty array of state machines")
        else:
            for i, branch in enumerate(branches):
                _check_machine(branch, f"{name}.Branches[{i}]", depth + 1, problems, language)
    if kind == "Map":
        if ("Iterator" in state) == ("ItemProcessor" in state):
            problems.append(f"{at}: give exactly one of 'ItemProcessor' or the legacy 'Iterator'")
        processor = state.get("ItemProcessor", state.get("Iterator"))
        processing = "INLINE"
        if isinstance(processor, dict):
            processing = check_processor_config(at, processor.get("ProcessorConfig"), problems)
            inner = {k: v for k, v in processor.items() if k != "ProcessorConfig"}
            _check_machine(inner, f"{name}.ItemProcessor", depth + 1, problems, language)
        check_map_fields(at, state, processing, problems, mode)
        if "ItemSelector" in state and "Parameters" in state:
            problems.append(f"{at}: give 'ItemSelector' or the legacy 'Parameters', not both")
        for field in ("MaxConcurrency", "ToleratedFailureCount"):
            if field in state and expression_ok(state[field]):
                continue
            if field in state and not _non_negative_int(state[field]):
                problems.append(
                    f"{at}: {field} must be a non-negative integer, got {state[field]!r}"
                )
        pct = state.get("ToleratedFailurePercentage")
        if expression_ok(pct):
            pct = None
        if pct is not None and (not _is_number(pct) or not 0 <= pct <= 100):
            problems.append(
                f"{at}: ToleratedFailurePercentage must be a number from 0 to 100, got {pct!r}"
            )
    for field in ("TimeoutSeconds", "HeartbeatSeconds"):
        if field in state and expression_ok(state[field]):
            continue
        if field in state and not _positive_int(state[field]):
            problems.append(f"{at}: {field} must be a positive integer, got {state[field]!r}")
    for a, b in (
        ("TimeoutSeconds", "TimeoutSecondsPath"),
        ("HeartbeatSeconds", "HeartbeatSecondsPath"),
    ):
        if a in state and b in state:
            problems.append(f"{at}: give either {a!r} or {b!r}, not both")
    if (
        _positive_int(state.get("TimeoutSeconds"))
        and _positive_int(state.get("HeartbeatSeconds"))
        and state["HeartbeatSeconds"] >= state["TimeoutSeconds"]
    ):
        problems.append(f"{at}: HeartbeatSeconds must be smaller than TimeoutSeconds")


def _check_resource(at: str, resource: Any, problems: list[str]) -> None:
    if resource == INVOKE_RESOURCE or (
        isinstance(resource, str) and LAMBDA_ARN.fullmatch(resource)
    ):
        return
    problems.append(
        f"{at}: Resource {resource!r} is not supported; sconeflow runs Lambda tasks: use "
        f"'{INVOKE_RESOURCE}' with Parameters.FunctionName, or a function ARN "
        "'arn:aws:lambda:REGION:ACCOUNT:function:NAME'"
    )


def _check_query_language(
    at: str, state: dict[str, Any], language: str, problems: list[str]
) -> str:
    """The state's query language, and the fields that belong to the other one."""
    own = state.get("QueryLanguage")
    if own is not None and own not in QUERY_LANGUAGES:
        problems.append(
            f"{at}: QueryLanguage {own!r}: Value should be one of the following: "
            "[JSONPath, JSONata]"
        )
        own = None
    if own == "JSONPath" and language == "JSONata":
        problems.append(
            f"{at}: 'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state "
            "machine; remove the state's QueryLanguage (a JSONata machine cannot revert one "
            "state to JSONPath, but a JSONPath machine can opt states into JSONata)"
        )
        return "JSONata"
    mode = own or language
    foreign = JSONPATH_ONLY if mode == "JSONata" else JSONATA_ONLY
    for field in state:
        if field in foreign:
            other = "JSONPath" if mode == "JSONata" else "JSONata"
            problems.append(
                f"{at}: The QueryLanguage is set to '{mode}', but field '{field}' is only "
                f"supported for the '{other}' QueryLanguage"
            )
    for i, rule in enumerate(state.get("Choices") or []):
        if not isinstance(rule, dict):
            continue
        if mode == "JSONPath" and ("Condition" in rule or "Output" in rule):
            problems.append(
                f"{at}: Choices[{i}]: 'Condition' and 'Output' are only supported for the "
                "'JSONata' QueryLanguage; use 'Variable' with a comparison operator"
            )
        if mode == "JSONata":
            extra = set(rule) - {"Condition", "Next", "Comment", "Assign", "Output"}
            if extra:
                problems.append(
                    f"{at}: Choices[{i}]: field(s) {sorted(extra)} are not supported in a "
                    "JSONata Choice rule; write the test as 'Condition': \"{% ... %}\""
                )
    return mode


def _check_assign(at: str, state: dict[str, Any], mode: str, problems: list[str]) -> None:
    blocks = [("Assign", state.get("Assign"))]
    blocks += [(f"Catch[{i}].Assign", c.get("Assign")) for i, c in _entries(state, "Catch")]
    blocks += [(f"Choices[{i}].Assign", c.get("Assign")) for i, c in _entries(state, "Choices")]
    for where, block in blocks:
        if block is None:
            continue
        if not isinstance(block, dict):
            problems.append(f"{at}: {where} must be an object of variable name -> value")
            continue
        for key in block:
            name = key[:-2] if mode == "JSONPath" and key.endswith(".$") else key
            problem = check_name(name)
            if problem:
                problems.append(f"{at}: {where}: {problem}")


def _entries(state: dict[str, Any], field: str) -> list[tuple[int, dict[str, Any]]]:
    entries = state.get(field)
    if not isinstance(entries, list):
        return []
    return [(i, e) for i, e in enumerate(entries) if isinstance(e, dict)]


def _check_retry_catch(
    at: str, state: dict[str, Any], states: dict[str, Any], problems: list[str], mode: str
) -> None:
    for field, allowed in (("Retry", _RETRIER_FIELDS), ("Catch", _CATCHER_FIELDS)):
        entries = state.get(field, [])
        if not isinstance(entries, list):
            problems.append(f"{at}: '{field}' must be an array")
            continue
        for i, entry in enumerate(entries):
            where = f"{at}: {field}[{i}]"
            if not isinstance(entry, dict):
                problems.append(f"{where} must be an object")
                continue
            for key in set(entry) - allowed:
                problems.append(f"{where}: field {key!r} is not allowed; remove it")
            if field == "Catch" and mode == "JSONata" and "ResultPath" in entry:
                problems.append(
                    f"{where}: The QueryLanguage is set to 'JSONata', but field 'ResultPath' "
                    "is only supported for the 'JSONPath' QueryLanguage; use 'Output'"
                )
            if field == "Catch" and mode == "JSONPath" and "Output" in entry:
                problems.append(
                    f"{where}: The QueryLanguage is set to 'JSONPath', but field 'Output' is "
                    "only supported for the 'JSONata' QueryLanguage; use 'ResultPath'"
                )
            errors = entry.get("ErrorEquals")
            if (
                not isinstance(errors, list)
                or not errors
                or not all(isinstance(e, str) for e in errors)
            ):
                problems.append(f"{where}: 'ErrorEquals' must be a non-empty array of error names")
            elif "States.ALL" in errors:
                if len(errors) != 1:
                    problems.append(f"{where}: 'States.ALL' must be alone in its ErrorEquals")
                if i != len(entries) - 1:
                    problems.append(
                        f"{where}: the {field[:-1].lower()}er with 'States.ALL' must be the last"
                    )
            if field == "Catch" and entry.get("Next") not in states:
                problems.append(f"{where}: Next {entry.get('Next')!r} is not a state in this scope")
            if field == "Retry":
                _check_retrier(where, entry, problems)


def _check_retrier(where: str, entry: dict[str, Any], problems: list[str]) -> None:
    if "IntervalSeconds" in entry and not _positive_int(entry["IntervalSeconds"]):
        problems.append(f"{where}: IntervalSeconds must be a positive integer")
    if "MaxAttempts" in entry and not _non_negative_int(entry["MaxAttempts"]):
        problems.append(
            f"{where}: MaxAttempts must be a non-negative integer (0 means never retry)"
        )
    if "BackoffRate" in entry and (
        not _is_number(entry["BackoffRate"]) or entry["BackoffRate"] < 1
    ):
        problems.append(f"{where}: BackoffRate must be a number >= 1.0")
    if "MaxDelaySeconds" in entry and not _positive_int(entry["MaxDelaySeconds"]):
        problems.append(f"{where}: MaxDelaySeconds must be a positive integer")
    if entry.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
        problems.append(f"{where}: JitterStrategy must be 'FULL' or 'NONE'")


def _check_graph(states: dict[str, Any], start: str, label: str, problems: list[str]) -> None:
    """Every state reachable from StartAt, and some terminal state reachable."""
    seen: set[str] = set()
    stack = [start]
    terminal = False
    while stack:
        name = stack.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        state = states[name]
        if not isinstance(state, dict):
            continue
        targets = _targets(state)
        if state.get("Type") in ("Succeed", "Fail") or state.get("End") is True:
            terminal = True
        stack.extend(targets)
    for name in states:
        if name not in seen:
            problems.append(
                f"State {name!r} ({label}) cannot be reached from StartAt; link it or remove it"
            )
    if not terminal:
        problems.append(f"{label}: no terminal state (End: true, Succeed or Fail) can be reached")


def _targets(state: dict[str, Any]) -> list[str]:
    targets = [state.get("Next"), state.get("Default")]
    targets += [c.get("Next") for c in state.get("Choices") or [] if isinstance(c, dict)]
    targets += [c.get("Next") for c in state.get("Catch") or [] if isinstance(c, dict)]
    return [t for t in targets if isinstance(t, str)]


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
