"""Errors the three Lambda handlers raise on purpose.

    sconeflow.errors.WorkflowError
    └── FunctionError                    a handler could not do its work on this event
        ├── InvalidEventError            the event is missing a key or has a bad value
        ├── ImageNotFoundError           no object at s3_bucket/s3_key
        ├── AccessDeniedError            s3_key is outside the prefix the function may read
        ├── EndpointInvocationError      the endpoint could not be reached or answered badly
        └── ThresholdConfidenceNotMet    the top probability is below the threshold

The class name is the contract: AWS Lambda reports an unhandled exception's class name as
`errorType`, and Step Functions turns it into the ASL error name that Retry/Catch match
(`"ErrorEquals": ["ThresholdConfidenceNotMet"]`). The local engine does the same, so
renaming a class here is a breaking change for every definition that catches it.
"""

from __future__ import annotations

from sconeflow.errors import WorkflowError


class FunctionError(WorkflowError):
    """A Lambda handler could not do its work on the event it was given."""


class InvalidEventError(FunctionError):
    """The event is missing a key or one of its values has the wrong type or content."""


class ImageNotFoundError(FunctionError):
    """There is no object at the event's s3_bucket/s3_key."""


class AccessDeniedError(FunctionError):
    """The event names an object outside the prefix this function may read (ALLOWED_PREFIX),
    as S3 answers AccessDenied to a role whose policy does not cover the key."""


class EndpointInvocationError(FunctionError):
    """The endpoint could not be reached, refused the request or answered something unusable."""


class ThresholdConfidenceNotMet(FunctionError):
    """The most probable class has a probability below the configured threshold.

    Named after the reference's THRESHOLD_CONFIDENCE_NOT_MET, without the Error suffix.
    """

    def __init__(self, confidence: float, threshold: float) -> None:
        self.confidence = confidence
        self.threshold = threshold
        super().__init__(
            f"THRESHOLD_CONFIDENCE_NOT_MET: top confidence {confidence:.4f} is below the "
            f"threshold {threshold:.4f}; the image needs a human look (or lower THRESHOLD)"
        )
