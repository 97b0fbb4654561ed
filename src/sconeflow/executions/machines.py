"""State machines in the workspace db: the one reader and the one writer of `state_machines`.

A state machine is what CreateStateMachine makes: a name, an ASL definition, a type
(STANDARD or EXPRESS), a role, and a revision id that changes with each UpdateStateMachine.
ARNs follow Step Functions: `arn:aws:states:us-east-1:123456789012:stateMachine:<name>`.
Executions keep the definition they ran on their own row (records.py), so an update or a
delete never changes what a running or past execution shows.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any

from sconeflow.errors import WorkflowError
from sconeflow.executions.definitions import ACCOUNT, REGION

DEFAULT_ROLE_ARN = "arn:aws:iam::123456789012:role/sconeflow-stepfunctions"


def machine_arn(name: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:states:{region}:{account}:stateMachine:{name}"


@dataclass(frozen=True)
class MachineRecord:
    """One state_machines row, parsed."""

    arn: str
    name: str
    type: str  # STANDARD | EXPRESS
    definition: str
    role_arn: str
    revision_id: str
    created_at: str
    updated_at: str
    logging: dict[str, Any] = field(default_factory=dict)
    tracing: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _record(row: sqlite3.Row) -> MachineRecord:
    return MachineRecord(
        arn=row["arn"], name=row["name"], type=row["type"], definition=row["definition"],
        role_arn=row["role_arn"], revision_id=row["revision_id"], created_at=row["created_at"],
        updated_at=row["updated_at"], logging=json.loads(row["logging"]),
        tracing=json.loads(row["tracing"]),
    )  # fmt: skip


def create_machine(
    conn: sqlite3.Connection,
    *,
    name: str,
    definition: str,
    role_arn: str = DEFAULT_ROLE_ARN,
    type: str = "STANDARD",
    logging: dict[str, Any] | None = None,
    tracing: dict[str, Any] | None = None,
) -> tuple[MachineRecord, bool]:
    """Record a new state machine; (record, created). CreateStateMachine is idempotent: the
    same name with the same definition, role and type returns the existing one (created
    False); a different one is StateMachineAlreadyExists."""
    arn, now = machine_arn(name), _now()
    try:
        conn.execute(
            "INSERT INTO state_machines (arn, name, type, definition, role_arn, revision_id,"
            " created_at, updated_at, logging, tracing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (arn, name, type, definition, role_arn, str(uuid.uuid4()), now, now,
             json.dumps(logging or {}), json.dumps(tracing or {})),
        )  # fmt: skip
    except sqlite3.IntegrityError as err:
        existing = get_machine(conn, arn)
        if existing is not None and (existing.definition, existing.role_arn, existing.type) == (
            definition, role_arn, type,
        ):  # fmt: skip
            return existing, False
        raise WorkflowError(
            f"StateMachineAlreadyExists: State Machine Already Exists: '{arn}'"
        ) from err
    found = get_machine(conn, arn)
    assert found is not None
    return found, True


def update_machine(
    conn: sqlite3.Connection,
    arn: str,
    *,
    definition: str | None = None,
    role_arn: str | None = None,
    logging: dict[str, Any] | None = None,
    tracing: dict[str, Any] | None = None,
) -> MachineRecord | None:
    """UpdateStateMachine: the fields given change, and the revision; None if no such ARN."""
    current = get_machine(conn, arn)
    if current is None:
        return None
    conn.execute(
        "UPDATE state_machines SET definition = ?, role_arn = ?, logging = ?, tracing = ?,"
        " revision_id = ?, updated_at = ? WHERE arn = ?",
        (definition if definition is not None else current.definition,
         role_arn or current.role_arn,
         json.dumps(logging if logging is not None else current.logging),
         json.dumps(tracing if tracing is not None else current.tracing),
         str(uuid.uuid4()), _now(), arn),
    )  # fmt: skip
    return get_machine(conn, arn)


def get_machine(conn: sqlite3.Connection, arn: str) -> MachineRecord | None:
    row = conn.execute("SELECT * FROM state_machines WHERE arn = ?", (arn,)).fetchone()
    return None if row is None else _record(row)


def list_machines(conn: sqlite3.Connection) -> list[MachineRecord]:
    """Every state machine, by name (ListStateMachines' order)."""
    rows = conn.execute("SELECT * FROM state_machines ORDER BY name").fetchall()
    return [_record(r) for r in rows]


def delete_machine(conn: sqlite3.Connection, arn: str) -> bool:
    """DeleteStateMachine; its executions and their history stay. False if no such ARN."""
    return conn.execute("DELETE FROM state_machines WHERE arn = ?", (arn,)).rowcount == 1
