"""The deployed roles' policies are enough for their jobs and no more. moto's server runs in
a process of its own, so that its IAM enforcement (switched on by `/moto-api/reset-auth`)
stays there; a job runs with the keys of an IAM user holding exactly its role's policy from
the template (intrinsics resolved as CloudFormation would):

- serializeImageData's handler reads an image under data/ with its policy, and the same
  keys are refused anything outside data/;
- the scheduled monitoring job, run as the exact command and environment the template's
  Processing job gives the serving image, makes only S3 requests that the ProcessingRole's
  policy permits (moto's own policy evaluator), and that policy permits no more.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from sconeflow.aws.bundle import Bundle, synth_workspace
from sconeflow.config import Settings, load_settings
from sconeflow.executions.definitions import substitute
from sconeflow.store import open_store
from test_monitoring_support import stage_endpoint_captures, staged_split

pytestmark = pytest.mark.slow
STACK, BUCKET, ACCOUNT, REGION = "scones", "scones-policies", "123456789012", "us-east-1"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
          "AWS::StackName": STACK, "AWS::URLSuffix": "amazonaws.com", "BucketName": BUCKET,
          "ServingImageRepository": "sconeflow-serving", "ServingImageTag": "latest"}  # fmt: skip


def resolve(value: Any) -> Any:
    """The template's intrinsics (Fn::Sub, Ref, Fn::Join) with this stack's values."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: PSEUDO[m.group(1)], inner)
        if key == "Ref":
            return PSEUDO[inner]
        if key == "Fn::Join":
            return inner[0].join(resolve(v) for v in inner[1])
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


@pytest.fixture(scope="module")
def bundle(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return synth_workspace(trained_home, tmp_path_factory.mktemp("bundle") / "aws")


@pytest.fixture
def moto_url(tmp_path: Path) -> Iterator[str]:
    """moto's server alone in its own process (its auth switch is process-wide)."""
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _admin(url: str, service: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=url, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


def _user_with_role_policy(url: str, template: dict[str, Any], role: str) -> dict[str, str]:
    """An IAM user holding exactly `role`'s policies; the env that signs with its keys."""
    iam = _admin(url, "iam")
    iam.create_user(UserName=role)
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        document = json.dumps(resolve(policy["PolicyDocument"]))
        iam.put_user_policy(UserName=role, PolicyName=policy["PolicyName"],
                            PolicyDocument=document)  # fmt: skip
    key = iam.create_access_key(UserName=role)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}  # fmt: skip


def _enforce_iam(url: str) -> dict[str, str]:
    """From the next request on, moto authorizes every call by the caller's policies;
    returns the keys of an administrator for the test's own checks."""
    iam = _admin(url, "iam")
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))  # fmt: skip
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})  # fmt: skip
    urllib.request.urlopen(request, timeout=5).close()
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}  # fmt: skip


def _s3_as(url: str, keys: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=url, region_name=REGION,
                        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])  # fmt: skip


def _denied(url: str, keys: dict[str, str], bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        _s3_as(url, keys).get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        return err.response["Error"]["Code"] == "AccessDenied"
    return False


def _clean_env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    return {**base, **extra}


def test_serialize_image_data_reads_data_and_nothing_else(
    bundle: Bundle, moto_url: str, staged_home: Settings
) -> None:
    template = json.loads(bundle.template.read_text())
    s3 = _admin(moto_url, "s3")
    s3.create_bucket(Bucket=BUCKET)
    image = staged_split(staged_home, "test")[0][0]
    s3.put_object(Bucket=BUCKET, Key="data/test/bicycle_s_000001.png", Body=image)
    s3.put_object(Bucket=BUCKET, Key="models/secret.bin", Body=b"not for this function")
    keys = _user_with_role_policy(moto_url, template, "SerializeImageDataRole")
    _enforce_iam(moto_url)

    event = {"s3_bucket": BUCKET, "s3_key": "data/test/bicycle_s_000001.png"}
    script = ("import json, sys; from sconeflow.functions.serialize_image_data import "
              "lambda_handler; print(json.dumps(lambda_handler(json.loads(sys.argv[1]), None)))")
    env = _clean_env(**keys, AWS_REGION=REGION, AWS_ENDPOINT_URL_S3=moto_url,
                     AWS_LAMBDA_FUNCTION_NAME=f"{STACK}-serializeImageData",
                     PYTHONPATH=str(bundle.zips["serializeImageData"]),
                     **template["Resources"]["SerializeImageDataFunction"]["Properties"]
                     ["Environment"]["Variables"])  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, json.dumps(event)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["image_data"]
    assert _denied(moto_url, keys, BUCKET, "models/secret.bin")


# What each S3 request needs in IAM terms ("Actions, resources, and condition keys for
# Amazon S3"): HeadBucket and the listings need s3:ListBucket on the bucket; reading an
# object (GET or HEAD) s3:GetObject, writing one s3:PutObject, on the object.
_REQUEST_LINE = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) (/[^ ?]*)(?:\?(\S*))? HTTP/1\.[01]" (\d+)')


