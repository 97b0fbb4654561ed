"""The Step Functions API (AWS JSON 1.0, `X-Amz-Target: AWSStepFunctions.<Action>`).

Each action is a function of the request body that returns the response body, with the
shapes of botocore's service model (botocore/data/stepfunctions/2016-11-23) and the
errors of the API reference, all HTTP 400 as on AWS. Where a rule comes from the reference
its docstring says so. State machines are rows of `state_machines` (executions.machines);
executions and history are read and written by executions.records; executions run on the
console's Executor.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from sconeflow.console.executor import Executor
from sconeflow.console.protocol import (
    AwsError,
    decode_token,
    encode_token,
    epoch,
    page_size,
    required,
    text_field,
)
from sconeflow.errors import WorkflowError
from sconeflow.executions import machines, records
from sconeflow.executions.machines import DEFAULT_ROLE_ARN, MachineRecord
from sconeflow.executions.records import FAILED_STATUSES, ExecutionRecord
from sconeflow.executions.runner import name_problem

Body = Mapping[str, Any]
Action = Callable[["Call", Body], dict[str, Any]]

_MACHINE_ARN = re.compile(r"^arn:aws[\w-]*:states:[\w-]+:\d{12}:stateMachine:([^:]+)$")
_EXECUTION_ARN = re.compile(
    r"^arn:aws[\w-]*:states:[\w-]+:\d{12}:(?:execution|express):([^:]+):([^:]+)$"
)
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
MAX_INPUT = 262_144  # bytes of execution input (SensitiveData max)


class StepFunctionsApi:
    """The actions, bound to one workspace and one executor; `call` is thread-safe."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.settings = executor.settings
        self.redrive_tokens: dict[tuple[str, str], float] = {}

    def call(self, action: str, body: Body) -> dict[str, Any]:
        fn = ACTIONS.get(action)
        if fn is None:
            raise AwsError("UnknownOperationException", f"Unknown operation {action!r}")
        conn = self.executor.connection()  # this thread's, kept open between calls
        try:
            return fn(Call(self, conn), body)
        except WorkflowError as err:  # raised below the API with "Code: message"
            code, _, message = str(err).partition(": ")
            if code.isidentifier() and message:
                raise AwsError(code, message) from err
            raise AwsError("ValidationException", str(err)) from err
        finally:
            if conn.in_transaction:  # a call that broke halfway leaves nothing to the next
                conn.rollback()


class Call:
    """One request: the api's shared parts and a db connection of its own."""

    def __init__(self, api: StepFunctionsApi, conn: sqlite3.Connection) -> None:
        self.executor, self.conn = api.executor, conn
        self.redrive_tokens = api.redrive_tokens

    def machine(self, arn: Any) -> MachineRecord:
        if not isinstance(arn, str) or not _MACHINE_ARN.fullmatch(arn):
            raise AwsError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this "
                                         f"context: {arn}'")  # fmt: skip
        found = machines.get_machine(self.conn, arn)
        if found is None:
            raise AwsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return found

    def execution(self, arn: Any) -> ExecutionRecord:
        if not isinstance(arn, str) or not _EXECUTION_ARN.fullmatch(arn):
            raise AwsError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this "
                                         f"context: {arn}'")  # fmt: skip
        record = records.current_record(self.conn, arn)  # an orphan is ended ABORTED first
        if record is None:
            raise AwsError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return record


# --- state machines ------------------------------------------------------------------------


def _check_definition(definition: Any, name: str = "sconeflow") -> str:
    """InvalidDefinition, with every problem the validator found, as CreateStateMachine."""
    from sconeflow.workflow import DefinitionError, parse_definition

    if not isinstance(definition, str):
        raise AwsError("InvalidDefinition", "Invalid State Machine Definition: 'not a string'")
    try:
        parse_definition(definition, name=name)
    except DefinitionError as err:
        raise AwsError("InvalidDefinition",
                       "Invalid State Machine Definition: '" + "; ".join(err.problems) + "'"
                       ) from err  # fmt: skip
    return definition


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise AwsError("InvalidName", f"Invalid Name: '{name}'")
    problem = name_problem(name)
    if problem:
        raise AwsError("InvalidName", f"Invalid Name: '{name}' ({problem})")
    return name


