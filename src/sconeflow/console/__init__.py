"""The local console: one server on 127.0.0.1 for the workspace's AWS APIs (Step Functions,
SageMaker's control plane, sagemaker-runtime) and its web pages. See server.py."""
