"""Monitoring a real AWS endpoint from a laptop: its captures sit in S3 in SageMaker's layout
(data_capture/<endpoint>/AllTraffic/yyyy/mm/dd/hh/*.jsonl), and `sconeflow --store
s3://BUCKET monitor run` reads them through the S3 API and writes Model Monitor's files back
beside them. Here the S3 API is moto's server on 127.0.0.1, as README's "Moving to AWS"
section shows; the commands are the ones a user runs against AWS, without AWS_ENDPOINT_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sconeflow.config import Settings, load_settings
from sconeflow.store import open_store
from test_monitoring_support import stage_endpoint_captures

BUCKET = "scones-cloud-captures"


def test_monitor_run_reads_an_aws_endpoints_captures_in_s3(
    s3_env: dict[str, str], staged_home: Settings, tmp_path: Path
) -> None:
    cloud = load_settings(env=s3_env, home=tmp_path / "laptop", store_uri=f"s3://{BUCKET}")
    store = open_store(cloud)
    # What the deployed stack leaves in S3: a baseline (uploaded by `aws deploy`) and the
    # endpoint's own capture files, written by SageMaker over the last hour.
    stage_endpoint_captures(store, BUCKET, staged_home, "scones-endpoint",
                            "scones-endpoint-monitor", 80)  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "sconeflow", "--home", str(cloud.home), "--store",
         f"s3://{BUCKET}", "monitor", "run", "--endpoint", "scones-endpoint", "--json"],
        env={**os.environ, **s3_env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["records"] == 80 and result["status"] in ("Completed", "CompletedWithViolations")
    written = store.list(BUCKET, result["prefix"])
    names = {key.rsplit("/", 1)[1] for key in written}
    assert {"statistics.json", "constraint_violations.json", "report.html"} <= names