def _check_role(role: Any) -> str:
    if not isinstance(role, str) or not _ROLE_ARN.fullmatch(role):
        raise AwsError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: "
                                     f"{role}'")  # fmt: skip
    return role


def _describe_machine(m: MachineRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "stateMachineArn": m.arn, "name": m.name, "status": "ACTIVE",
        "definition": m.definition, "roleArn": m.role_arn, "type": m.type,
        "creationDate": epoch(m.created_at), "revisionId": m.revision_id,
        "loggingConfiguration": m.logging or {"level": "OFF", "includeExecutionData": False},
        "tracingConfiguration": m.tracing or {"enabled": False},
    }  # fmt: skip
    return out


def create_state_machine(api: Call, body: Body) -> dict[str, Any]:
    name = _check_name(required(body, "name"))
    kind = body.get("type") or "STANDARD"
    if kind not in ("STANDARD", "EXPRESS"):
        raise AwsError("ValidationException", f"1 validation error detected: Value '{kind}' at "
                       "'type' failed to satisfy constraint: Member must satisfy enum value set: "
                       "[STANDARD, EXPRESS]")  # fmt: skip
    definition = _check_definition(required(body, "definition"), name)
    role = _check_role(required(body, "roleArn"))
    record, _ = machines.create_machine(
        api.conn, name=name, definition=definition, role_arn=role, type=kind,
        logging=body.get("loggingConfiguration"), tracing=body.get("tracingConfiguration"),
    )  # fmt: skip
    return {"stateMachineArn": record.arn, "creationDate": epoch(record.created_at)}


def update_state_machine(api: Call, body: Body) -> dict[str, Any]:
    """Running executions go on with the definition they started with (API reference:
    "executions ... in progress ... continue to use the previous definition")."""
    current = api.machine(required(body, "stateMachineArn"))
    definition, role = body.get("definition"), body.get("roleArn")
    if definition is None and role is None and not (
        body.get("loggingConfiguration") or body.get("tracingConfiguration")
    ):
        raise AwsError("MissingRequiredParameter", "Either the definition, the roleArn, the "
                       "loggingConfiguration or the tracingConfiguration must be specified")
    if definition is not None:
        _check_definition(definition, current.name)
    if role is not None:
        _check_role(role)
    updated = machines.update_machine(
        api.conn, current.arn, definition=definition, role_arn=role,
        logging=body.get("loggingConfiguration"), tracing=body.get("tracingConfiguration"),
    )  # fmt: skip
    assert updated is not None
    return {"updateDate": epoch(updated.updated_at), "revisionId": updated.revision_id}


def describe_state_machine(api: Call, body: Body) -> dict[str, Any]:
    return _describe_machine(api.machine(required(body, "stateMachineArn")))


def list_state_machines(api: Call, body: Body) -> dict[str, Any]:
    size = page_size(body.get("maxResults"))
    cursor = decode_token(body.get("nextToken"), "machines")
    rows = machines.list_machines(api.conn)
    if cursor is not None:
        rows = [m for m in rows if m.name > cursor["after"]]
    page = rows[:size]
    out: dict[str, Any] = {"stateMachines": [
        {"stateMachineArn": m.arn, "name": m.name, "type": m.type,
         "creationDate": epoch(m.created_at)} for m in page
    ]}  # fmt: skip
    if len(rows) > size:
        out["nextToken"] = encode_token({"kind": "machines", "after": page[-1].name})
    return out


def delete_state_machine(api: Call, body: Body) -> dict[str, Any]:
    """Idempotent, as the reference says of a machine that is already gone; its executions
    (and running ones) stay, with the definition they ran."""
    arn = required(body, "stateMachineArn")
    if not isinstance(arn, str) or not _MACHINE_ARN.fullmatch(arn):
        raise AwsError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this "
                                     f"context: {arn}'")  # fmt: skip
    machines.delete_machine(api.conn, arn)
    return {}


