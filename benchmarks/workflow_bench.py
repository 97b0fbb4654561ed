"""ASL engine throughput: sconeflow's engine against moto's interpreter (LocalStack's), same run.

Workloads, with trivial in-process handlers so the numbers are engine cost:
  * the reference 3-task workflow (lambda:invoke, Payload.$, OutputPath $.Payload, Retry);
  * the same in JSONata mode ("3-jsonata");
  * a Map over 100 items, each running one lambda:invoke Task;
  * a Distributed Map over 1,000 items (`dmap-1000`), each a child workflow execution
    running one lambda:invoke Task, every child's history kept (in memory, or in SQLite as
    the execution service records children: a row and its history per child).
Three engines: ours with history kept in memory; ours with history in a SQLite file
through `HistoryWriter` exactly as the execution service configures it (WAL; rows
written and committed before every handler call and at the end, so a crash loses only
pure computation); and moto's interpreter (definition parsed once, reused; its Lambda
client swapped for the same handlers). A fourth line runs the whole service
(`WorkflowRunner.start`: execution row, history, final record) for the 3-task workflow.
Then memory over `--executions` executions (10,000 by default) of each of ours: Python
heap (tracemalloc) and resident size, after a warm-up and at the end.

Targets (from issue 11): overhead <= 0.3 ms per 3-task execution; >= 30x moto's
throughput with history in memory; >= 10x with history in SQLite; memory flat.

Measured before this round (2-core AVX2 box, moto 5.2.5, as issue 11 quotes): 41x in
memory, 8x in SQLite (1.36 ms CPU per execution in SQLite, 0.29 ms in memory). Rerun on a
quiet machine for today's figures; they print with the machine they ran on:

    python benchmarks/workflow_bench.py [--seconds 2] [--executions 10000] \
        [--workloads 3-task,3-jsonata,map-100,dmap-1000] [--dmap-items 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "workflow"))

from asl_moto_harness import MotoMachine

from sconeflow import db
from sconeflow.config import Settings
from sconeflow.executions.definitions import function_arns, load_definition, substitute
from sconeflow.executions.records import ChildRecorder, HistoryWriter
from sconeflow.executions.runner import WorkflowRunner
from sconeflow.workflow import InMemoryHistory, parse_definition, run_execution

FN = "arn:aws:lambda:us-east-1:123456789012:function:{}:$LATEST"
RETRY = [
    {
        "ErrorEquals": [
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ],
        "IntervalSeconds": 2,
        "MaxAttempts": 6,
        "BackoffRate": 2,
    }
]


def invoke(fn: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": FN.format(fn), "Payload.$": "$"},
        "OutputPath": "$.Payload",
        "Retry": RETRY,
        **extra,
    }


# The reference state machine itself (src/sconeflow/definitions/stepfunction.json), with
# its ${...Arn} placeholders filled exactly as `sconeflow workflow run` fills them.
THREE_TASKS = json.loads(load_definition("stepfunction").text)


def _jsonata_three_tasks() -> dict[str, Any]:
    """The packaged JSONata edition (definitions/stepfunction_jsonata.json) cut to the same
    three tasks, so its per-execution overhead compares with the JSONPath reference's."""
    text = resources.files("sconeflow.definitions").joinpath("stepfunction_jsonata.json")
    arns = {"AssignOrdersArn": FN.format("assignOrders")[: -len(":$LATEST")], **function_arns()}
    machine = json.loads(substitute(text.read_text(), arns))
    last = machine["States"]["filterLowConfidence"]
    del last["Next"], last["Assign"]
    last["End"] = True
    for name in ("routeByClass", "assignNearbyOrders", "assignFartherOrders"):
        del machine["States"][name]
    return dict(machine)


JSONATA_THREE_TASKS = _jsonata_three_tasks()
MAP_100 = {
    "StartAt": "FanOut",
    "States": {
        "FanOut": {
            "Type": "Map",
            "ItemsPath": "$.images",
            "MaxConcurrency": 10,
            "ItemProcessor": {
                "StartAt": "classify",
                "States": {"classify": invoke("classify", End=True)},
            },
            "End": True,
        }
    },
}


