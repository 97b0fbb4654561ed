"""`sconeflow aws`: synth the AWS bundle from the workspace, deploy it, see it, destroy it."""

from __future__ import annotations

from pathlib import Path

import click

from sconeflow.aws.training_request import TrainingOptions
from sconeflow.cli.common import (
    Context,
    console,
    err_console,
    json_option,
    pass_context,
    print_json,
    print_table,
)
from sconeflow.functions.config import DEFAULT_THRESHOLD

out_option = click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("aws-bundle"),
    show_default=True, help="Bundle folder.",
)  # fmt: skip
stack_option = click.option("--stack", default="sconeflow", show_default=True,
                            help="CloudFormation stack name.")  # fmt: skip
bucket_option = click.option(
    "--bucket", "aws_bucket",
    help="The stack's S3 data bucket. Default: the deployed stack's own; for a new stack "
         "STACK-ACCOUNT-REGION (bucket names are global across AWS accounts).",
)  # fmt: skip


def _progress(line: str) -> None:
    """Stack events and uploads go to stderr, so that --json's stdout stays pure JSON."""
    err_console.print(line, highlight=False, markup=False, soft_wrap=True)


@click.group()
def aws() -> None:
    """Move the workspace to AWS: S3, SageMaker, Lambda, Step Functions, SNS.

    Credentials, region and endpoint come from the usual AWS settings (AWS_PROFILE,
    AWS_REGION, AWS_ENDPOINT_URL for a local server).
    """


@aws.command()
@out_option
@click.option("--model", help="Training job whose model to deploy (default: the newest).")
@click.option("--endpoint", "endpoint_name", default="scones-endpoint", show_default=True,
              help="SageMaker endpoint name.")  # fmt: skip
@click.option("--threshold", default=str(DEFAULT_THRESHOLD), show_default=True,
              help="filterLowConfidence's THRESHOLD on Lambda: a confidence from 0 to 1, or "
                   "'model' for the one stored in the model's model.json.")  # fmt: skip
@click.option("--training-instance-type", default=TrainingOptions.instance_type,
              show_default=True,
              help="Instance type in training_job.json (the built-in algorithm needs a GPU).")
@click.option("--training-max-runtime", type=click.IntRange(min=1),
              default=TrainingOptions.max_runtime_s, show_default=True,
              help="MaxRuntimeInSeconds in training_job.json: SageMaker stops the job then.")
@pass_context
def synth(ctx: Context, out: Path, model: str | None, endpoint_name: str, threshold: str,
          training_instance_type: str, training_max_runtime: int) -> None:  # fmt: skip
    """Write the deployable bundle: template, Lambda zips, serving image, training request."""
    from sconeflow.aws.bundle import synth_workspace

    value: float | str = threshold
    if threshold != "model":
        try:
            value = float(threshold)
        except ValueError:
            value = -1.0
        if not 0.0 <= value <= 1.0:
            raise click.BadParameter(f"got {threshold!r}, expected a number from 0 to 1 or "
                                     "'model'", param_hint="'--threshold'")  # fmt: skip
    training = TrainingOptions(instance_type=training_instance_type,
                               max_runtime_s=training_max_runtime)
    bundle = synth_workspace(ctx.settings, out, model=model, endpoint_name=endpoint_name,
                             threshold=value, training=training)  # fmt: skip
    if threshold == "model":
        console.print(f"THRESHOLD {bundle.spec.threshold:g} from the model's model.json",
                      highlight=False)  # fmt: skip
    console.print(f"Wrote {bundle.out}/", highlight=False)
    for label, path in (("template", bundle.template), ("serving image", bundle.image),
                        ("training job request", bundle.training_job),
                        ("diagram", bundle.diagram)):  # fmt: skip
        console.print(f"  {label:<26} {path}", highlight=False)
    for fn, path in bundle.zips.items():
        console.print(f"  {'lambda ' + fn:<26} {path}", highlight=False)
    console.print(
        f"Next: build {bundle.image.parent} and push it to ECR as "
        "ACCOUNT.dkr.ecr.REGION.amazonaws.com/sconeflow-serving:latest (README, \"Moving to "
        f"AWS\"), then `sconeflow aws deploy --out {bundle.out}`",
        highlight=False, soft_wrap=True,
    )


@aws.command()
@out_option
@stack_option
@bucket_option
@click.option("--instance-type", help="Endpoint instance type (default: ml.m5.large).")
@click.option("--instance-count", type=click.IntRange(min=1),
              help="Endpoint instances (default 1).")
@click.option("--alert-email", help="Subscribe this address to failed-execution alerts.")
@click.option("--image-tag", help="Serving image tag in ECR (default: latest).")
@json_option
@pass_context
def deploy(ctx: Context, out: Path, stack: str, aws_bucket: str | None, instance_type: str | None,
           instance_count: int | None, alert_email: str | None, image_tag: str | None,
           as_json: bool) -> None:  # fmt: skip
    """Upload data, model and zips, then create or update the stack and wait for it."""
    from sconeflow.aws.deploy import DeployOptions
    from sconeflow.aws.deploy import deploy as run_deploy
    from sconeflow.store import open_store

    options = DeployOptions(stack=stack, bucket=aws_bucket, instance_type=instance_type,
                            instance_count=instance_count, alert_email=alert_email,
                            image_tag=image_tag)  # fmt: skip
    outputs = run_deploy(out, open_store(ctx.settings), ctx.settings.bucket, options,
                         echo=_progress)
    if as_json:
        print_json(outputs)
    else:
        print_table(f"Stack {stack}", ["output", "value"], sorted(outputs.items()))


@aws.command()
@stack_option
@json_option
def status(stack: str, as_json: bool) -> None:
    """The stack's state and outputs, and each deployed resource and its state."""
    from sconeflow.aws.deploy import DeployOptions
    from sconeflow.aws.deploy import status as read_status

    deployed = read_status(DeployOptions(stack=stack))
    if as_json:
        print_json(deployed)
        return
    console.print(f"Stack {stack}: {deployed['status']}", highlight=False)
    for key, value in sorted(deployed["outputs"].items()):
        console.print(f"  {key:<16} {value}", highlight=False, soft_wrap=True)
    print_table(f"Resources of {stack}", ["resource", "type", "status", "physical id"],
                [(r["logical"], r["type"], r["status"], r["physical"])
                 for r in deployed["resources"]])  # fmt: skip


@aws.command()
@stack_option
@bucket_option
@click.option("--data", is_flag=True, help="Also empty and delete the data bucket.")
def destroy(stack: str, aws_bucket: str | None, data: bool) -> None:
    """Remove the stack (and with --data the bucket): the reference's clean-up step."""
    from sconeflow.aws.deploy import DeployOptions
    from sconeflow.aws.deploy import destroy as run_destroy

    run_destroy(DeployOptions(stack=stack, bucket=aws_bucket), data=data,
                echo=_progress)
