"""The console's Step Functions API, through an unmodified boto3 client, against a real
console process; and the same scripted client against moto's server, with every place
where the two differ named and AWS's behaviour (from the API reference) said."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import free_port
from console_support import client, start_console, stop_console
from sfn_script import ACCOUNT_PREFIX, ROLE, run_lifecycle

pytestmark = pytest.mark.slow

# What AWS answers at each step of the script (API reference: StartExecution, ListExecutions,
# GetExecutionHistory, StopExecution, RedriveExecution, TestState, Common Errors). Every
# error is HTTP 400 on AWS: the reference lists each with "HTTP Status Code: 400".
AWS: dict[str, Any] = {
    "create": {"arn": f"{ACCOUNT_PREFIX}:stateMachine:lifecycle", "has_date": True},
    "describe_machine": {"name": "lifecycle", "type": "STANDARD", "status": "ACTIVE",
                         "definition": True, "role": ROLE},
    "list_machines": ["lifecycle"],
    "err_invalid_definition": {"error": "InvalidDefinition", "status": 400},
    "err_invalid_name": {"error": "InvalidName", "status": 400},
    "err_invalid_arn": {"error": "InvalidArn", "status": 400},
    "err_machine_missing": {"error": "StateMachineDoesNotExist", "status": 400},
    "err_execution_missing": {"error": "ExecutionDoesNotExist", "status": 400},
    "err_validation": {"error": "ValidationException", "status": 400},
    # "When the original execution is open and the execution input from the new call is
    # identical, the Success message is returned"; different input: ExecutionAlreadyExists.
    "start_idempotent": {"same_arn": True},
    "err_already_exists": {"error": "ExecutionAlreadyExists", "status": 400},
    "idempotent_ended": "SUCCEEDED",
    "first": "SUCCEEDED",
    "start_concurrent": {"started": 200, "errors": []},
    "concurrent_ended": ["SUCCEEDED"],
    # 202 executions in pages of 37: 6 pages, "sorted by time, with the most recent first".
    "list_paginated": {"pages": 6, "unique": True, "all_listed": True, "newest_first": True},
    "list_filtered": ["SUCCEEDED"],
    "describe_execution": {"status": "SUCCEEDED", "name": "first",
                           "output": {"n": "first", "prepared": "ok", "version": "v1"},
                           "machine": f"{ACCOUNT_PREFIX}:stateMachine:lifecycle"},
    "history": {"types": ["ExecutionStarted", "PassStateEntered", "PassStateExited",
                          "ChoiceStateEntered", "ChoiceStateExited", "PassStateEntered",
                          "PassStateExited", "ExecutionSucceeded"],
                "reverse": True, "paged": True, "ids": True},
    "failed_execution": {"status": "FAILED", "error": "Boom", "cause": "asked to fail"},
    # RedriveExecution: only FAILED, TIMED_OUT or ABORTED executions can be redriven.
    "err_not_redrivable": {"error": "ExecutionNotRedrivable", "status": 400},
    "stop_started": True,
    "stop": {"status": "ABORTED", "error": "Manual", "cause": "from the test",
             "last_event": "ExecutionAborted",
             "details": {"error": "Manual", "cause": "from the test"}},
    "redrive": {"status": "SUCCEEDED", "redrive_count": 1, "redriven": True, "version": "v1"},
    "machine_for_execution": True,
    # UpdateStateMachine: running and past executions keep the definition they started with.
    "update": {"has_update_date": True, "new_output": "v2", "old_definition_kept": True},
    "test_state": {"status": "SUCCEEDED", "output": {"a": 1, "r": {"x": 1}}, "next": "Later"},
    "validate": "FAIL",
    "express_sync": {"status": "SUCCEEDED",
                     "output": {"k": 1, "prepared": "ok", "version": "v1"}},
    "delete": {"describe_after": {"error": "StateMachineDoesNotExist", "status": 400},
               "execution_kept": "SUCCEEDED"},
}  # fmt: skip

# Where moto 5's server (execute_state_machine on) answers differently, and why; the
# console answers as AWS does (AWS above).
MOTO_DIFFERS = {
    "err_invalid_definition": "moto answers 400 with an empty error code",
    "err_validation": "moto does not check statusFilter against the enum",
    "err_not_redrivable": "moto has no RedriveExecution (500)",
    "first": "moto's server fails every StartExecution of a machine that already has an "
             "execution (500: it deep-copies the machine with its running executions' locks)",
    "start_concurrent": "the same moto bug: all 200 starts answer 500",
    "concurrent_ended": "no execution was started",
    "list_paginated": "one page: only the one execution moto could start",
    "describe_execution": "the execution could not be started",
    "history": "the execution could not be started",
    "failed_execution": "the execution could not be started",
    "stop_started": "the execution could not be started",
    "stop": "the execution could not be started",
    "redrive": "moto has no RedriveExecution (500)",
    "machine_for_execution": "the execution could not be started",
    "update": "the execution after the update could not be started",
    "test_state": "moto has no TestState (500)",
    "validate": "moto has no ValidateStateMachineDefinition (500)",
    "express_sync": "moto has no StartSyncExecution (500)",
    "delete": "the execution it describes afterwards could not be started",
}  # fmt: skip


@pytest.fixture(scope="module")
def console_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("console") / "home"
    proc, url = start_console(home)
    try:
        yield url
    finally:
        stop_console(proc)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    config = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/config", data=config,
                                                  method="POST")).read()  # fmt: skip
    try:
        yield url
    finally:
        urllib.request.urlopen(urllib.request.Request(
            f"{url}/moto-api/config", method="POST",
            data=json.dumps({"stepfunctions": {"execute_state_machine": False}}).encode(),
        )).read()  # fmt: skip
        server.stop()


@pytest.fixture(scope="module")
def console_seen(console_url: str) -> dict[str, Any]:
    return run_lifecycle(client(console_url))


def test_console_answers_every_step_as_aws_does(console_seen: dict[str, Any]) -> None:
    assert set(console_seen) == set(AWS)
    wrong = {k: (console_seen[k], AWS[k]) for k in AWS if console_seen[k] != AWS[k]}
    assert wrong == {}


def test_the_same_script_against_moto_differs_only_where_said(
    console_seen: dict[str, Any], moto_url: str
) -> None:
    moto_seen = run_lifecycle(client(moto_url))
    assert set(moto_seen) == set(console_seen)  # the script ran to its end, unchanged
    differs = {k for k in console_seen if moto_seen[k] != console_seen[k]}
    assert differs == set(MOTO_DIFFERS), {k: moto_seen[k] for k in differs ^ set(MOTO_DIFFERS)}


def test_errors_have_aws_shape(console_url: str) -> None:
    """The raw answer: HTTP 400, the x-amzn-ErrorType header and {"__type", "message"}."""
    request = urllib.request.Request(
        console_url, method="POST", data=json.dumps({"executionArn": "nope"}).encode(),
        headers={"X-Amz-Target": "AWSStepFunctions.DescribeExecution",
                 "Content-Type": "application/x-amz-json-1.0"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 400
    assert info.value.headers["x-amzn-ErrorType"] == "InvalidArn"
    body = json.loads(info.value.read())
    assert body["__type"] == "InvalidArn" and "nope" in body["message"]


def test_aws_cli_works_unchanged(console_url: str, tmp_path: Path) -> None:
    """`aws stepfunctions --endpoint-url ...` (the AWS CLI, botocore underneath)."""
    import os
    import shutil
    import subprocess

    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none")}
    definition = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    made = subprocess.run(
        [aws, "stepfunctions", "create-state-machine", "--endpoint-url", console_url,
         "--name", "cli", "--definition", definition, "--role-arn", ROLE],
        capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    listed = subprocess.run([aws, "stepfunctions", "list-state-machines", "--endpoint-url",
                             console_url], capture_output=True, text=True, env=env, timeout=60)
    assert "cli" in [m["name"] for m in json.loads(listed.stdout)["stateMachines"]]


def test_test_state_reports_caught_and_retriable(console_url: str) -> None:
    sfn = client(console_url)
    fail = {"Type": "Pass", "Parameters": {"x.$": "$.missing"}, "End": True}
    out = sfn.test_state(definition=json.dumps(fail), roleArn=ROLE, input="{}")
    assert out["status"] == "FAILED" and out["error"] == "States.Runtime"
    task = {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:nope",
            "Retry": [{"ErrorEquals": ["States.ALL"]}], "End": True}
    out = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input="{}")
    assert out["status"] == "RETRIABLE" and out["error"] == "Lambda.ResourceNotFoundException"
    task.pop("Retry")
    task["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "Handle"}]
    out = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input="{}")
    assert out["status"] == "CAUGHT_ERROR" and out["nextState"] == "Handle"
    with pytest.raises(ClientError) as info:
        sfn.test_state(definition="{not json", roleArn=ROLE)
    assert info.value.response["Error"]["Code"] == "InvalidDefinition"
