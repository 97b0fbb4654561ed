"""`sconeflow aws deploy / status / destroy`: the bundle onto AWS through boto3.

deploy: (1) create the stack in its `bucket` phase if it does not exist yet, (2) upload the
staged data, the model, the monitoring baseline and the Lambda zips into that bucket,
skipping objects already there with the same MD5, (3) create or update the stack in its
`full` phase and wait, printing the stack events as they happen.

Every client comes from one boto3 Session, so AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION
and AWS_ENDPOINT_URL (e.g. a local moto server) apply as they do for the AWS CLI.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from sconeflow.aws.bundle import load_manifest
from sconeflow.aws.template import SERVING_REPOSITORY
from sconeflow.errors import AwsError
from sconeflow.store import Store

Echo = Callable[[str], None]
_DONE = ("_COMPLETE", "_FAILED")
_UPLOAD_PREFIXES = ("data/",)  # plus the model, the baseline and the zips


@dataclass(frozen=True)
class DeployOptions:
    stack: str = "sconeflow"
    bucket: str | None = None  # None: the stack's own, or a new one named by default_bucket
    instance_type: str | None = None
    instance_count: int | None = None
    alert_email: str | None = None
    image_tag: str | None = None
    poll_s: float = 2.0
    timeout_s: float = 3600.0


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """botocore's failures as AwsError with what to do (no traceback at the CLI)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        WaiterError,
    )

    try:
        yield
    except NoCredentialsError as err:
        raise AwsError(
            f"{action}: no AWS credentials ({err}); set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (any values for a local server such as moto)"
        ) from err
    except NoRegionError as err:
        raise AwsError(f"{action}: no AWS region; set AWS_REGION, e.g. us-east-1") from err
    except EndpointConnectionError as err:
        raise AwsError(
            f"{action}: cannot connect to {err.kwargs.get('endpoint_url', 'AWS')}; check "
            "AWS_ENDPOINT_URL (unset it for AWS itself) and the network"
        ) from err
    except ClientError as err:
        info = err.response.get("Error", {})
        raise AwsError(f"{action}: {info.get('Code', '?')}: {info.get('Message', err)}") from err
    except (WaiterError, BotoCoreError) as err:
        raise AwsError(f"{action}: {err}") from err


def _session() -> Any:
    import boto3

    return boto3.session.Session()


