"""Failure notification: when an execution fails, tell someone (the reference project's
third optional challenge).

`Notifier` POSTs the EventBridge event AWS emits for the same change ("Step Functions
Execution Status Change") to a webhook and/or pipes it to a command, so a receiver written
for AWS works unchanged. Delivery problems are logged and returned, never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sconeflow.errors import WorkflowError
from sconeflow.executions.records import FAILED_STATUSES, ExecutionRecord

log = logging.getLogger(__name__)



@dataclass
class Notifier:
    """Tells someone when an execution fails: POST to `url` and/or pipe to `command`.

    The message is the EventBridge event AWS emits for the same change ("Step Functions
    Execution Status Change"), so a receiver written for AWS works unchanged. Delivery
    problems are logged and returned, never raised: a notification must not fail a run.
    """

    url: str | None = None
    command: Sequence[str] | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise WorkflowError(
                f"notify URL {self.url!r} is not an http(s) URL, e.g. http://127.0.0.1:9000/hook"
            )

    def notify(self, record: ExecutionRecord) -> str | None:
        if record.status not in FAILED_STATUSES or not (self.url or self.command):
            return None
        body = json.dumps(status_change_event(record)).encode()
        problems = []
        if self.url:
            request = urllib.request.Request(
                self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
            except (urllib.error.URLError, OSError, ValueError) as err:
                problems.append(f"POST {self.url}: {err}")
        if self.command:
            try:
                done = subprocess.run(list(self.command), input=body, capture_output=True,
                                      timeout=self.timeout, check=False)  # fmt: skip
                if done.returncode != 0:
                    problems.append(f"{self.command[0]} exited {done.returncode}: "
                                    f"{done.stderr.decode(errors='replace')[-300:]}")  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as err:
                problems.append(f"{self.command[0]}: {err}")
        if problems:
            log.warning("failure notification for %s not delivered: %s", record.arn, problems)
            return "; ".join(problems)
        return None


def status_change_event(record: ExecutionRecord) -> dict[str, Any]:
    """The EventBridge "Step Functions Execution Status Change" event for a record."""
    region, account = record.arn.split(":")[3:5]

    def millis(stamp: str | None) -> int | None:
        return None if stamp is None else int(dt.datetime.fromisoformat(stamp).timestamp() * 1000)

    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": account,
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [record.arn],
        "detail": {
            "executionArn": record.arn,
            "stateMachineArn": record.state_machine_arn,
            "name": record.name,
            "status": record.status,
            "startDate": millis(record.started_at),
            "stopDate": millis(record.stopped_at),
            "input": record.input,
            "output": record.output,
            "error": record.error,
            "cause": record.cause,
            "redriveCount": record.redrive_count,
        },
    }
