"""The CloudFormation template of the deployed system, built from the workspace.

Plain CloudFormation (JSON), not AWS SAM: every resource here has a native CloudFormation
type, so a SAM transform would only add a translation step that `cfn-lint`, moto's
CloudFormation and a reader would all have to see through; and moto does not run SAM.

One template, two phases (`DeployPhase`): `bucket` creates only the data bucket, so that
`sconeflow aws deploy` can upload the data, the model and the Lambda zips into it before
`full` creates what reads them (Lambda code and SageMaker models are read from S3 when they
are created). Every IAM policy names only its own resources:

* serializeImageData reads `s3://BUCKET/data/*` and nothing else;
* classifyImage invokes this endpoint only;
* filterLowConfidence writes its own logs only;
* the state machine invokes these three functions only;
* the SageMaker model reads `models/*` and writes `data_capture/*`;
* the monitoring job reads `data_capture/*` and `monitoring/*` and writes `monitoring/*`.
ECR's GetAuthorizationToken and CloudWatch's PutMetricData take no resource, so those two
actions are the only `"Resource": "*"` (AWS's own rule for them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sconeflow.functions.package import HANDLERS

# The reference's three functions, in the order the state machine calls them.
FUNCTIONS = ("serializeImageData", "classifyImage", "filterLowConfidence")
LAMBDA_RUNTIME = "python3.13"  # tests run the zips on this Python (python3.11 is past its
# Lambda deprecation date; the suite itself runs the handlers on 3.11 too)
DATA_PREFIX = "data/"
CAPTURE_PREFIX = "data_capture"
MONITORING_PREFIX = "monitoring/"
VARIANT = "AllTraffic"
SERVING_REPOSITORY = "sconeflow-serving"  # the ECR repository of the serving image


@dataclass(frozen=True)
class StackSpec:
    """What the template takes from the workspace."""

    definition: str  # the state machine's ASL text with `${<Function>Arn}` placeholders
    endpoint_name: str
    model_key: str  # models/<job>/output/model.tar.gz
    code_keys: dict[str, str]  # function name -> S3 key of its zip
    threshold: float
    capture_percentage: int
    monitoring_schedule: str  # the schedule name the monitor uses (its baseline's folder)


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def _att(resource: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, attribute]}


def _role(service: str, statements: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Condition": "Full",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": service},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": name,
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


def _allow(actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def _logical(function: str) -> str:
    return function[0].upper() + function[1:]


def _function_name(function: str) -> dict[str, str]:
    return _sub("${AWS::StackName}-" + function)


def _log_group_arn(function: str) -> dict[str, str]:
    return _sub(
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        "/aws/lambda/${AWS::StackName}-" + function + ":*"
    )


def _functions(spec: StackSpec) -> dict[str, Any]:
    """Each function: its log group, its role (its own resources only), the function."""
    endpoint_arn = _sub(
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/"
        + spec.endpoint_name.lower()  # AWS lower-cases endpoint names in ARNs
    )
    extra: dict[str, list[dict[str, Any]]] = {
        "serializeImageData": [
            _allow(["s3:GetObject"], [_sub("arn:${AWS::Partition}:s3:::${BucketName}/"
                                           + DATA_PREFIX + "*")])
        ],
        "classifyImage": [_allow(["sagemaker:InvokeEndpoint"], [endpoint_arn])],
        "filterLowConfidence": [],
    }
    environment = {
        "serializeImageData": {"DATA_PREFIX": DATA_PREFIX},
        "classifyImage": {"ENDPOINT_NAME": spec.endpoint_name},
        "filterLowConfidence": {"THRESHOLD": _ref("Threshold")},
    }
    resources: dict[str, Any] = {}
    for fn in FUNCTIONS:
        name = _logical(fn)
        resources[f"{name}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Condition": "Full",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": _sub("/aws/lambda/${AWS::StackName}-" + fn),
                "RetentionInDays": 30,
            },
        }
        logs = _allow(["logs:CreateLogStream", "logs:PutLogEvents"], [_log_group_arn(fn)])
        resources[f"{name}Role"] = _role("lambda.amazonaws.com", [logs, *extra[fn]], fn)
        resources[f"{name}Function"] = {
            "Type": "AWS::Lambda::Function",
            "Condition": "Full",
            "DependsOn": [f"{name}LogGroup"],
            "Properties": {
                "FunctionName": _function_name(fn),
                "Runtime": LAMBDA_RUNTIME,
                "Handler": HANDLERS[fn],
                "Code": {"S3Bucket": _ref("BucketName"), "S3Key": spec.code_keys[fn]},
                "Role": _att(f"{name}Role", "Arn"),
                "Timeout": 60,
                "MemorySize": 256,
                "Environment": {"Variables": environment[fn]},
            },
        }
    return resources


def _state_machine(spec: StackSpec) -> dict[str, Any]:
    arns = [_att(f"{_logical(fn)}Function", "Arn") for fn in FUNCTIONS]
    qualified = [{"Fn::Join": ["", [arn, ":*"]]} for arn in arns]  # ...:$LATEST and versions
    return {
        "StateMachineRole": _role(
            "states.amazonaws.com",
            [_allow(["lambda:InvokeFunction"], [*arns, *qualified])],
            "invoke-the-three-functions",
        ),
        "StateMachine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Condition": "Full",
            "Properties": {
                "StateMachineName": _sub("${AWS::StackName}-scones"),
                "StateMachineType": "STANDARD",
                "RoleArn": _att("StateMachineRole", "Arn"),
                "DefinitionString": spec.definition,
                "DefinitionSubstitutions": {
                    f"{_logical(fn)}Arn": _att(f"{_logical(fn)}Function", "Arn")
                    for fn in FUNCTIONS
                },
            },
        },
    }


def _image_uri() -> dict[str, str]:
    return _sub(
        "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${ServingImageRepository}"
        ":${ServingImageTag}"
    )


def _ecr_pull() -> list[dict[str, Any]]:
    repository = _sub(
        "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/"
        "${ServingImageRepository}"
    )
    return [
        _allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], [repository]),
        _allow(["ecr:GetAuthorizationToken"], ["*"]),  # takes no resource (AWS)
    ]


def _endpoint(spec: StackSpec) -> dict[str, Any]:
    bucket_arn = "arn:${AWS::Partition}:s3:::${BucketName}/"
    sagemaker_logs = _sub(
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        "/aws/sagemaker/Endpoints/" + spec.endpoint_name + ":*"
    )
    return {
        "ModelRole": _role(
            "sagemaker.amazonaws.com",
            [
                _allow(["s3:GetObject"], [_sub(bucket_arn + spec.model_key)]),
                _allow(["s3:PutObject"], [_sub(bucket_arn + CAPTURE_PREFIX + "/*")]),
                *_ecr_pull(),
                _allow(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                       [sagemaker_logs]),
                _allow(["cloudwatch:PutMetricData"], ["*"]),  # takes no resource (AWS)
            ],
            "serve-the-model",
        ),
        "Model": {
            "Type": "AWS::SageMaker::Model",
            "Condition": "Full",
            "Properties": {
                "ExecutionRoleArn": _att("ModelRole", "Arn"),
                "PrimaryContainer": {
                    "Image": _image_uri(),
                    "ModelDataUrl": _sub("s3://${BucketName}/" + spec.model_key),
                },
            },
        },
        "EndpointConfig": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Condition": "Full",
            "Properties": {
                "ProductionVariants": [
                    {
                        "VariantName": VARIANT,
                        "ModelName": _att("Model", "ModelName"),
                        "InstanceType": _ref("EndpointInstanceType"),
                        "InitialInstanceCount": _ref("EndpointInstanceCount"),
                        "InitialVariantWeight": 1.0,
                    }
                ],
                # The same sampling and layout as the local capture:
                # data_capture/<endpoint>/AllTraffic/yyyy/mm/dd/hh/*.jsonl
                "DataCaptureConfig": {
                    "EnableCapture": True,
                    "InitialSamplingPercentage": spec.capture_percentage,
                    "DestinationS3Uri": _sub("s3://${BucketName}/" + CAPTURE_PREFIX),
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                    "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
                },
            },
        },
        "Endpoint": {
            "Type": "AWS::SageMaker::Endpoint",
            "Condition": "Full",
            "Properties": {
                "EndpointName": spec.endpoint_name,
                "EndpointConfigName": _att("EndpointConfig", "EndpointConfigName"),
            },
        },
        "EndpointScalableTarget": {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Condition": "Full",
            "DependsOn": ["Endpoint"],
            "Properties": {
                "ServiceNamespace": "sagemaker",
                "ResourceId": f"endpoint/{spec.endpoint_name}/variant/{VARIANT}",
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "MinCapacity": _ref("EndpointInstanceCount"),
                "MaxCapacity": _ref("EndpointMaxInstanceCount"),
            },
        },
        "EndpointScalingPolicy": {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Condition": "Full",
            "Properties": {
                "PolicyName": _sub("${AWS::StackName}-invocations-per-instance"),
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": _ref("EndpointScalableTarget"),
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": _ref("InvocationsPerInstanceTarget"),
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                    "ScaleInCooldown": 300,
                    "ScaleOutCooldown": 60,
                },
            },
        },
    }


def _alerts() -> dict[str, Any]:
    return {
        "AlertsTopic": {
            "Type": "AWS::SNS::Topic",
            "Condition": "Full",
            "Properties": {"TopicName": _sub("${AWS::StackName}-failed-executions")},
        },
        "AlertsSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": "AlertByEmail",
            "Properties": {
                "TopicArn": _ref("AlertsTopic"),
                "Protocol": "email",
                "Endpoint": _ref("AlertEmail"),
            },
        },
        "AlertsTopicPolicy": {
            "Type": "AWS::SNS::TopicPolicy",
            "Condition": "Full",
            "Properties": {
                "Topics": [_ref("AlertsTopic")],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sns:Publish",
                            "Resource": _ref("AlertsTopic"),
                            "Condition": {
                                "ArnEquals": {"aws:SourceArn": _att("FailedExecutionsRule", "Arn")}
                            },
                        }
                    ],
                },
            },
        },
        # The EventBridge event a failed execution emits, the same one `--notify-url` posts.
        "FailedExecutionsRule": {
            "Type": "AWS::Events::Rule",
            "Condition": "Full",
            "Properties": {
                "Description": "Failed, timed-out or aborted scones executions to SNS",
                "EventPattern": {
                    "source": ["aws.states"],
                    "detail-type": ["Step Functions Execution Status Change"],
                    "detail": {
                        "status": ["FAILED", "TIMED_OUT", "ABORTED"],
                        "stateMachineArn": [_ref("StateMachine")],
                    },
                },
                "Targets": [{"Arn": _ref("AlertsTopic"), "Id": "alerts"}],
            },
        },
    }


def _monitoring(spec: StackSpec) -> dict[str, Any]:
    """`sconeflow monitor run` on a schedule: EventBridge starts a small state machine that
    runs it as a SageMaker Processing job in the serving image, on the captures in S3."""
    bucket = "arn:${AWS::Partition}:s3:::${BucketName}"
    job_arn = _sub(
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:processing-job/"
        "scones-monitor-*"
    )
    processing_logs = _sub(
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        "/aws/sagemaker/ProcessingJobs:*"
    )
    sync_rule = _sub(
        "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/"
        "StepFunctionsGetEventsForSageMakerProcessingJobsRule"
    )
    definition = {
        "Comment": "Run `sconeflow monitor run` on the endpoint's captures in S3.",
        "StartAt": "monitor",
        "States": {
            "monitor": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createProcessingJob.sync",
                "Parameters": {
                    "ProcessingJobName.$": "States.Format('scones-monitor-{}', $$.Execution.Name)",
                    "RoleArn": "${ProcessingRoleArn}",
                    "AppSpecification": {
                        "ImageUri": "${ImageUri}",
                        # The image runs the package from /opt/program (no console
                        # script is installed there), as its serve entry point does.
                        "ContainerEntrypoint": [
                            "python", "-m", "sconeflow", "--store", "s3://${BucketName}",
                            "monitor", "run", "--endpoint", spec.endpoint_name,
                        ],
                    },
                    "Environment": {"AWS_DEFAULT_REGION": "${Region}"},
                    "ProcessingResources": {
                        "ClusterConfig": {
                            "InstanceCount": 1,
                            "InstanceType": "ml.t3.medium",
                            "VolumeSizeInGB": 10,
                        }
                    },
                    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                },
                "End": True,
            }
        },
    }
    return {
        "ProcessingRole": _role(
            "sagemaker.amazonaws.com",
            [
                _allow(["s3:ListBucket"], [_sub(bucket)]),
                _allow(["s3:GetObject"], [_sub(bucket + "/" + CAPTURE_PREFIX + "/*"),
                                          _sub(bucket + "/" + MONITORING_PREFIX + "*")]),
                _allow(["s3:PutObject"], [_sub(bucket + "/" + MONITORING_PREFIX + "*")]),
                *_ecr_pull(),
                _allow(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                       [processing_logs]),
            ],
            "monitor-the-captures",
        ),
        "MonitorStateMachineRole": _role(
            "states.amazonaws.com",
            [
                _allow(["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                        "sagemaker:StopProcessingJob", "sagemaker:AddTags"], [job_arn]),
                _allow(["iam:PassRole"], [_att("ProcessingRole", "Arn")]),
                _allow(["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                       [sync_rule]),
            ],
            "run-the-monitoring-job",
        ),
        "MonitorStateMachine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Condition": "Full",
            "Properties": {
                "StateMachineName": _sub("${AWS::StackName}-monitor"),
                "RoleArn": _att("MonitorStateMachineRole", "Arn"),
                "DefinitionString": json.dumps(definition, indent=2),
                "DefinitionSubstitutions": {
                    "ProcessingRoleArn": _att("ProcessingRole", "Arn"),
                    "ImageUri": _image_uri(),
                    "BucketName": _ref("BucketName"),
                    "Region": _ref("AWS::Region"),
                },
            },
        },
        "MonitorScheduleRole": _role(
            "events.amazonaws.com",
            [_allow(["states:StartExecution"], [_ref("MonitorStateMachine")])],
            "start-the-monitor",
        ),
        "MonitorSchedule": {
            "Type": "AWS::Events::Rule",
            "Condition": "Full",
            "Properties": {
                "Description": f"sconeflow monitor run (schedule {spec.monitoring_schedule})",
                "ScheduleExpression": _ref("MonitoringScheduleExpression"),
                "Targets": [
                    {
                        "Arn": _ref("MonitorStateMachine"),
                        "Id": "monitor",
                        "RoleArn": _att("MonitorScheduleRole", "Arn"),
                    }
                ],
            },
        },
    }


def build_template(spec: StackSpec) -> dict[str, Any]:
    """The whole template as a JSON-ready dict."""
    parameters = {
        "DeployPhase": {
            "Type": "String",
            "AllowedValues": ["bucket", "full"],
            "Default": "full",
            "Description": "bucket: the data bucket only (to upload into); full: everything",
        },
        "BucketName": {"Type": "String", "Description": "The data bucket (globally unique)"},
        "ServingImageRepository": {"Type": "String", "Default": SERVING_REPOSITORY},
        "ServingImageTag": {"Type": "String", "Default": "latest"},
        "EndpointInstanceType": {"Type": "String", "Default": "ml.m5.large"},
        "EndpointInstanceCount": {"Type": "Number", "Default": 1, "MinValue": 1},
        "EndpointMaxInstanceCount": {"Type": "Number", "Default": 4, "MinValue": 1},
        "InvocationsPerInstanceTarget": {
            "Type": "Number",
            "Default": 1000,
            "MinValue": 1,
            "Description": "Autoscaling target: invocations per instance per minute",
        },
        "Threshold": {
            "Type": "String",
            "Default": f"{spec.threshold:g}",
            "Description": "filterLowConfidence's THRESHOLD",
        },
        "AlertEmail": {
            "Type": "String",
            "Default": "",
            "Description": "Subscribe this address to failed-execution alerts (optional)",
        },
        "MonitoringScheduleExpression": {"Type": "String", "Default": "rate(1 hour)"},
    }
    resources: dict[str, Any] = {
        "DataBucket": {
            "Type": "AWS::S3::Bucket",
            # Data outlives the stack: `sconeflow aws destroy --data` deletes it on purpose.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": _ref("BucketName"),
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
            },
        },
        **_functions(spec),
        **_state_machine(spec),
        **_endpoint(spec),
        **_alerts(),
        **_monitoring(spec),
    }
    outputs = {
        "BucketName": {"Value": _ref("DataBucket")},
        "StateMachineArn": {"Condition": "Full", "Value": _ref("StateMachine")},
        "EndpointName": {"Condition": "Full", "Value": _att("Endpoint", "EndpointName")},
        "AlertsTopicArn": {"Condition": "Full", "Value": _ref("AlertsTopic")},
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "sconeflow: the Scones Unlimited ML workflow on AWS (S3, Lambda, "
        "Step Functions, SageMaker, SNS), generated by `sconeflow aws synth`",
        "Parameters": parameters,
        "Conditions": {
            "Full": {"Fn::Equals": [_ref("DeployPhase"), "full"]},
            "AlertByEmail": {
                "Fn::And": [
                    {"Condition": "Full"},
                    {"Fn::Not": [{"Fn::Equals": [_ref("AlertEmail"), ""]}]},
                ]
            },
        },
        "Resources": resources,
        "Outputs": outputs,
    }