def _stack(cfn: Any, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as err:
        if "does not exist" in str(err):
            return None
        raise
    return dict(stacks[0]) if stacks else None


def _wait(cfn: Any, name: str, since: float, options: DeployOptions, echo: Echo) -> str:
    """Poll until the stack's operation ends; print each new stack event once."""
    from botocore.exceptions import ClientError

    seen: set[str] = set()
    deadline = time.monotonic() + options.timeout_s
    while True:
        try:
            events = cfn.describe_stack_events(StackName=name)["StackEvents"]
        except ClientError as err:
            if "does not exist" in str(err):  # deleted (and gone from the API) already
                return "DELETE_COMPLETE"
            raise
        for event in reversed(events):
            stamp = event["Timestamp"]
            stamp_s = stamp.timestamp() if hasattr(stamp, "timestamp") else 0.0
            if event["EventId"] in seen or stamp_s < since - 1:
                continue
            seen.add(event["EventId"])
            why = event.get("ResourceStatusReason")
            reason = f"  {why}" if why else ""
            echo(f"{event['ResourceStatus']:<22} {event['LogicalResourceId']:<28} "
                 f"{event.get('ResourceType', '')}{reason}")  # fmt: skip
        stack = _stack(cfn, name)
        status = "DELETE_COMPLETE" if stack is None else str(stack["StackStatus"])
        if status.endswith(_DONE) and not status.endswith("_IN_PROGRESS"):
            return status
        if time.monotonic() > deadline:
            raise AwsError(f"stack {name} still {status} after {options.timeout_s:.0f} s")
        time.sleep(options.poll_s)


def _stack_bucket(stack: Mapping[str, Any]) -> str | None:
    """The data bucket a deployed stack was given (its BucketName parameter)."""
    for param in stack.get("Parameters", []):
        if param.get("ParameterKey") == "BucketName":
            return str(param.get("ParameterValue"))
    return None


def default_bucket(stack: str, account: str, region: str) -> str:
    """A bucket name of this stack's own: bucket names are global across every AWS account,
    so a fixed default such as "sconeflow-data" is most likely someone else's already.
    Account and region make it unique, as CDK's asset buckets are named."""
    suffix = f"-{account}-{region}"
    return stack.lower()[: 63 - len(suffix)].rstrip("-") + suffix


def resolve_bucket(session: Any, stack: Mapping[str, Any] | None, options: DeployOptions) -> str:
    """The bucket to deploy into: the existing `stack`'s (a different --bucket is refused,
    since changing it would create a second bucket and strand the data in the first), else
    --bucket, else `default_bucket`."""
    deployed = _stack_bucket(stack) if stack is not None else None
    if deployed is not None:
        if options.bucket not in (None, deployed):
            raise AwsError(
                f"stack {options.stack} keeps its data in bucket {deployed}, not "
                f"{options.bucket}; deploy with --bucket {deployed} (or leave --bucket out), "
                "or `sconeflow aws destroy` the stack first to move it to a new bucket"
            )
        return deployed
    if options.bucket is not None:
        return options.bucket
    account = session.client("sts").get_caller_identity()["Account"]
    return default_bucket(options.stack, account, session.region_name or "us-east-1")


def _parameters(values: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in values.items()
            if v is not None]  # fmt: skip


def unusable_stack(name: str, status: str) -> str | None:
    """Why a stack in this status cannot be deployed to now, with what to do; None if it can.
    (CloudFormation refuses to update a stack whose first creation failed, or one that is
    in the middle of another operation.)"""
    if status.endswith("_IN_PROGRESS"):
        return (f"stack {name} is {status}: another deploy or destroy is running; wait for it "
                "to end (`sconeflow aws status` shows it), then deploy again")  # fmt: skip
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"):
        return (f"stack {name} is {status}: its first creation failed, and CloudFormation cannot "
                f"update such a stack; read the failed resources' reasons (`sconeflow aws status "
                f"--stack {name}` or the CloudFormation console), then `sconeflow aws destroy "
                f"--stack {name}` and deploy again")  # fmt: skip
    if status == "DELETE_FAILED":
        return (f"stack {name} is DELETE_FAILED; run `sconeflow aws destroy --stack {name}` "
                "again (the CloudFormation console shows what could not be deleted)")  # fmt: skip
    if status == "UPDATE_ROLLBACK_FAILED":
        return (f"stack {name} is UPDATE_ROLLBACK_FAILED; continue its rollback in the "
                "CloudFormation console (ContinueUpdateRollback), then deploy again")  # fmt: skip
    return None


def _apply(
    cfn: Any, template: str, params: Mapping[str, Any], options: DeployOptions, echo: Echo
) -> str:
    """Create or update the stack with these parameters; returns its final status."""
    from botocore.exceptions import ClientError

    args = {
        "StackName": options.stack,
        "TemplateBody": template,
        "Parameters": _parameters(params),
        "Capabilities": ["CAPABILITY_IAM"],
    }
    began = time.time()
    if _stack(cfn, options.stack) is None:
        cfn.create_stack(**args)
    else:
        try:
            cfn.update_stack(**args)
        except ClientError as err:
            if "No updates are to be performed" in str(err):
                echo(f"stack {options.stack}: already up to date")
                return str(_stack(cfn, options.stack)["StackStatus"])  # type: ignore[index]
            raise
    status = _wait(cfn, options.stack, began, options, echo)
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise AwsError(
            f"stack {options.stack} ended {status}; see the events above, fix the cause, "
            "and run `sconeflow aws deploy` again"
        )
    return status


def _check_image(session: Any, tag: str, bundle: Path) -> None:
    """The serving image must be in ECR before the stack's SageMaker Model is created, or
    the stack fails only after the endpoint has tried for many minutes to pull it."""
    from botocore.exceptions import ClientError

    ecr = session.client("ecr")
    try:
        ecr.describe_images(repositoryName=SERVING_REPOSITORY, imageIds=[{"imageTag": tag}])
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code not in ("RepositoryNotFoundException", "ImageNotFoundException"):
            raise
        account = session.client("sts").get_caller_identity()["Account"]
        registry = f"{account}.dkr.ecr.{session.region_name or 'us-east-1'}.amazonaws.com"
        image = f"{registry}/{SERVING_REPOSITORY}:{tag}"
        raise AwsError(
            f"the serving image {SERVING_REPOSITORY}:{tag} is not in ECR ({code}); build and "
            f"push it first: `aws ecr create-repository --repository-name {SERVING_REPOSITORY}`"
            f", `docker build -t {image} {bundle / 'image'}`, `docker push {image}` (README, "
            "\"Moving to AWS\")"
        ) from err


def _upload(s3: Any, bucket: str, key: str, data: bytes, echo: Echo) -> bool:
    """Put the object unless one with the same MD5 is there; True when it was sent."""
    from botocore.exceptions import ClientError

    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("ETag", "").strip('"') == md5:
            return False
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return True


def deploy(
    bundle: Path, store: Store, workspace_bucket: str, options: DeployOptions, echo: Echo = print
) -> dict[str, Any]:
    """Deploy the bundle written by `synth`; returns the stack's outputs."""
    manifest = load_manifest(bundle)
    template = (bundle / "template.json").read_text(encoding="utf-8")
    session = _session()
    with aws_errors(f"deploying stack {options.stack}"):
        cfn = session.client("cloudformation")
        s3 = session.client("s3")
        current = _stack(cfn, options.stack)
        reason = unusable_stack(options.stack, str(current["StackStatus"])) if current else None
        if reason is not None:
            raise AwsError(reason)
        _check_image(session, options.image_tag or "latest", bundle)
        bucket = resolve_bucket(session, current, options)
        options = replace(options, bucket=bucket)
        base = {"BucketName": bucket}
        full = {
            **base,
            "DeployPhase": "full",
            "EndpointInstanceType": options.instance_type,
            "EndpointInstanceCount": options.instance_count,
            "AlertEmail": options.alert_email,
            "ServingImageTag": options.image_tag,
        }
        if current is None:
            echo(f"creating stack {options.stack} (data bucket {bucket} first)")
            _apply(cfn, template, {**base, "DeployPhase": "bucket"}, options, echo)
        keys = [k for p in _UPLOAD_PREFIXES for k in store.list(workspace_bucket, p)]
        keys.append(manifest["model_key"])
        schedule = f"{manifest['endpoint_name']}-monitor"
        keys += store.list(workspace_bucket, f"monitoring/{schedule}/baseline/")
        uploads: list[tuple[str, Callable[[], bytes]]] = [
            (key, partial(store.get, workspace_bucket, key)) for key in keys
        ]
        uploads += [(key, (bundle / "functions" / f"{fn}.zip").read_bytes)
                    for fn, key in manifest["code_keys"].items()]  # fmt: skip
        # Many small objects (a PNG each): a few at once, as the AWS CLI's sync does.
        with ThreadPoolExecutor(max_workers=8) as pool:
            sent = sum(pool.map(lambda u: _upload(s3, bucket, u[0], u[1](), echo),
                                uploads))  # fmt: skip
        total = len(uploads)
        same = f" ({total - sent} already there, unchanged)" if sent < total else ""
        echo(f"uploaded {sent} of {total} objects to s3://{bucket}{same}")
        _apply(cfn, template, full, options, echo)
        stack = _stack(cfn, options.stack) or {}
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def status(options: DeployOptions) -> dict[str, Any]:
    """The stack's status and outputs (DescribeStacks) and its resources with theirs
    (ListStackResources): {"stack", "status", "outputs", "resources": [{"logical",
    "type", "status", "physical"}]}."""
    with aws_errors(f"reading stack {options.stack}"):
        cfn = _session().client("cloudformation")
        stack = _stack(cfn, options.stack)
        if stack is None:
            raise AwsError(
                f"no stack {options.stack!r}; deploy one with `sconeflow aws deploy`"
            )
        rows = []
        pages = cfn.get_paginator("list_stack_resources").paginate(StackName=options.stack)
        for page in pages:
            for r in page["StackResourceSummaries"]:
                rows.append({
                    "logical": r["LogicalResourceId"], "type": r["ResourceType"],
                    "status": r["ResourceStatus"], "physical": r.get("PhysicalResourceId", ""),
                })  # fmt: skip
    return {
        "stack": options.stack,
        "status": str(stack["StackStatus"]),
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        "resources": rows,
    }


def destroy(options: DeployOptions, *, data: bool = False, echo: Echo = print) -> None:
    """Delete the stack; with `data`, empty and delete the data bucket too (the stack keeps
    it: DeletionPolicy Retain)."""
    with aws_errors(f"destroying stack {options.stack}"):
        session = _session()
        cfn = session.client("cloudformation")
        stack = _stack(cfn, options.stack)
        deployed = _stack_bucket(stack) if stack is not None else None
        if options.bucket and deployed and options.bucket != deployed:
            raise AwsError(
                f"stack {options.stack} keeps its data in bucket {deployed}, not "
                f"{options.bucket}; leave --bucket out to destroy both, or destroy the stack "
                "first and then the other bucket with --bucket"
            )
        bucket = options.bucket or deployed
        if data and bucket is None:
            raise AwsError(
                f"no stack {options.stack!r} to read its data bucket from; pass --bucket NAME "
                "to delete a bucket left behind"
            )
        if stack is not None:
            began = time.time()
            echo(f"deleting stack {options.stack} (its bucket is kept unless --data)")
            cfn.delete_stack(StackName=options.stack)
            final = _wait(cfn, options.stack, began, options, echo)
            if final != "DELETE_COMPLETE":
                raise AwsError(f"stack {options.stack} ended {final}; see the events above")
            echo(f"stack {options.stack} deleted")
        else:
            echo(f"no stack {options.stack}")
        if data and bucket is not None:
            _delete_bucket(session.client("s3"), bucket, echo)


def _delete_bucket(s3: Any, bucket: str, echo: Echo) -> None:
    from botocore.exceptions import ClientError

    try:
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
                count += len(objects)
        s3.delete_bucket(Bucket=bucket)
        echo(f"deleted bucket {bucket} and its {count} objects")
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchBucket":
            echo(f"no bucket {bucket}")
            return
        raise


