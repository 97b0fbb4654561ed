"""A SageMaker `CreateTrainingJob` request for retraining on AWS, the reference's own path:
the built-in image-classification algorithm on the `.lst` channels already in the store's
layout (data/train/ + data/train.lst, data/test/ + data/test.lst).

The built-in algorithm takes only its own documented hyperparameters (strings), so the
workspace's are filtered to those names; sconeflow's extras (our compact net, `seed`, the
`flip_translate` augmentation) have no built-in counterpart and are left out, and a
ResNet depth is always given (the built-in default, 18, when the workspace used our net).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The built-in image-classification algorithm's ECR account per region (AWS's table of
# "Docker registry paths"); the URI is ACCOUNT.dkr.ecr.REGION.amazonaws.com/image-classification:1.
_ALGORITHM_ACCOUNTS = {
    "us-east-1": "811284229777",
    "us-east-2": "825641698319",
    "us-west-1": "632365934929",
    "us-west-2": "433757028032",
    "eu-west-1": "685385470294",
    "eu-central-1": "813361260812",
    "ap-northeast-1": "501404015308",
    "ap-southeast-2": "544295431143",
}
# Names the built-in algorithm documents ("Image Classification Hyperparameters").
BUILTIN_HYPERPARAMETERS = frozenset({
    "augmentation_type", "beta_1", "beta_2", "checkpoint_frequency", "early_stopping",
    "early_stopping_min_epochs", "early_stopping_patience", "early_stopping_tolerance",
    "epochs", "eps", "eval_metric", "gamma", "image_shape", "kv_store", "learning_rate",
    "lr_scheduler_factor", "lr_scheduler_step", "mini_batch_size", "momentum", "multi_label",
    "num_classes", "num_layers", "num_training_samples", "optimizer", "precision_dtype",
    "resize", "top_k", "use_pretrained_model", "use_weighted_loss", "weight_decay",
})  # fmt: skip
_BUILTIN_AUGMENTATIONS = ("crop", "crop_color", "crop_color_transform")


@dataclass(frozen=True)
class TrainingOptions:
    """Where and for how long SageMaker may train (`aws synth --training-*`).

    The built-in algorithm trains on GPU instances only (AWS recommends P2/P3/G4dn/G5);
    ResNet-18 for 30 epochs over 800 32x32 images takes minutes on one, so an hour stops
    only a job that has gone wrong, at the cost of one instance-hour."""

    instance_type: str = "ml.p3.2xlarge"
    max_runtime_s: int = 3600


DEFAULT_TRAINING = TrainingOptions()


def algorithm_image(region: str) -> str:
    account = _ALGORITHM_ACCOUNTS.get(region, _ALGORITHM_ACCOUNTS["us-east-1"])
    return f"{account}.dkr.ecr.{region}.amazonaws.com/image-classification:1"


def training_job_request(
    hyperparameters: Mapping[str, str],
    *,
    num_training_samples: int | None = None,
    job_name: str = "scones-image-classification",
    bucket: str = "${BucketName}",
    role_arn: str = "${SageMakerTrainingRoleArn}",
    region: str = "us-east-1",
    instance_type: str = "ml.p3.2xlarge",
    max_runtime_s: int = 3600,
) -> dict[str, Any]:
    """The request body (boto3 `create_training_job(**request)` keyword arguments).

    `bucket` and `role_arn` default to `${...}` placeholders for deploy-time values."""
    hp = {k: str(v) for k, v in hyperparameters.items() if k in BUILTIN_HYPERPARAMETERS}
    hp.setdefault("image_shape", "3,32,32")
    hp.setdefault("num_classes", "2")
    hp.setdefault("epochs", "30")
    hp.setdefault("learning_rate", "0.1")
    hp.setdefault("mini_batch_size", "32")
    if hp.get("num_layers") in (None, "", "None"):
        hp["num_layers"] = "18"
    if hp.get("augmentation_type") not in _BUILTIN_AUGMENTATIONS:
        hp.pop("augmentation_type", None)
    if num_training_samples is not None:
        hp["num_training_samples"] = str(num_training_samples)
    hp = {k: v for k, v in sorted(hp.items()) if v not in ("", "None")}

    def channel(name: str, key: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{bucket}/{key}",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": "application/x-image",
            "CompressionType": "None",
        }

    return {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": algorithm_image(region),
            "TrainingInputMode": "File",
        },
        "RoleArn": role_arn,
        "HyperParameters": hp,
        "InputDataConfig": [
            channel("train", "data/train/"),
            channel("validation", "data/test/"),
            channel("train_lst", "data/train.lst"),
            channel("validation_lst", "data/test.lst"),
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/models/"},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": 5,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
    }
