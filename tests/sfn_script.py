"""One scripted Step Functions client, run unchanged against the console and moto's server.

`run_lifecycle(client)` goes through a state machine's whole life with a plain boto3
`stepfunctions` client and returns what it saw, step by step, as plain values without
timestamps or random ids, so that two servers' answers can be compared. A step that the
server cannot do records the error it answered instead of stopping the script.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::123456789012:role/sconeflow-test"
ACCOUNT_PREFIX = "arn:aws:states:us-east-1:123456789012"

# Pass -> Choice -> (Wait until $.until | Fail | Pass): no Lambda, so any server runs it.
MAIN: dict[str, Any] = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": "ok", "ResultPath": "$.prepared", "Next": "Route"},
        "Route": {"Type": "Choice", "Choices": [
            {"Variable": "$.fail", "IsPresent": True, "Next": "Boom"},
            {"Variable": "$.until", "IsPresent": True, "Next": "Hold"},
        ], "Default": "Done"},
        "Hold": {"Type": "Wait", "TimestampPath": "$.until", "Next": "Done"},
        "Boom": {"Type": "Fail", "Error": "Boom", "Cause": "asked to fail"},
        "Done": {"Type": "Pass", "Result": "v1", "ResultPath": "$.version", "End": True},
    },
}  # fmt: skip
CONCURRENT = 200


def until(seconds: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(err: ClientError) -> dict[str, Any]:
    return {"error": err.response["Error"]["Code"],
            "status": err.response["ResponseMetadata"]["HTTPStatusCode"]}  # fmt: skip


def _wait_status(client: Any, arn: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = client.describe_execution(executionArn=arn)
        if info["status"] != "RUNNING" or time.monotonic() > deadline:
            return dict(info)
        time.sleep(0.05)


def _wait_entered(client: Any, arn: str, state: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        if any(e.get("stateEnteredEventDetails", {}).get("name") == state for e in events):
            return True
        time.sleep(0.05)
    return False


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["type"]) for e in events]


def run_lifecycle(client: Any, *, concurrent: int = CONCURRENT) -> dict[str, Any]:
    """The script; returns {step: observation}."""
    seen: dict[str, Any] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        try:
            seen[name] = fn()
        except ClientError as err:
            seen[name] = _error(err)
        return seen[name]

    arn = f"{ACCOUNT_PREFIX}:stateMachine:lifecycle"
    ex = f"{ACCOUNT_PREFIX}:execution:lifecycle"
    created = client.create_state_machine(name="lifecycle", definition=json.dumps(MAIN),
                                          roleArn=ROLE)  # fmt: skip
    seen["create"] = {"arn": created["stateMachineArn"],
                      "has_date": isinstance(created.get("creationDate"), dt.datetime)}

    def describe_machine() -> Any:
        d = client.describe_state_machine(stateMachineArn=arn)
        return {"name": d["name"], "type": d["type"], "status": d.get("status"),
                "definition": json.loads(d["definition"]) == MAIN, "role": d["roleArn"]}

    step("describe_machine", describe_machine)
    step("list_machines", lambda: [m["name"] for m in
                                   client.list_state_machines()["stateMachines"]])

    # --- every error, once ---
    step("err_invalid_definition", lambda: client.create_state_machine(
        name="broken", definition=json.dumps({"StartAt": "Nowhere", "States": {}}),
        roleArn=ROLE))  # fmt: skip
    step("err_invalid_name", lambda: client.create_state_machine(
        name="has space", definition=json.dumps(MAIN), roleArn=ROLE))
    step("err_invalid_arn", lambda: client.describe_execution(executionArn="not-an-arn"))
    step("err_machine_missing", lambda: client.describe_state_machine(
        stateMachineArn=f"{ACCOUNT_PREFIX}:stateMachine:missing"))
    step("err_execution_missing", lambda: client.describe_execution(
        executionArn=f"{ex}:missing"))
    step("err_validation", lambda: client.list_executions(stateMachineArn=arn,
                                                          statusFilter="BOGUS"))

    # --- idempotent start: same name and input while open; different input refused ---
    idem_input = json.dumps({"until": until(2)})

    def idempotent() -> Any:
        first = client.start_execution(stateMachineArn=arn, name="idem", input=idem_input)
        again = client.start_execution(stateMachineArn=arn, name="idem", input=idem_input)
        return {"same_arn": first["executionArn"] == again["executionArn"] == f"{ex}:idem"}

    step("start_idempotent", idempotent)
    step("err_already_exists", lambda: client.start_execution(
        stateMachineArn=arn, name="idem", input=json.dumps({"other": 1})))

    step("idempotent_ended", lambda: _wait_status(client, f"{ex}:idem")["status"])

    # --- one, then many at once ---
    first = f"{ex}:first"
    step("first", lambda: _wait_status(client, client.start_execution(
        stateMachineArn=arn, name="first", input=json.dumps({"n": "first"}))["executionArn"]
    )["status"])
    names = [f"c{i:03d}" for i in range(concurrent)]

    def start(n: str) -> str | dict[str, Any]:
        try:
            return str(client.start_execution(stateMachineArn=arn, name=n,
                                              input=json.dumps({"n": n}))["executionArn"])
        except ClientError as err:  # moto's server breaks under concurrent starts
            return _error(err)

    with ThreadPoolExecutor(max_workers=16) as pool:
        started = list(pool.map(start, names))
    arns = [a for a in started if isinstance(a, str)]
    failures = [a for a in started if not isinstance(a, str)]
    seen["start_concurrent"] = {"started": len(set(arns)),
                                "errors": sorted({f["status"] for f in failures})}
    with ThreadPoolExecutor(max_workers=8) as pool:
        ended = list(pool.map(lambda a: _wait_status(client, a)["status"], arns))
    seen["concurrent_ended"] = sorted(set(ended))

    def listed() -> Any:
        pages, items, token = 0, [], None
        while True:
            kwargs = {"stateMachineArn": arn, "maxResults": 37, **({"nextToken": token}
                                                                   if token else {})}
            page = client.list_executions(**kwargs)
            pages += 1
            items += page["executions"]
            token = page.get("nextToken")
            if not token:
                break
        starts = [i["startDate"] for i in items]
        ours = {i["executionArn"] for i in items} & set(arns)
        return {"pages": pages, "unique": len({i["executionArn"] for i in items}) == len(items),
                "all_listed": len(ours) == len(arns),
                "newest_first": starts == sorted(starts, reverse=True)}

    step("list_paginated", listed)
    step("list_filtered", lambda: sorted({e["status"] for e in client.list_executions(
        stateMachineArn=arn, statusFilter="SUCCEEDED", maxResults=1000)["executions"]}))

    def describe_one() -> Any:
        d = client.describe_execution(executionArn=first)
        return {"status": d["status"], "name": d["name"], "output": json.loads(d["output"]),
                "machine": d["stateMachineArn"]}

    step("describe_execution", describe_one)

    def history() -> Any:
        full = client.get_execution_history(executionArn=first)["events"]
        back = client.get_execution_history(executionArn=first, reverseOrder=True)["events"]
        paged, token = [], None
        while True:
            page = client.get_execution_history(executionArn=first, maxResults=3,
                                                **({"nextToken": token} if token else {}))
            paged += page["events"]
            token = page.get("nextToken")
            if not token:
                break
        return {"types": _types(full), "reverse": _types(back) == _types(full)[::-1],
                "paged": [e["id"] for e in paged] == [e["id"] for e in full],
                "ids": [e["id"] for e in full] == list(range(1, len(full) + 1))}

    step("history", history)

    def failing() -> Any:
        a = client.start_execution(stateMachineArn=arn, name="failing",
                                   input=json.dumps({"fail": True}))["executionArn"]
        d = _wait_status(client, a)
        return {"status": d["status"], "error": d.get("error"), "cause": d.get("cause")}

    step("failed_execution", failing)
    step("err_not_redrivable", lambda: client.redrive_execution(executionArn=first))

    # --- stop in a Wait, then redrive once the Wait's moment has passed ---
    hold_until = until(3)
    stop_arn = f"{ex}:stopme"
    step("stop_started", lambda: _wait_entered(client, client.start_execution(
        stateMachineArn=arn, name="stopme", input=json.dumps({"until": hold_until})
    )["executionArn"], "Hold"))

    def stop() -> Any:
        client.stop_execution(executionArn=stop_arn, error="Manual", cause="from the test")
        d = _wait_status(client, stop_arn, timeout=10)
        last = client.get_execution_history(executionArn=stop_arn, reverseOrder=True,
                                            maxResults=1)["events"][0]  # fmt: skip
        return {"status": d["status"], "error": d.get("error"), "cause": d.get("cause"),
                "last_event": last["type"], "details": last.get("executionAbortedEventDetails")}

    step("stop", stop)

    def redrive() -> Any:
        time.sleep(max(0.0, (dt.datetime.fromisoformat(hold_until) - dt.datetime.now(dt.UTC))
                       .total_seconds() + 0.2))  # fmt: skip
        client.redrive_execution(executionArn=stop_arn)
        d = _wait_status(client, stop_arn)
        events = client.get_execution_history(executionArn=stop_arn, maxResults=1000)["events"]
        return {"status": d["status"], "redrive_count": d.get("redriveCount"),
                "redriven": "ExecutionRedriven" in _types(events),
                "version": json.loads(d.get("output") or "{}").get("version")}

    step("redrive", redrive)

    step("machine_for_execution", lambda: json.loads(client.describe_state_machine_for_execution(
        executionArn=first)["definition"]) == MAIN)

    # --- update: new executions run the new definition, old ones keep theirs ---
    v2 = json.loads(json.dumps(MAIN))
    v2["States"]["Done"]["Result"] = "v2"

    def update() -> Any:
        out = client.update_state_machine(stateMachineArn=arn, definition=json.dumps(v2))
        a = client.start_execution(stateMachineArn=arn, name="after-update")["executionArn"]
        d = _wait_status(client, a)
        old = client.describe_state_machine_for_execution(executionArn=first)
        return {"has_update_date": "updateDate" in out,
                "new_output": json.loads(d.get("output") or "{}").get("version"),
                "old_definition_kept": json.loads(old["definition"]) == MAIN}

    step("update", update)

    def test_state() -> Any:
        out = client.test_state(definition=json.dumps(
            {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r", "Next": "Later"}),
            roleArn=ROLE, input=json.dumps({"a": 1}))  # fmt: skip
        return {"status": out["status"], "output": json.loads(out["output"]),
                "next": out.get("nextState")}

    step("test_state", test_state)
    step("validate", lambda: client.validate_state_machine_definition(
        definition=json.dumps({"StartAt": "Nowhere", "States": {}}))["result"])

    def express() -> Any:
        e = client.create_state_machine(name="quick", definition=json.dumps(MAIN),
                                        roleArn=ROLE, type="EXPRESS")["stateMachineArn"]
        out = client.start_sync_execution(stateMachineArn=e, input=json.dumps({"k": 1}))
        return {"status": out["status"], "output": json.loads(out["output"])}

    step("express_sync", express)

    def delete() -> Any:
        client.delete_state_machine(stateMachineArn=arn)
        try:
            client.describe_state_machine(stateMachineArn=arn)
            gone = None
        except ClientError as err:
            gone = _error(err)
        kept = client.describe_execution(executionArn=first)["status"]
        return {"describe_after": gone, "execution_kept": kept}

    step("delete", delete)
    return seen
