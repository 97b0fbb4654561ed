"""The console against moto's server, same run: StartExecution-to-SUCCEEDED executions/s
through boto3, and the executions list page with 10,000 executions in the db.

* Throughput: the reference definition (src/sconeflow/definitions/stepfunction.json, three
  lambda:invoke Tasks with Retry) with trivial handlers that return their event: the
  console with `--handlers benchmarks/console_trivial_handlers.py:HANDLERS`, moto's server
  with `stepfunctions.execute_state_machine` on and its Docker-less Lambda (which echoes the
  payload). moto 5's server cannot run a second execution, so every execution gets a
  fresh server state of its own (moto_throughput says why): its rate is one over its mean
  StartExecution-to-SUCCEEDED latency. The console gets one machine per execution too
  (not timed) and runs them all at once: from the first StartExecution to the last
  execution seen SUCCEEDED, 8 client threads starting and polling DescribeExecution.
  Both peers are polled alike: DescribeExecution at once, then every 10 ms.
* CPU per execution: the server process's user + system CPU seconds over the timed part,
  per execution (Linux /proc). Unlike the rates, other load on the machine barely moves
  it, so it is the figure to compare between runs on a busy machine.
* Page: GET /executions (the first page of 50, the counts) and one older page, median of
  20 loads, against a workspace with --rows executions.

Targets (issue 14): >= 20x moto's throughput; the list page <= 300 ms.

    python benchmarks/console_bench.py                  # the measurement (quiet machine)
    python benchmarks/console_bench.py --smoke          # seconds: does it work
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from sconeflow import db
from sconeflow.executions import records
from sconeflow.executions.definitions import load_definition

REPO = Path(__file__).resolve().parents[1]

ROLE = "arn:aws:iam::123456789012:role/sconeflow-bench"
CONFIG = Config(inject_host_prefix=False, max_pool_connections=32,
                retries={"mode": "standard", "max_attempts": 1})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(url: str, service: str = "stepfunctions") -> Any:
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=CONFIG)  # fmt: skip


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def start_console(home: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sconeflow", "--home", str(home), "console",
                             "--port", str(port), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/executions")
    return proc, url


def start_moto() -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    # The interpreter calls Lambda back through the server at localhost:$MOTO_PORT.
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], env={**os.environ, "MOTO_PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/moto-api/")
    return proc, url


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds that process `pid` has used (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _moto_fresh(url: str, definition: str) -> str:
    """Reset moto, turn execution on, make the role, the three functions and one machine."""
    import io
    import zipfile

    def post(path: str, doc: Any = None) -> None:
        data = json.dumps(doc).encode() if doc is not None else b""
        urllib.request.urlopen(urllib.request.Request(url + path, data=data,
                                                      method="POST")).read()  # fmt: skip

    post("/moto-api/reset")
    post("/moto-api/config", {"stepfunctions": {"execute_state_machine": True},
                              "lambda": {"use_docker": False}})  # fmt: skip
    _client(url, "iam").create_role(RoleName="sconeflow-bench", AssumeRolePolicyDocument="{}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", "def lambda_handler(event, context):\n    return event\n")
    lam = _client(url, "lambda")
    for name in ("serializeImageData", "classifyImage", "filterLowConfidence"):
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                            Handler="handler.lambda_handler", Code={"ZipFile": buffer.getvalue()})
    return str(_client(url).create_state_machine(name="bench", definition=definition,
                                                 roleArn=ROLE)["stateMachineArn"])


def moto_throughput(url: str, count: int, definition: str,
                    pid: int) -> tuple[float, int, float]:  # fmt: skip
    """moto 5's server runs one execution per server state: any StartExecution after the
    first answers 500 (it deep-copies state that holds the first execution's locks), even on
    another machine, even after the first ended. So each execution gets a fresh moto state
    (reset, role, functions, machine: not timed) and only StartExecution-to-SUCCEEDED is
    timed; moto's rate is then one over its mean latency, the best it can do. Returns
    (executions/s, how many SUCCEEDED, server CPU seconds per execution, timed part)."""
    sfn, timed, cpu, ok = _client(url), 0.0, 0.0, 0
    payload = json.dumps({"s3_bucket": "sconeflow", "s3_key": "data/test/bicycle_s_000513.png"})
    for _ in range(count):
        machine = _moto_fresh(url, definition)
        used, begin = cpu_seconds(pid), time.perf_counter()
        arn = sfn.start_execution(stateMachineArn=machine, input=payload)["executionArn"]
        while (status := sfn.describe_execution(executionArn=arn)["status"]) == "RUNNING":
            time.sleep(0.01)
        timed += time.perf_counter() - begin
        cpu += cpu_seconds(pid) - used
        ok += status == "SUCCEEDED"
    return count / timed, ok, cpu / count


def throughput(url: str, count: int, definition: str, pid: int) -> tuple[float, int, float]:
    """(executions/s, how many SUCCEEDED, server CPU seconds per execution) from the first
    start to the last SUCCEEDED."""
    sfn = _client(url)
    machines = [sfn.create_state_machine(name=f"bench-{i}", definition=definition,
                                         roleArn=ROLE)["stateMachineArn"] for i in range(count)]
    payload = json.dumps({"s3_bucket": "sconeflow", "s3_key": "data/test/bicycle_s_000513.png"})

    def run(machine: str) -> str:
        arn = sfn.start_execution(stateMachineArn=machine, input=payload)["executionArn"]
        while True:
            status = sfn.describe_execution(executionArn=arn)["status"]
            if status != "RUNNING":
                return str(status)
            time.sleep(0.01)

    used, begin = cpu_seconds(pid), time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(run, machines))
    seconds = time.perf_counter() - begin
    return count / seconds, statuses.count("SUCCEEDED"), (cpu_seconds(pid) - used) / count


def fill(home: Path, rows: int) -> None:
    """`rows` finished executions (1 in 10 FAILED), written through records in one go."""
    definition = load_definition("stepfunction").text
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with closing(db.connect(home / "sconeflow.db")) as conn:
        conn.execute("BEGIN")
        for i in range(rows):
            arn = f"arn:aws:states:us-east-1:123456789012:execution:stepfunction:e{i:07d}"
            when = start + dt.timedelta(seconds=i)
            records.create_execution(conn, arn=arn, name=f"e{i:07d}", state_machine="stepfunction",
                                     execution_input={"i": i}, definition=definition,
                                     started_at=when)  # fmt: skip
            failed = i % 10 == 0
            records.finish_execution(
                conn, arn, status="FAILED" if failed else "SUCCEEDED", output=None if failed
                else {"i": i}, error="ThresholdConfidenceNotMet" if failed else None,
                cause=None, stopped_at=when + dt.timedelta(milliseconds=40))  # fmt: skip
        conn.commit()


def page_ms(url: str, path: str, loads: int) -> float:
    times = []
    for _ in range(loads):
        begin = time.perf_counter()
        with urllib.request.urlopen(url + path) as resp:
            body = resp.read()
        times.append((time.perf_counter() - begin) * 1000)
        assert resp.status == 200 and b"execution-rows" in body
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=300, help="console executions")
    parser.add_argument("--moto-executions", type=int, default=60)
    parser.add_argument("--rows", type=int, default=10_000, help="executions in the db")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it work")
    args = parser.parse_args()
    if args.smoke:
        args.executions, args.moto_executions, args.rows = 10, 4, 300
    definition = load_definition("stepfunction").text
    handlers = f"{REPO / 'benchmarks' / 'console_trivial_handlers.py'}:HANDLERS"
    print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
          f"{platform.python_version()}, {platform.system()} {platform.release()}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_console(Path(tmp) / "a", "--handlers", handlers)
        try:
            ours, ok, our_cpu = throughput(url, args.executions, definition, proc.pid)
        finally:
            proc.terminate()
            proc.wait()
        assert ok == args.executions, f"only {ok} of {args.executions} SUCCEEDED"
        proc, url = start_moto()
        try:
            theirs, ok_moto, their_cpu = moto_throughput(url, args.moto_executions, definition,
                                                         proc.pid)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait()
        assert ok_moto == args.moto_executions, f"moto: {ok_moto} of {args.moto_executions}"
        home = Path(tmp) / "b"
        home.mkdir()
        fill(home, args.rows)
        proc, url = start_console(home)
        try:
            first = page_ms(url, "/executions", 20)
            failed = page_ms(url, "/executions?status=FAILED", 20)
            with urllib.request.urlopen(url + "/executions") as resp:
                html = resp.read().decode()
            older = html.split('id="older"')[0].rsplit('href="', 1)[1].split('"')[0]
            older = older.replace("&amp;", "&")
            second = page_ms(url, older, 20)
        finally:
            proc.terminate()
            proc.wait()
    print(f"\nthroughput, reference definition, trivial handlers ({args.executions} console / "
          f"{args.moto_executions} moto executions):")
    print(f"  console {ours:8.1f} executions/s   {our_cpu * 1000:6.2f} ms server CPU each")
    print(f"  moto    {theirs:8.1f} executions/s   {their_cpu * 1000:6.2f} ms server CPU each")
    print(f"  ratio   {ours / theirs:8.1f}x   (target >= 20x)")
    print(f"\nexecutions list page, {args.rows:,} executions in the db (median of 20 loads):")
    print(f"  first page        {first:7.1f} ms   (target <= 300 ms)")
    print(f"  FAILED only       {failed:7.1f} ms")
    print(f"  an older page     {second:7.1f} ms")


if __name__ == "__main__":
    main()
