"""Errors of the ASL engine.

    sconeflow.errors.WorkflowError
    ├── DefinitionError     the definition is invalid; nothing ran
    └── HandlerError        a handler table or an argument to run_execution is wrong

`StatesFailure` is not part of that tree on purpose: it is the engine's internal signal
for an ASL runtime error (`States.Runtime`, a handler's exception, a Fail state...). It
never leaves `run_execution`, which reports it in `ExecutionResult.error/cause`, as AWS
reports it in DescribeExecution.
"""

from __future__ import annotations

from sconeflow.errors import WorkflowError

# Error names from the States Language spec, appendix A, and AWS's error-handling guide.
ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
BRANCH_FAILED = "States.BranchFailed"
EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
PERMISSIONS = "States.Permissions"

KNOWN_STATES_ERRORS = frozenset(
    {
        ALL,
        TASK_FAILED,
        TIMEOUT,
        HEARTBEAT_TIMEOUT,
        RUNTIME,
        NO_CHOICE_MATCHED,
        RESULT_PATH_MATCH_FAILURE,
        PARAMETER_PATH_FAILURE,
        INTRINSIC_FAILURE,
        BRANCH_FAILED,
        EXCEED_TOLERATED_FAILURE_THRESHOLD,
        DATA_LIMIT_EXCEEDED,
        PERMISSIONS,
        "States.ItemReaderFailed",
        "States.ResultWriterFailed",
        "States.QueryEvaluationError",
        "States.Http.Socket",
    }
)


class DefinitionError(WorkflowError):
    """The state machine definition is invalid; `problems` lists every finding."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n  - ".join(problems)
        super().__init__(
            f"invalid state machine definition ({len(problems)} problems):\n  - {lines}"
        )


class HandlerError(WorkflowError):
    """The handler table or another argument of run_execution is unusable."""


class StatesFailure(Exception):
    """An ASL runtime error with its AWS error name and cause (internal control flow)."""

    def __init__(self, error: str | None, cause: str | None = None) -> None:
        super().__init__(error, cause)
        self.error = error  # None only for a Fail state without Error
        self.cause = cause
        self.state: str | None = None  # the state it happened in, set by the state loop
        self.entered_id = 0  # that state's Entered event id
