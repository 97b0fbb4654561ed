"""A local Amazon States Language engine, faithful to AWS Step Functions, in both query
languages: JSONPath (InputPath, Parameters, ResultSelector, ResultPath, OutputPath) and
JSONata (`"QueryLanguage": "JSONata"`: Arguments, Output, `{% ... %}` expressions, evaluated
by jsonata-python; why that library: `jsonata_eval.py`), with workflow variables (`Assign`,
`$name`; scopes and limits: `variables.py`) in both.

A pure engine: it depends on nothing of sconeflow but `sconeflow.errors` (the execution
service that keeps executions in the workspace is `sconeflow.executions`).

    from sconeflow.workflow import parse_definition, run_execution

    machine = parse_definition(open("stepfunction.json").read(), name="scones")
    result = run_execution(machine, {"s3_key": "test/bicycle_s_000513.png"},
                           handlers={"serializeImageData": serialize.lambda_handler, ...})
    result.status, result.output, result.error, result.cause, result.events

The API:

* `parse_definition(text_or_dict, *, name, region, account) -> StateMachine` validates
  (statelint plus the engine's own checks) and compiles; raises `DefinitionError` listing
  every problem with the state's name and the fix. Nothing runs before that.
* `run_execution(machine, input, handlers, *, name, listener, clock, start_at, role_arn,
  max_workers, execution_type, redrive_count, redrive_time, redrive_map_run) ->
  ExecutionResult(status, output, error, cause, execution_arn, name, start_date,
  stop_date, failed_state, events)`. Task resources
  `arn:aws:states:::lambda:invoke` and `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:q]`
  resolve by function name to `handlers[name](event, context)`. `listener(event)` gets each
  GetExecutionHistory-shaped event as it happens (`InMemoryHistory` here; the workspace's
  db writer is `sconeflow.executions.records.HistoryWriter`);
  `clock` (`SystemClock`, `FakeClock`) serves Wait, retry back-off and timeouts;
  `start_at=result.failed_state` re-runs ("redrives") from the state that failed, and
  `redrive_count` shows in `$$.Execution.RedriveCount`; `execution_type="EXPRESS"` runs
  as StartSyncExecution does (express ARN, five minutes at most, never redriven).
* Distributed Maps (`ProcessorConfig.Mode: DISTRIBUTED`, distributed.py) run each item as
  a child execution of `MACHINE/LABEL`: `run_execution(store=..., children=...)` takes the
  object store their ItemReader and ResultWriter use (any `ObjectStore`: list/get/put;
  `MemoryObjectStore` here, the workspace's in `sconeflow.executions.objects`) and a
  factory `children(ChildExecution) -> listener` for each child's own history. A redrive
  from a Distributed Map redrives its Map Run with `redrive_map_run=PriorMapRun(...)`
  (what that Map Run recorded: its ARN and `PriorChild` executions): only the children
  that did not succeed run again.

Limits as in AWS: 256 KiB state payloads (States.DataLimitExceeded), 25,000 history events,
256 KiB per variable and per Assign, 10 MiB of variables; and bounded nesting (10 levels of
Parallel/Map), path length, intrinsic depth, and JSONata evaluation depth, time, value size
and regex time (States.QueryEvaluationError). Nothing is ever eval'ed; only registered
handlers run.
"""

from .clock import Clock, FakeClock, SystemClock
from .engine import ExecutionResult, error_matches, retry_delay, run_execution
from .errors import DefinitionError, HandlerError
from .history import ChildExecution, Event, InMemoryHistory
from .items import MemoryObjectStore, ObjectInfo, ObjectStore
from .lambdas import LambdaContext
from .machine import StateMachine, parse_definition
from .maprun import PriorChild, PriorMapRun

__all__ = [
    "ChildExecution",
    "Clock",
    "DefinitionError",
    "Event",
    "ExecutionResult",
    "FakeClock",
    "HandlerError",
    "InMemoryHistory",
    "LambdaContext",
    "MemoryObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "PriorChild",
    "PriorMapRun",
    "StateMachine",
    "SystemClock",
    "error_matches",
    "parse_definition",
    "retry_delay",
    "run_execution",
]