def validate_state_machine_definition(api: Call, body: Body) -> dict[str, Any]:
    from sconeflow.workflow import DefinitionError, parse_definition

    definition = required(body, "definition")
    try:
        parse_definition(definition)
    except DefinitionError as err:
        limit = page_size(body.get("maxResults"), default=100, limit=100)
        diagnostics = [
            {"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": problem,
             **({"location": m.group(1)} if (m := re.match(r"State '([^']+)'", problem))
                else {})}
            for problem in err.problems
        ]  # fmt: skip
        return {"result": "FAIL", "diagnostics": diagnostics[:limit],
                "truncated": len(diagnostics) > limit}  # fmt: skip
    return {"result": "OK", "diagnostics": [], "truncated": False}


# --- executions ----------------------------------------------------------------------------


def _input(body: Body) -> Any:
    text = body.get("input")
    if text is None:
        return {}
    if not isinstance(text, str) or len(text.encode()) > MAX_INPUT:
        raise AwsError("InvalidExecutionInput", "Invalid input: the input must be JSON text of "
                       f"at most {MAX_INPUT} bytes")  # fmt: skip
    try:
        return json.loads(text)
    except ValueError as err:
        raise AwsError("InvalidExecutionInput", f"Invalid State Machine Execution Input: "
                       f"'{err}'") from err  # fmt: skip


def start_execution(api: Call, body: Body) -> dict[str, Any]:
    """Idempotent as the reference defines it: the same name and input as an execution
    that is still open returns that execution; a different input, or an execution that is
    closed, is ExecutionAlreadyExists (EXPRESS machines are not idempotent)."""
    machine = api.machine(required(body, "stateMachineArn"))
    data = _input(body)
    name = body.get("name")
    if name is not None:
        _check_name(name)
    owner = api.executor.runner_for(machine.name, machine.definition)
    try:
        arn = api.executor.start(owner, data, name)
    except WorkflowError as err:
        if not str(err).startswith("ExecutionAlreadyExists") or name is None:
            raise
        arn = owner.arn_for(name)
        existing = records.read_record(api.conn, arn)
        if machine.type == "STANDARD" and existing.status == "RUNNING" and (
            json.loads(existing.input) == data
        ):
            return {"executionArn": arn, "startDate": epoch(existing.started_at)}
        raise AwsError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'") from err
    return {"executionArn": arn, "startDate": epoch(records.read_record(api.conn, arn).started_at)}


def start_sync_execution(api: Call, body: Body) -> dict[str, Any]:
    machine = api.machine(required(body, "stateMachineArn"))
    if machine.type != "EXPRESS":
        raise AwsError("StateMachineTypeNotSupported",
                       "This operation is not supported by this type of state machine")
    data = _input(body)
    name = body.get("name")
    if name is not None:
        _check_name(name)
    record = api.executor.run_sync(api.executor.runner_for(machine.name, machine.definition),
                                   data, name)  # fmt: skip
    out = {k: v for k, v in _describe_execution(record).items()
           if k not in ("redriveCount", "redriveStatus", "redriveStatusReason", "redriveDate")}
    started, stopped = out["startDate"], out.get("stopDate") or out["startDate"]
    out["billingDetails"] = {"billedMemoryUsedInMB": 64,
                             "billedDurationInMilliseconds": int((stopped - started) * 1000)}
    return out


def stop_execution(api: Call, body: Body) -> dict[str, Any]:
    """An open execution ends ABORTED with `error` and `cause` on its ExecutionAborted
    event; a closed one is left as it was (LocalStack's provider, checked against AWS, does
    the same) and the call still answers a stopDate."""
    record = api.execution(required(body, "executionArn"))
    error = text_field(body, "error", 256)
    cause = text_field(body, "cause", 32_768)
    if record.status == "RUNNING":
        api.executor.stop(record.arn, error=error, cause=cause)
        record = records.read_record(api.conn, record.arn)
    return {"stopDate": epoch(record.stopped_at) or epoch(dt.datetime.now(dt.UTC))}