def distributed_map(items: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Distributed Map workload over `items` items, and its input."""
    definition = json.loads(json.dumps(MAP_100).replace("FanOut", "DistributedFanOut"))
    processor = definition["States"]["DistributedFanOut"]["ItemProcessor"]
    processor["ProcessorConfig"] = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    definition["States"]["DistributedFanOut"]["Label"] = "fanout"
    return definition, {"images": [{"s3_key": f"test/img_{i}.png"} for i in range(items)]}


def serialize(event: Any, context: Any) -> Any:
    return {**event, "image_data": "iVBORw0KGgo="}


def classify(event: Any, context: Any) -> Any:
    return {**event, "inferences": [0.97, 0.03]}


def filter_low(event: Any, context: Any) -> Any:
    return event


HANDLERS = {
    "serializeImageData": serialize,
    "classifyImage": classify,
    "filterLowConfidence": filter_low,
    "classify": classify,  # the Map variant below
}
EVENT = {"s3_bucket": "sconeflow", "s3_key": "test/bicycle_s_000513.png"}
MAP_EVENT = {"images": [{"s3_key": f"test/img_{i}.png"} for i in range(100)]}


def rate(
    run_once: Callable[[], Any], seconds: float, min_runs: int = 3
) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process) per call, over about `seconds` of wall time.

    CPU time is reported too because the machine is often shared: under contention wall
    time inflates, while CPU time still shows what one execution costs."""
    run_once()  # warm-up
    runs, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while runs < min_runs or time.perf_counter() - start < seconds:
        run_once()
        runs += 1
    wall = (time.perf_counter() - start) / runs
    return wall, (time.process_time() - cpu_start) / runs, runs


def handler_cost(calls: int) -> float:
    """Seconds spent in the trivial handlers themselves per execution (to subtract)."""
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        event = serialize(EVENT, None)
        event = classify(event, None)
        filter_low(event, None)
    return (time.perf_counter() - start) / n * calls / 3


def resident_kib() -> int:
    """The process's resident set size now, in KiB (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_growth(run_once: Callable[[int], Any], executions: int) -> tuple[float, float]:
    """(Python heap KiB, resident KiB) gained between the end of a warm-up (a tenth of the
    runs) and the last of `executions` runs: flat means neither keeps growing."""
    warm = max(1, executions // 10)
    tracemalloc.start()
    try:
        for i in range(warm):
            run_once(i)
        heap, rss = tracemalloc.get_traced_memory()[0], resident_kib()
        for i in range(warm, executions):
            run_once(i)
        return (tracemalloc.get_traced_memory()[0] - heap) / 1024, resident_kib() - rss
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument(
        "--executions", type=int, default=10_000, help="executions for the memory check"
    )
    parser.add_argument(
        "--workloads", default="3-task,3-jsonata,map-100,dmap-1000",
        help="comma-separated workloads (3-task and 3-jsonata are always measured)",
    )
    parser.add_argument(
        "--dmap-items", type=int, default=1000, help="items of dmap-1000 (smaller for a smoke run)"
    )
    args = parser.parse_args()
    chosen = set(args.workloads.split(",")) | {"3-task", "3-jsonata"}
    dmap, dmap_event = distributed_map(args.dmap_items)

    rows: list[tuple[str, str, float, float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        conn = db.connect(Path(tmp) / "history.db")
        workloads = [
            ("3-task", THREE_TASKS, EVENT, 3),
            ("3-jsonata", JSONATA_THREE_TASKS, EVENT, 3),
            ("map-100", MAP_100, MAP_EVENT, 100),
            ("dmap-1000", dmap, dmap_event, args.dmap_items),
        ]
        for label, definition, event, calls in (w for w in workloads if w[0] in chosen):
            machine = parse_definition(definition)
            counter = iter(range(10**9))

            def ours_memory(m: Any = machine, e: Any = event) -> None:
                kept: list[InMemoryHistory] = []  # each child execution's own history

                def child(_: Any) -> InMemoryHistory:
                    kept.append(InMemoryHistory())
                    return kept[-1]

                result = run_execution(m, e, HANDLERS, listener=InMemoryHistory(), children=child)
                assert result.status == "SUCCEEDED", result.cause

            def ours_sqlite(
                m: Any = machine, e: Any = event, label: str = label, counter: Any = counter
            ) -> None:
                name = f"{label}-{next(counter)}"
                arn = f"{m.arn.replace(':stateMachine:', ':execution:')}:{name}"
                listener = HistoryWriter(conn, arn)  # as WorkflowRunner configures it
                children = ChildRecorder(conn)  # the service's recorder of child executions
                result = run_execution(
                    m, e, HANDLERS, name=name, listener=listener, children=children
                )
                assert result.status == "SUCCEEDED", result.cause

            moto = MotoMachine(definition)

            def moto_run(mm: MotoMachine = moto, e: Any = event) -> None:
                result = mm.run(e, HANDLERS)
                assert result["status"] == "SUCCEEDED", result

            handlers_s = handler_cost(calls)
            engines: list[tuple[str, Callable[[], Any]]] = [
                ("sconeflow, history in memory", ours_memory),
                ("sconeflow, history in SQLite", ours_sqlite),
                ("moto (LocalStack) interpreter", moto_run),
            ]
            if label == "3-task":
                settings = Settings(home=Path(tmp) / "home", store_uri=f"file://{tmp}/store")
                service = WorkflowRunner(settings, load_definition("stepfunction"), HANDLERS)
                names = iter(range(10**9))

                def ours_service(r: WorkflowRunner = service, n: Any = names) -> None:
                    assert r.start(EVENT, f"svc-{next(n)}").status == "SUCCEEDED"

                engines.append(("sconeflow, WorkflowRunner (service)", ours_service))
            for engine, fn in engines:
                per_exec, cpu, runs = rate(fn, args.seconds)
                rows.append((label, engine, per_exec, cpu, cpu - handlers_s, runs))
            if label == "3-task":
                service.close()
        stored = conn.execute("SELECT COUNT(*) FROM history_events").fetchone()[0]

        reference = parse_definition(THREE_TASKS)

        def memory_run(i: int) -> None:
            run_execution(reference, EVENT, HANDLERS, listener=InMemoryHistory())

        def sqlite_run(i: int) -> None:
            arn = f"{reference.arn.replace(':stateMachine:', ':execution:')}:mem-{i}"
            run_execution(reference, EVENT, HANDLERS, name=f"mem-{i}",
                          listener=HistoryWriter(conn, arn))  # fmt: skip

        growth = [
            (engine, *memory_growth(fn, args.executions))
            for engine, fn in (("history in memory", memory_run), ("history in SQLite", sqlite_run))
        ]

    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(f"(SQLite rows written during the run: {stored})\n")
    header = (
        f"{'workload':<9} {'engine':<36} {'exec/s':>9} {'wall ms':>9} {'CPU ms':>9} "
        f"{'overhead ms':>12} {'runs':>6}"
    )
    print(header)
    print("-" * len(header))
    for label, engine, per_exec, cpu, overhead, runs in rows:
        print(
            f"{label:<9} {engine:<36} {1 / per_exec:>9.1f} {per_exec * 1e3:>9.3f} "
            f"{cpu * 1e3:>9.3f} {overhead * 1e3:>12.3f} {runs:>6}"
        )
    print()
    for label in (w[0] for w in workloads if w[0] in chosen):
        by_engine = {engine: per for lab, engine, per, _, _, _ in rows if lab == label}
        moto_s = by_engine["moto (LocalStack) interpreter"]
        memory = moto_s / by_engine["sconeflow, history in memory"]
        sqlite_ratio = moto_s / by_engine["sconeflow, history in SQLite"]
        print(
            f"{label}: {memory:.0f}x moto's throughput with history in memory (target >= 30x), "
            f"{sqlite_ratio:.0f}x with history in SQLite (target >= 10x)"
        )
        if "sconeflow, WorkflowRunner (service)" in by_engine:
            service_ratio = moto_s / by_engine["sconeflow, WorkflowRunner (service)"]
            print(f"{label}: {service_ratio:.0f}x moto's throughput through the whole service")
    overhead_3 = next(o for lab, eng, _, _, o, _ in rows if lab == "3-task" and "memory" in eng)
    print(
        f"3-task engine overhead: {overhead_3 * 1e3:.3f} ms CPU per execution, handlers "
        "excluded (target <= 0.3 ms)"
    )
    overhead_j = next(o for lab, eng, _, _, o, _ in rows if lab == "3-jsonata" and "memory" in eng)
    print(
        f"3-task JSONata engine overhead: {overhead_j * 1e3:.3f} ms CPU per execution, "
        f"{overhead_j / overhead_3:.1f}x JSONPath mode's (target <= 3x)"
    )
    for engine, heap_kib, rss_kib in growth:
        flat = heap_kib < 512 and rss_kib < 16 * 1024
        print(
            f"memory over {args.executions:,} 3-task executions, {engine}: Python heap "
            f"{heap_kib:+.0f} KiB, resident {rss_kib:+,} KiB after the warm-up "
            f"({'flat' if flat else 'GROWING'}; flat: under +512 KiB heap and +16 MiB resident)"
        )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