def _s3_permissions(log: str) -> list[tuple[str, str, str]]:
    """(IAM action, resource ARN, request line) for each S3 request in moto's access log."""
    needed = []
    for method, path, query, _ in _REQUEST_LINE.findall(log):
        bucket, _, key = urllib.parse.unquote(path).lstrip("/").partition("/")
        line = f"{method} {path}?{query}"
        if not key and (method == "HEAD" or (method == "GET" and "list-type" in query)):
            needed.append(("s3:ListBucket", f"arn:aws:s3:::{bucket}", line))
        elif key and method in ("GET", "HEAD"):
            needed.append(("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", line))
        elif key and method == "PUT" and "partNumber" not in query:
            needed.append(("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", line))
        else:
            raise AssertionError(f"no IAM action mapped for {line}; add it to _s3_permissions")
    return needed


def _permitted(template: dict[str, Any], role: str, action: str, resource: str) -> bool:
    """moto's IAM policy evaluator on `role`'s policies, resolved for this stack."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    policies = template["Resources"][role]["Properties"]["Policies"]
    results = [IAMPolicy(json.dumps(resolve(p["PolicyDocument"]))).is_action_permitted(
        action, resource) for p in policies]  # fmt: skip
    return PermissionResult.PERMITTED in results and PermissionResult.DENIED not in results


def test_the_scheduled_monitoring_job_needs_only_its_role(
    bundle: Bundle, moto_url: str, staged_home: Settings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job is run exactly as the template asks SageMaker for it, and every S3 request it
    makes is checked against the ProcessingRole's policy by moto's policy evaluator. Not
    with moto enforcing, as for serializeImageData: moto's signature check fails on a "/"
    in a query string (it signs the decoded query), and every capture listing has one."""
    template = json.loads(bundle.template.read_text())
    # What the deployed stack holds when the schedule fires: the baseline `aws deploy`
    # uploaded and an hour of the endpoint's captures.
    env = {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # boto3 reads credentials from the process's env
    store = open_store(load_settings(env=env, home=tmp_path / "admin", store_uri=f"s3://{BUCKET}"))
    stage_endpoint_captures(store, BUCKET, staged_home, bundle.spec.endpoint_name,
                            bundle.spec.monitoring_schedule, 60)  # fmt: skip

    # The Processing job exactly as the monitor state machine asks SageMaker for it.
    machine = template["Resources"]["MonitorStateMachine"]["Properties"]
    values = {k: resolve(v) for k, v in machine["DefinitionSubstitutions"].items()
              if k not in ("ProcessingRoleArn", "ImageUri")}  # fmt: skip
    values |= {"ProcessingRoleArn": "arn:aws:iam::123456789012:role/processing",
               "ImageUri": "sconeflow-serving"}  # fmt: skip
    job = json.loads(substitute(machine["DefinitionString"], values))["States"]["monitor"]
    app = job["Parameters"]["AppSpecification"]
    # In the image: WORKDIR and PYTHONPATH /opt/program (the Dockerfile), a PATH with
    # python on it and no `sconeflow` script (the image installs none), and the job's
    # Environment. The role's credentials are stood in for by moto's test keys.
    program = tmp_path / "opt" / "program"
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    program.mkdir(parents=True)
    log = tmp_path / "moto.log"
    before = log.stat().st_size
    run = subprocess.run(
        [*app["ContainerEntrypoint"], "--json"], cwd=program, capture_output=True, text=True,
        timeout=300,
        env=_clean_env(**{k: v for k, v in env.items() if k != "AWS_DEFAULT_REGION"},
                       **job["Parameters"]["Environment"], PYTHONPATH=str(bundle.image.parent),
                       PATH=str(tmp_path / "bin")),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["records"] == 60
    assert result["status"] in ("Completed", "CompletedWithViolations")
    names = {key.rsplit("/", 1)[1] for key in store.list(BUCKET, result["prefix"])}
    assert {"statistics.json", "constraint_violations.json", "report.html"} <= names

    time.sleep(0.2)  # the access log's last lines
    with log.open("rb") as f:
        f.seek(before)
        needed = _s3_permissions(f.read().decode("utf-8", "replace"))
    assert {a for a, _, _ in needed} == {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    refused = [line for action, arn, line in needed
               if not _permitted(template, "ProcessingRole", action, arn)]  # fmt: skip
    assert refused == []
    # ...and no more than that: not the training data, not the models, not a delete.
    for action, arn in (("s3:GetObject", f"arn:aws:s3:::{BUCKET}/data/train/x.png"),
                        ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/models/m/model.tar.gz"),
                        ("s3:PutObject", f"arn:aws:s3:::{BUCKET}/data_capture/x.jsonl"),
                        ("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/monitoring/x")):  # fmt: skip
        assert not _permitted(template, "ProcessingRole", action, arn), (action, arn)