def _describe_execution(record: ExecutionRecord) -> dict[str, Any]:
    out = record.describe()
    for key in ("startDate", "stopDate", "redriveDate"):
        if key in out:
            out[key] = epoch(out[key])
    if record.status not in FAILED_STATUSES:
        out["redriveStatusReason"] = f"Execution is {record.status} and cannot be redriven"
    return out


def describe_execution(api: Call, body: Body) -> dict[str, Any]:
    return _describe_execution(api.execution(required(body, "executionArn")))


def describe_state_machine_for_execution(api: Call, body: Body) -> dict[str, Any]:
    """The definition the execution ran, even after an update or a delete."""
    record = api.execution(required(body, "executionArn"))
    definition = json.dumps(records.read_definition(api.conn, record.arn))
    current = machines.get_machine(api.conn, record.state_machine_arn)
    same = current is not None and json.loads(current.definition) == json.loads(definition)
    return {
        "stateMachineArn": record.state_machine_arn, "name": record.state_machine,
        "definition": current.definition if same and current else definition,
        "roleArn": current.role_arn if current else DEFAULT_ROLE_ARN,
        "updateDate": epoch(current.updated_at if same and current else record.started_at),
        **({"revisionId": current.revision_id} if same and current else {}),
    }  # fmt: skip


def list_executions(api: Call, body: Body) -> dict[str, Any]:
    """Newest first; `statusFilter`; pages of `maxResults` (default 100, at most 1000).
    A state machine that only `sconeflow workflow run` ran (no row, but executions) lists
    them too. EXPRESS machines are StateMachineTypeNotSupported, as on AWS."""
    arn = body.get("stateMachineArn")
    if arn is None:
        raise AwsError("ValidationException", "Must provide a StateMachine ARN or MapRun ARN")
    if not isinstance(arn, str) or not (match := _MACHINE_ARN.fullmatch(arn)):
        raise AwsError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this "
                                     f"context: {arn}'")  # fmt: skip
    name = match.group(1)
    machine = machines.get_machine(api.conn, arn)
    if machine is None and name not in records.machine_names(api.conn):
        raise AwsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
    if machine is not None and machine.type == "EXPRESS":
        raise AwsError("StateMachineTypeNotSupported",
                       "This operation is not supported by this type of state machine")
    status = body.get("statusFilter")
    if status is not None and status not in STATUSES:
        raise AwsError("ValidationException", f"1 validation error detected: Value '{status}' "
                       "at 'statusFilter' failed to satisfy constraint: Member must satisfy "
                       f"enum value set: [{', '.join(STATUSES)}]")  # fmt: skip
    size = page_size(body.get("maxResults"))
    cursor = decode_token(body.get("nextToken"), "executions")
    records.recover_orphans(api.conn)
    page, after = records.page_executions(
        api.conn, state_machine=name, status=status, limit=size,
        after=(cursor["after"][0], cursor["after"][1]) if cursor else None,
    )  # fmt: skip
    out: dict[str, Any] = {"executions": [_list_item(r) for r in page]}
    if after is not None:
        out["nextToken"] = encode_token({"kind": "executions", "after": list(after)})
    return out


def _list_item(r: ExecutionRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "executionArn": r.arn, "stateMachineArn": r.state_machine_arn, "name": r.name,
        "status": r.status, "startDate": epoch(r.started_at), "redriveCount": r.redrive_count,
    }  # fmt: skip
    if r.stopped_at:
        item["stopDate"] = epoch(r.stopped_at)
    if r.redrive_date:
        item["redriveDate"] = epoch(r.redrive_date)
    return item


