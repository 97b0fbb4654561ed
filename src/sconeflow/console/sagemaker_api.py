"""SageMaker's control plane for what the workspace holds (AWS JSON 1.1,
`X-Amz-Target: SageMaker.<Action>`), and InvokeEndpoint forwarded to an endpoint's process.

Endpoints are the rows serving.endpoints keeps, training jobs those of training.job; the
shapes are botocore's (botocore/data/sagemaker/2017-07-24). Each local endpoint has one
endpoint config of the same name, as `sagemaker.Model.deploy` makes them. Every action reads
through the connection it is given: the calling thread's (the console's
db.ThreadConnections), kept open, so an InvokeEndpoint's lookup opens no connection.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from sconeflow.config import Settings
from sconeflow.console.protocol import AwsError, decode_token, encode_token, epoch, required
from sconeflow.errors import SconeflowError
from sconeflow.serving.client import EndpointClient

Body = Mapping[str, Any]
REGION, ACCOUNT = "us-east-1", "123456789012"
_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
FORWARDED_HEADERS = (
    "content-type", "accept", "x-amzn-sagemaker-custom-attributes",
    "x-amzn-sagemaker-inference-id", "x-amzn-sagemaker-target-variant",
)  # fmt: skip


def _endpoint(settings: Settings, conn: sqlite3.Connection, name: Any) -> Any:
    from sconeflow.serving.endpoints import describe_endpoint_row

    if not isinstance(name, str):
        raise AwsError("ValidationException", "EndpointName must be a string")
    try:
        return describe_endpoint_row(settings, name, conn=conn)
    except SconeflowError as err:
        raise AwsError("ValidationException",
                       f'Could not find endpoint "{_ARN}:endpoint/{name.lower()}".') from err


def _page(items: list[dict[str, Any]], body: Body, kind: str, key: str) -> dict[str, Any]:
    size = body.get("MaxResults") or 10  # SageMaker's default page
    if not isinstance(size, int) or not 1 <= size <= 100:
        raise AwsError("ValidationException", f"MaxResults: {size!r} must be from 1 to 100")
    cursor = decode_token(body.get("NextToken"), kind)
    start = int(cursor["at"]) if cursor else 0
    out: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        out["NextToken"] = encode_token({"kind": kind, "at": start + size})
    return out


def _sorted(
    items: list[dict[str, Any]], body: Body, fields: Mapping[str, str]
) -> list[dict[str, Any]]:
    by = fields.get(body.get("SortBy") or "CreationTime", fields["CreationTime"])
    descending = (body.get("SortOrder") or "Descending") == "Descending"
    return sorted(items, key=lambda i: i.get(by) or 0, reverse=descending)


def list_endpoints(settings: Settings, conn: sqlite3.Connection, body: Body) -> dict[str, Any]:
    from sconeflow.serving.endpoints import list_endpoints as rows

    items = [
        {"EndpointName": e.name, "EndpointArn": f"{_ARN}:endpoint/{e.name.lower()}",
         "CreationTime": epoch(e.created_at), "LastModifiedTime": epoch(e.updated_at),
         "EndpointStatus": e.status}
        for e in rows(settings, conn=conn)
        if (body.get("NameContains") or "") in e.name
        and body.get("StatusEquals") in (None, e.status)
    ]  # fmt: skip
    items = _sorted(items, body, {"Name": "EndpointName", "CreationTime": "CreationTime",
                                  "Status": "EndpointStatus"})  # fmt: skip
    return _page(items, body, "endpoints", "Endpoints")


def describe_endpoint(settings: Settings, conn: sqlite3.Connection, body: Body) -> dict[str, Any]:
    ep = _endpoint(settings, conn, required(body, "EndpointName"))
    local = ep.describe(settings)
    capture = local["DataCaptureConfig"]
    return {
        "EndpointName": ep.name, "EndpointArn": f"{_ARN}:endpoint/{ep.name.lower()}",
        "EndpointConfigName": ep.name, "EndpointStatus": ep.status,
        "CreationTime": epoch(ep.created_at), "LastModifiedTime": epoch(ep.updated_at),
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentWeight": 1.0,
                                "DesiredWeight": 1.0, "CurrentInstanceCount": 1,
                                "DesiredInstanceCount": 1}],
        "DataCaptureConfig": {k: capture[k] for k in ("EnableCapture", "CaptureStatus",
                              "CurrentSamplingPercentage", "DestinationS3Uri")} | {"KmsKeyId": ""},
        **({"FailureReason": f"the endpoint's process is gone; see {local['LogFile']}"}
           if ep.status == "Failed" else {}),
    }  # fmt: skip


def describe_endpoint_config(
    settings: Settings, conn: sqlite3.Connection, body: Body
) -> dict[str, Any]:
    ep = _endpoint(settings, conn, required(body, "EndpointConfigName"))
    capture = ep.capture.to_aws()
    return {
        "EndpointConfigName": ep.name,
        "EndpointConfigArn": f"{_ARN}:endpoint-config/{ep.name.lower()}",
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": ep.model,
                                "InitialInstanceCount": 1, "InstanceType": "local",
                                "InitialVariantWeight": 1.0}],
        "DataCaptureConfig": capture, "CreationTime": epoch(ep.created_at),
    }  # fmt: skip


def _job_arn(name: str) -> str:
    return f"{_ARN}:training-job/{name.lower()}"


def list_training_jobs(settings: Settings, conn: sqlite3.Connection, body: Body) -> dict[str, Any]:
    from sconeflow.training.job import list_jobs

    items = [
        {"TrainingJobName": j.name, "TrainingJobArn": _job_arn(j.name),
         "CreationTime": epoch(j.created_at), "TrainingEndTime": epoch(j.ended_at),
         "LastModifiedTime": epoch(j.ended_at or j.created_at), "TrainingJobStatus": j.status}
        for j in list_jobs(settings, conn=conn)
        if (body.get("NameContains") or "") in j.name
        and body.get("StatusEquals") in (None, j.status)
    ]  # fmt: skip
    items = [{k: v for k, v in i.items() if v is not None} for i in items]
    items = _sorted(items, body, {"Name": "TrainingJobName", "CreationTime": "CreationTime",
                                  "Status": "TrainingJobStatus"})  # fmt: skip
    return _page(items, body, "jobs", "TrainingJobSummaries")


def describe_training_job(
    settings: Settings, conn: sqlite3.Connection, body: Body
) -> dict[str, Any]:
    from sconeflow.training.job import describe_job

    name = required(body, "TrainingJobName")
    try:
        job = describe_job(settings, str(name), conn=conn)
    except SconeflowError as err:
        raise AwsError("ResourceNotFound", "Requested resource not found.") from err
    created, ended = epoch(job.created_at), epoch(job.ended_at)
    out: dict[str, Any] = {
        "TrainingJobName": job.name, "TrainingJobArn": _job_arn(job.name),
        "ModelArtifacts": {"S3ModelArtifacts": job.artifact or ""},
        "TrainingJobStatus": job.status,
        "SecondaryStatus": {"InProgress": "Training", "Completed": "Completed",
                            "Failed": "Failed"}.get(job.status, job.status),
        "HyperParameters": job.hyperparameters,
        "AlgorithmSpecification": {"TrainingImage": "sconeflow/image-classification",
                                   "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "local", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "CreationTime": created, "TrainingStartTime": created,
        "FinalMetricDataList": [
            {"MetricName": m["MetricName"], "Value": float(m["Value"]),
             **({"Timestamp": ended} if ended else {})}
            for m in job.describe()["FinalMetricDataList"]
        ],
    }  # fmt: skip
    if ended is not None and created is not None:
        out.update(TrainingEndTime=ended, LastModifiedTime=ended,
                   TrainingTimeInSeconds=int(ended - created))  # fmt: skip
    if job.failure_reason:
        out["FailureReason"] = job.failure_reason
    return out


ACTIONS: dict[str, Callable[[Settings, sqlite3.Connection, Body], dict[str, Any]]] = {
    "ListEndpoints": list_endpoints,
    "DescribeEndpoint": describe_endpoint,
    "DescribeEndpointConfig": describe_endpoint_config,
    "ListTrainingJobs": list_training_jobs,
    "DescribeTrainingJob": describe_training_job,
}


def call(settings: Settings, conn: sqlite3.Connection, action: str, body: Body) -> dict[str, Any]:
    fn = ACTIONS.get(action)
    if fn is None:
        raise AwsError("UnknownOperationException",
                       f"The console answers SageMaker.{', SageMaker.'.join(ACTIONS)}; "
                       f"not {action!r}")  # fmt: skip
    return fn(settings, conn, body)


def invoke_endpoint(
    settings: Settings, conn: sqlite3.Connection, name: str, body: bytes,
    headers: Mapping[str, str],
) -> tuple[int, list[tuple[str, str]], bytes]:
    """InvokeEndpoint: the request goes to the endpoint's own process as it came, and its
    answer comes back as it went (status, headers, body); ValidationError (400) when no
    such endpoint is in service, as the runtime answers."""
    from sconeflow.serving.endpoints import describe_endpoint_row

    try:
        ep = describe_endpoint_row(settings, name, conn=conn)
    except SconeflowError:
        ep = None
    if ep is None or ep.status != "InService":
        state = "not found" if ep is None else f"{ep.status}, not InService"
        raise AwsError("ValidationError", f"Endpoint {name} of account {ACCOUNT} {state}.")
    path = f"/endpoints/{urllib.parse.quote(name)}/invocations"
    forwarded = {k: v for k, v in headers.items() if k in FORWARDED_HEADERS}
    try:
        status, answer, data = _upstream(ep.url).post(body, forwarded, path)
    except OSError as err:
        raise AwsError("ServiceUnavailable", f"endpoint {name} at {ep.url} did not answer: "
                       f"{err}", 503) from err  # fmt: skip
    kept = [(k, v) for k, v in answer
            if k.lower() in ("content-type",) or k.lower().startswith("x-amzn")]  # fmt: skip
    return status, kept, data


_UPSTREAMS: dict[str, EndpointClient] = {}


def _upstream(url: str) -> EndpointClient:
    """One client per endpoint URL, each keeping one connection alive per console thread:
    a fresh TCP connection per InvokeEndpoint cost both processes a connect and an accept."""
    client = _UPSTREAMS.get(url)
    if client is None:
        client = _UPSTREAMS.setdefault(url, EndpointClient(url, timeout=65))
    return client
