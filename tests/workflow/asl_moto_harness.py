"""Runs a definition in moto's copy of LocalStack's ASL interpreter, for differential tests
and the benchmark. Test-only: sconeflow itself never imports moto.

moto's StepFunctions backend runs definitions with this interpreter when its config has
`stepfunctions.execute_state_machine`; here we skip the HTTP layer and drive the parsed
program directly (parse once, evaluate per execution), which is what its ExecutionWorker does.

JSONata: moto's interpreter composes each JSONata expression with its variable and `$states`
declarations and hands the text to `moto...asl.jsonata.jsonata._eval_jsonata`, a hook it
leaves empty (LocalStack fills it with a JVM bridge to jsonata-java). `_plug_jsonata` fills it
with jsonata-python, so moto serves as the JSONata oracle too; it evaluates the composed text
plainly, without any of sconeflow's own code.

Lambda tasks: moto's interpreter calls Lambda through a boto3 client. `MotoMachine` swaps the
client factory of its Lambda module for one that calls local handlers in-process and, like
the real Lambda service, returns a handler's exception as an `Unhandled` error payload.
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from moto.stepfunctions.parser.api import (
    ExecutionStartedEventDetails,
    HistoryEventExecutionDataDetails,
    HistoryEventType,
    StateMachineType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.evaluation_details import AWSExecutionDetails
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
from moto.stepfunctions.parser.asl.eval.program_state import (
    ProgramEnded,
    ProgramError,
    ProgramTimedOut,
)
from moto.stepfunctions.parser.asl.eval.states import (
    ContextObjectData,
    ExecutionData,
    StateMachineData,
)
from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from sconeflow.workflow.lambdas import error_cause

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sconeflow-stepfunctions"
_patch_lock = threading.Lock()


def _evaluate_jsonata(expression: str) -> Any:
    import jsonata

    try:
        result = jsonata.Jsonata(expression).evaluate(None)
    except Exception as err:
        raise moto_jsonata.JSONataException("UNKNOWN", str(err)) from err
    return None if result is None else json.loads(json.dumps(result))


def _plug_jsonata() -> None:
    moto_jsonata._eval_jsonata = _evaluate_jsonata  # type: ignore[attr-defined]


_plug_jsonata()


class _FakeLambdaClient:
    def __init__(self, handlers: Mapping[str, Callable[[Any, Any], Any]]) -> None:
        self.handlers = handlers

    def invoke(self, FunctionName: str, Payload: bytes = b"{}", **_: Any) -> dict[str, Any]:
        name = FunctionName.split(":function:")[-1].split(":")[0]
        event = json.loads(Payload)
        request_id = str(uuid.uuid4())
        try:
            # Called directly: the same frame depth as sconeflow's call_handler, so the
            # stack traces in error causes match.
            result = self.handlers[name](event, None)
        except Exception as exc:
            body = error_cause(exc, request_id)
            return {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "ExecutedVersion": "$LATEST",
                "Payload": io.BytesIO(body.encode()),
            }
        return {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": io.BytesIO(json.dumps(result).encode()),
        }


@contextmanager
def _lambda_patched(handlers: Mapping[str, Callable[[Any, Any], Any]]) -> Iterator[None]:
    with _patch_lock:
        original = lambda_eval_utils.boto_client_for
        lambda_eval_utils.boto_client_for = lambda **kw: _FakeLambdaClient(handlers)
        try:
            yield
        finally:
            lambda_eval_utils.boto_client_for = original


class MotoMachine:
    """A definition parsed once by moto's interpreter, runnable many times."""

    def __init__(self, definition: dict[str, Any] | str, name: str = "sconeflow") -> None:
        self.text = definition if isinstance(definition, str) else json.dumps(definition)
        self.program = AmazonStateLanguageParser.parse(self.text)[0]
        self.name = name

    def run(
        self,
        execution_input: Any = None,
        handlers: Mapping[str, Callable[[Any, Any], Any]] | None = None,
        execution_name: str = "exec",
    ) -> dict[str, Any]:
        data = {} if execution_input is None else execution_input
        sm_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.name}"
        exec_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{self.name}:{execution_name}"
        env = Environment(
            aws_execution_details=AWSExecutionDetails(ACCOUNT, REGION, ROLE),
            execution_type=StateMachineType.STANDARD,
            context=ContextObjectData(  # type: ignore[typeddict-item]
                Execution=ExecutionData(
                    Id=exec_arn,
                    Input=data,
                    Name=execution_name,
                    RoleArn=ROLE,
                    StartTime="2024-01-01T00:00:00.000Z",
                ),
                StateMachine=StateMachineData(Id=sm_arn, Name=self.name),
            ),
            event_history_context=EventHistoryContext.of_program_start(),
            cloud_watch_logging_session=None,
            activity_store={},
        )
        # What moto's ExecutionWorker does first, so event ids match AWS's (state entered = #2).
        env.event_manager.add_event(
            context=env.event_history_context,
            event_type=HistoryEventType.ExecutionStarted,
            event_details=EventDetails(  # type: ignore[typeddict-item]
                executionStartedEventDetails=ExecutionStartedEventDetails(
                    input=json.dumps(data),
                    inputDetails=HistoryEventExecutionDataDetails(truncated=False),
                    roleArn=ROLE,
                )
            ),
            update_source_event_id=False,
        )
        if handlers:
            with _lambda_patched(handlers):
                self.program.eval(env)
        else:
            self.program.eval(env)
        state = env.program_state()
        events = env.event_manager.get_event_history()
        if isinstance(state, ProgramEnded):
            return {
                "status": "SUCCEEDED",
                "output": env.states.get_input(),
                "error": None,
                "cause": None,
                "events": events,
            }
        if isinstance(state, ProgramError):
            error = state.error or {}
            return {
                "status": "FAILED",
                "output": None,
                "error": error.get("error"),
                "cause": error.get("cause"),
                "events": events,
            }
        if isinstance(state, ProgramTimedOut):
            return {
                "status": "TIMED_OUT",
                "output": None,
                "error": None,
                "cause": None,
                "events": events,
            }
        return {
            "status": type(state).__name__,
            "output": None,
            "error": None,
            "cause": None,
            "events": events,
        }