def get_execution_history(api: Call, body: Body) -> dict[str, Any]:
    """Events oldest first (newest first with `reverseOrder`), pages of `maxResults`
    (default 100, at most 1000); `includeExecutionData: false` leaves out inputs and
    outputs."""
    record = api.execution(required(body, "executionArn"))
    size = page_size(body.get("maxResults"))
    reverse = bool(body.get("reverseOrder"))
    cursor = decode_token(body.get("nextToken"), "history")
    events = records.read_history(api.conn, record.arn)
    if reverse:
        events.reverse()
    start = 0
    if cursor is not None:
        if cursor.get("arn") != record.arn or cursor.get("reverse") != reverse:
            raise AwsError("InvalidToken", f"Invalid Token: '{body.get('nextToken')}'")
        start = int(cursor["at"])
    page = events[start:start + size]
    with_data = body.get("includeExecutionData", True) is not False
    out: dict[str, Any] = {"events": [_event(e, with_data) for e in page]}
    if start + size < len(events):
        out["nextToken"] = encode_token({"kind": "history", "arn": record.arn,
                                         "reverse": reverse, "at": start + size})  # fmt: skip
    return out


def _event(event: dict[str, Any], with_data: bool) -> dict[str, Any]:
    out = dict(event)
    out["timestamp"] = epoch(event["timestamp"])
    if not with_data:
        for key, value in event.items():
            if key.endswith("EventDetails") and isinstance(value, dict):
                out[key] = {k: v for k, v in value.items()
                            if k not in ("input", "output", "inputDetails", "outputDetails")}
    return out


def redrive_execution(api: Call, body: Body) -> dict[str, Any]:
    """FAILED, TIMED_OUT and ABORTED executions of STANDARD machines redrive (API reference);
    anything else is ExecutionNotRedrivable. A clientToken seen before for the same
    execution answers the same redriveDate without redriving again."""
    record = api.execution(required(body, "executionArn"))
    token = text_field(body, "clientToken", 64)
    if token is not None and (record.arn, token) in api.redrive_tokens:
        return {"redriveDate": api.redrive_tokens[(record.arn, token)]}
    machine = machines.get_machine(api.conn, record.state_machine_arn)
    if machine is not None and machine.type == "EXPRESS":
        raise AwsError("ExecutionNotRedrivable",
                       f"Execution with arn {record.arn} cannot be redriven: EXPRESS "
                       "executions are not redrivable")  # fmt: skip
    if record.status not in FAILED_STATUSES:
        raise AwsError("ExecutionNotRedrivable",
                       f"Execution with arn {record.arn} cannot be redriven: it is "
                       f"{record.status}; only FAILED, TIMED_OUT and ABORTED executions "
                       "can be redriven")  # fmt: skip
    definition = json.dumps(records.read_definition(api.conn, record.arn))
    api.executor.redrive(record.arn, definition, record.state_machine)
    date = epoch(dt.datetime.now(dt.UTC))
    assert date is not None
    if token is not None:
        api.redrive_tokens[(record.arn, token)] = date
    return {"redriveDate": date}


def test_state(api: Call, body: Body) -> dict[str, Any]:
    from sconeflow.console.test_state import run_test_state

    definition = required(body, "definition")
    if body.get("roleArn") is not None:
        _check_role(body["roleArn"])
    return run_test_state(api.executor, definition, _input(body), body.get("stateName"),
                          body.get("inspectionLevel") or "INFO")  # fmt: skip


ACTIONS: dict[str, Action] = {
    "CreateStateMachine": create_state_machine,
    "UpdateStateMachine": update_state_machine,
    "DescribeStateMachine": describe_state_machine,
    "ListStateMachines": list_state_machines,
    "DeleteStateMachine": delete_state_machine,
    "ValidateStateMachineDefinition": validate_state_machine_definition,
    "StartExecution": start_execution,
    "StartSyncExecution": start_sync_execution,
    "StopExecution": stop_execution,
    "DescribeExecution": describe_execution,
    "DescribeStateMachineForExecution": describe_state_machine_for_execution,
    "ListExecutions": list_executions,
    "GetExecutionHistory": get_execution_history,
    "RedriveExecution": redrive_execution,
    "TestState": test_state,
}

