"""The error tree of sconeflow. Catch at the level you care about.

    SconeflowError                   anything sconeflow raises on purpose
    ├── ConfigError                  a setting or hyperparameter has a bad value
    ├── StoreError                   the object store failed or was misused
    │   ├── InvalidKeyError          an object key or bucket name is unsafe or unstorable
    │   └── ObjectNotFoundError      no object under that bucket/key
    ├── DataError                    input data is missing, malformed or hostile
    │   ├── ChecksumError            a download or file does not match its checksum
    │   └── UnsafeArchiveError       a tar or pickle tried to escape or run code
    ├── ModelError                   a model artifact is missing, invalid or fails to run
    ├── EndpointError                an endpoint could not be created, reached or stopped
    ├── WorkflowError                a state machine definition or execution problem
    ├── MonitoringError              monitoring could not run
    └── AwsError                     building or deploying the AWS bundle failed

Messages say what was expected, what came, and how to fix it. The CLI prints
`ErrorName: message` and exits 1 for every SconeflowError; anything else is a bug.
"""

from __future__ import annotations


class SconeflowError(Exception):
    """Anything sconeflow raises on purpose; the CLI shows it without a traceback."""


class ConfigError(SconeflowError):
    """A setting or hyperparameter has a bad value."""


class StoreError(SconeflowError):
    """The object store failed or was misused."""


class InvalidKeyError(StoreError):
    """An object key or bucket name is unsafe (`..`, absolute, control characters) or no
    store can hold it (a segment over 255 bytes, undecodable text, a path too long)."""


class ObjectNotFoundError(StoreError):
    """No object under that bucket and key."""


class DataError(SconeflowError):
    """Input data is missing, malformed or hostile."""


class ChecksumError(DataError):
    """A download or file does not match its expected checksum."""


class UnsafeArchiveError(DataError):
    """A tar member or pickle tried to escape its target or run code."""


class ModelError(SconeflowError):
    """A model artifact is missing, invalid or fails to run."""


class EndpointError(SconeflowError):
    """An endpoint could not be created, reached or stopped."""


class WorkflowError(SconeflowError):
    """A state machine definition is invalid or an execution could not run."""


class MonitoringError(SconeflowError):
    """A monitoring job could not run."""


class AwsError(SconeflowError):
    """Building, deploying or inspecting the AWS bundle failed (`sconeflow aws ...`)."""
