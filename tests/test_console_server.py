"""The console's safety: loopback by default, a token for any other address (checked on
every request: header, cookie, or the AWS access key id), Host names checked."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from console_support import client, start_console, stop_console
from sconeflow.console.server import ConsoleOptions, check_options
from sconeflow.errors import ConfigError

TOKEN = "s3cret-token-for-tests"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_another_address_needs_a_long_token() -> None:
    with pytest.raises(ConfigError, match="--token"):
        check_options(ConsoleOptions(host="0.0.0.0"))
    with pytest.raises(ConfigError, match="16 characters"):
        check_options(ConsoleOptions(host="0.0.0.0", token="short"))
    check_options(ConsoleOptions(host="0.0.0.0", token=TOKEN))


def test_cli_refuses_a_public_bind_without_token(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "sconeflow", "--home", str(tmp_path / "h"),
                          "console", "--host", "0.0.0.0"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 1 and out.stderr.startswith("ConfigError: --host 0.0.0.0")


@pytest.mark.slow
def test_token_is_checked_on_every_request(tmp_path: Path) -> None:
    proc, url = start_console(tmp_path / "home", "--token", TOKEN)
    try:
        status, _, body = _get(f"{url}/executions")
        assert status == 403 and b"UnrecognizedClientException" in body
        assert _get(f"{url}/executions", {"X-Sconeflow-Token": TOKEN})[0] == 200
        assert _get(f"{url}/executions", {"X-Sconeflow-Token": TOKEN + "x"})[0] == 403
        # The printed link: ?token= sets an HttpOnly cookie and drops the token from the URL.
        status, headers, _ = _get(f"{url}/executions?token={TOKEN}")
        assert status == 303 and headers["location"] == "/executions"
        assert "HttpOnly" in headers["set-cookie"]
        assert _get(f"{url}/executions", {"Cookie": f"sconeflow_token={TOKEN}"})[0] == 200
        # AWS SDKs: the token is the access key id they sign with.
        with pytest.raises(ClientError) as info:
            client(url, key="wrong").list_state_machines()
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert client(url, key=TOKEN).list_state_machines()["stateMachines"] == []
    finally:
        stop_console(proc)


@pytest.mark.slow
def test_foreign_host_names_are_refused(tmp_path: Path) -> None:
    """A page on another site that points its own name at 127.0.0.1 (DNS rebinding) sends
    its Host header, which the console does not answer."""
    proc, url = start_console(tmp_path / "home")
    try:
        assert _get(f"{url}/executions", {"Host": "evil.example"})[0] == 400
        assert _get(f"{url}/executions")[0] == 200
        # The AWS APIs too: they are answered before the pages' app, behind the same check.
        foreign = urllib.request.Request(url, method="POST", data=b"{}", headers={
            "Host": "evil.example", "X-Amz-Target": "AWSStepFunctions.ListStateMachines"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(foreign)
        assert refused.value.code == 400
        assert client(url).list_state_machines()["stateMachines"] == []
        request = urllib.request.Request(url, method="POST", data=b"{}", headers={
            "X-Amz-Target": "Nope.Action", "Content-Type": "application/x-amz-json-1.0"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request)
        assert json.loads(info.value.read())["__type"] == "UnknownOperationException"
    finally:
        stop_console(proc)


def _post(url: str, target: str, data: bytes) -> tuple[int, Any, dict[str, object]]:
    """(status, headers (names in any case), JSON body) of one AWS JSON call."""
    request = urllib.request.Request(url, method="POST", data=data, headers={
        "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"})  # fmt: skip
    try:
        with urllib.request.urlopen(request) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


@pytest.mark.slow
def test_aws_edge_answers_bad_bodies_in_aws_shape(tmp_path: Path) -> None:
    """POST / is answered by the console's own edge: errors keep AWS's shape and status,
    on the loop (DescribeExecution) as on the thread pool (the rest)."""
    proc, url = start_console(tmp_path / "home")
    try:
        status, headers, body = _post(url, "AWSStepFunctions.ListStateMachines", b"{nope")
        assert (status, body["__type"]) == (400, "SerializationException")
        assert headers["x-amzn-ErrorType"] == "SerializationException"
        status, _, body = _post(url, "AWSStepFunctions.ListStateMachines", b"[]")
        assert (status, body["__type"]) == (400, "SerializationException")
        status, _, body = _post(url, "AWSStepFunctions.ListStateMachines",
                                b'{"x": "' + b"a" * (3 * 1024 * 1024) + b'"}')  # fmt: skip
        assert status == 413 and "over" in str(body["message"])
        arn = "arn:aws:states:us-east-1:123456789012:execution:m:gone"
        status, headers, body = _post(url, "AWSStepFunctions.DescribeExecution",
                                      json.dumps({"executionArn": arn}).encode())  # fmt: skip
        assert (status, body["__type"]) == (400, "ExecutionDoesNotExist")
        assert headers["Content-Type"] == "application/x-amz-json-1.0"
        status, _, body = _post(url, "AWSStepFunctions.DescribeExecution", b'{"executionArn": 7}')
        assert (status, body["__type"]) == (400, "InvalidArn")
    finally:
        stop_console(proc)