# --- what the differential tests share: the Lambda handlers and the definition helpers -----
# Both engines call the same handlers by function name; `handlers()` is a fresh set per run,
# because "flaky" counts its calls.

FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{{}}"
INVOKE = "arn:aws:states:::lambda:invoke"
BIG = 257 * 1024  # characters: over AWS's 256 KiB payload quota


class CustomError(Exception):
    """A handler's own error: its class name is the Task's error name."""


def _add_one(event: Any, context: Any) -> Any:
    return {**event, "n": event.get("n", 0) + 1}


def _big(event: Any, context: Any) -> Any:
    return "a" * BIG


def _boom(event: Any, context: Any) -> Any:
    raise ValueError("bad input")


def _custom(event: Any, context: Any) -> Any:
    raise CustomError("custom failure")


def _echo(event: Any, context: Any) -> Any:
    return event


def _make_flaky() -> Callable[[Any, Any], Any]:
    calls = {"n": 0}

    def flaky(event: Any, context: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise CustomError("first call fails")
        return {"calls": calls["n"]}

    return flaky


def handlers() -> dict[str, Callable[[Any, Any], Any]]:
    """add_one, big (a result over the payload quota), boom (ValueError), custom
    (CustomError), echo, and flaky (CustomError on its first call only)."""
    return {
        "add_one": _add_one,
        "big": _big,
        "boom": _boom,
        "custom": _custom,
        "echo": _echo,
        "flaky": _make_flaky(),
    }


def one(state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A machine of one state named S (plus `extra` states); S ends it unless it has Next."""
    if state["Type"] not in ("Succeed", "Fail", "Choice") and "Next" not in state:
        state = {"End": True, **state}
    return {"StartAt": "S", "States": {"S": state, **extra}}


def fix_end(definition: dict[str, Any]) -> dict[str, Any]:
    """End every top-level state that needs Next or End and has neither (in place)."""
    for state in definition["States"].values():
        if state["Type"] in ("Task", "Pass", "Wait", "Parallel", "Map") and "Next" not in state:
            state.setdefault("End", True)
    return definition


# --- where moto departs from AWS ----------------------------------------------------------
# Each function turns one of moto's results into what AWS gives, for the cases where moto
# is known to differ; the differential tests apply them and say why.


def _recode_cause(text: Any) -> Any:
    """A Lambda error document in compact JSON, re-encoded as the Python runtime writes it."""
    if not isinstance(text, str) or not text.startswith('{"errorMessage"'):
        return text
    return json.dumps(json.loads(text))


def runtime_text_causes(result: dict[str, Any]) -> dict[str, Any]:
    """The plain function-ARN Task form: AWS passes on the Lambda runtime's own error text
    (`{"errorMessage": "...", ...}`, Python's default separators), where moto re-encodes it
    compactly. Applies to the execution's cause and to `Cause` fields in its output."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _recode_cause(v) if k == "Cause" else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    fixed = dict(result)
    fixed["cause"] = _recode_cause(result.get("cause"))
    fixed["output"] = walk(result.get("output"))
    return fixed


_MISSING_IN = re.compile(r"^(.* could not be found in the input ')(.*)'$", re.DOTALL)


def compact_missing_path_input(result: dict[str, Any]) -> dict[str, Any]:
    """"The JSONPath ... could not be found in the input '...'": AWS prints the input as
    compact JSON (`'{"flagged":false}'`), moto with Python's default separators."""
    cause = result.get("cause")
    match = _MISSING_IN.match(cause) if isinstance(cause, str) else None
    if match is None:
        return result
    compact = json.dumps(json.loads(match.group(2)), separators=(",", ":"), ensure_ascii=False)
    return {**result, "cause": f"{match.group(1)}{compact}'"}
