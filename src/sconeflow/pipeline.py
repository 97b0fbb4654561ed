"""`sconeflow pipeline`: the whole workflow, from the raw dataset to the monitoring report.

    stage -> train -> evaluate -> deploy (capture 100%) -> workflow over half of data/test
          -> monitor baseline (the other half), run, report -> summary

The monitoring step is an honest small copy of production. The model is trained on all of
data/train, so only data/test holds images it never saw; a baseline from training images
would be over-confident and make every normal window look like a drop in confidence. The
test images are therefore split in two stratified halves (seeded): the baseline half
describes normal traffic, the traffic half is what the workflow streams through the
endpoint, in the reference generator's random order, each image once. Both halves come
from the same distribution but are different images, so the drift tests show real, small
distances and honest p-values instead of comparing images with themselves. The endpoint
captures the stream in real time (seconds); the monitor then reads that capture replayed
onto a simulated working day (`arrival_offsets`, 08:00-16:00 UTC of the day before,
variant `SimulatedDay`, images, outputs and ids unchanged), so its time axes look like a
day's traffic. The traffic's labels are written as ground truth in AWS's format, and the
promise checked is a threshold for 99% selective accuracy chosen on the baseline half.

Each step is a plain function of the library; this module only wires them and decides
what can be skipped. A step is skipped when its inputs have not changed since it last ran:
staging compares sha256s object by object; training looks for a Completed job with the
same hyperparameters on the same staged data; the workflow and monitoring steps remember
the model and data they ran for in `<home>/pipeline.json`.

The pipeline owns only what it creates. It records the endpoint it deploys (name, creation
time and server pid, in `pipeline.json`, as soon as the endpoint is up) and stops or
replaces only that one. An endpoint of the same name that someone else deployed is left
running untouched: the pipeline then deploys its own beside it, as `<name>-pipeline`, and
the summary names the endpoint it used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sconeflow import db
from sconeflow.cifar import DEFAULT_CLASSES
from sconeflow.config import Settings
from sconeflow.errors import EndpointError
from sconeflow.functions.config import DEFAULT_THRESHOLD
from sconeflow.progress import ProgressFn, no_progress
from sconeflow.store import Store, open_store

# Each step imports what it runs (numpy, torch, scipy...) when it runs, so that the CLI can
# read the options' defaults from this module without paying for them.

ENDPOINT_NAME = "scones-endpoint"
LogFn = Callable[[str], None]
SPLIT_SEED = 0  # the baseline / traffic halves of data/test
SIMULATED_VARIANT = "SimulatedDay"  # capture variant of the replayed stream
SIMULATED_HOURS = 8  # the simulated working day, from 08:00 UTC
PROMISE_ACCURACY = 0.99  # the promise the pipeline's monitor checks


@dataclass
class TrafficPlan:
    """Which test images describe normal traffic and which are streamed, and when."""

    baseline: list[str]  # store keys
    traffic: list[str]  # store keys, in streaming order
    labels: dict[str, int]  # key -> true label
    start: datetime  # simulated start of the stream
    offsets: list[float]  # simulated seconds after start, per traffic image
    records: list[Any] = field(default_factory=list)  # the workflow's ExecutionRecords


@dataclass(frozen=True)
class PipelineOptions:
    source: Path | None = None  # None: download the official tarball
    classes: tuple[str, ...] = DEFAULT_CLASSES
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    endpoint: str = ENDPOINT_NAME
    threshold: float = DEFAULT_THRESHOLD
    keep_endpoint: bool = False
    concurrency: int = 4
    port: int | None = None


@dataclass
class StepResult:
    name: str
    status: str  # "ran" | "skipped"
    detail: str
    seconds: float = 0.0


@dataclass
class PipelineSummary:
    steps: list[StepResult] = field(default_factory=list)
    job: str = ""
    test_accuracy: float = float("nan")
    test_ece: float = float("nan")
    pass_share: float = float("nan")
    accuracy_on_passed: float = float("nan")
    succeeded: int = 0
    failed: int = 0
    monitoring_status: str = ""
    violations: list[str] = field(default_factory=list)
    report: str = ""
    endpoint: str = ""  # the endpoint the workflow step called (always one the pipeline deployed)
    endpoint_detail: str = ""  # what became of it, for the summary

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "steps": [s.__dict__ for s in self.steps]}


def run_pipeline(
    settings: Settings,
    options: PipelineOptions,
    *,
    log: LogFn = print,
    progress: ProgressFn = no_progress,
) -> PipelineSummary:
    """Run every step, skipping the ones whose output is current; see the module doc."""
    store = open_store(settings)
    state = _load_state(settings)
    summary = PipelineSummary()

    def step(name: str, fn: Callable[[], tuple[str, str]]) -> None:
        log(f"== {name}")
        t0 = time.perf_counter()
        status, detail = fn()
        summary.steps.append(StepResult(name, status, detail, time.perf_counter() - t0))
        log(f"   {status}: {detail}")

    step("stage", lambda: _stage(settings, store, options, progress))
    step("train", lambda: _train(settings, store, options, summary, log, progress))
    step("evaluate", lambda: _evaluate(settings, store, summary, options, progress))
    fingerprint = _fingerprint(store, settings.bucket, summary.job, options)
    if state.get("fingerprint") == fingerprint and _report_exists(store, settings, state):
        for name in ("deploy", "workflow", "monitor"):
            summary.steps.append(StepResult(name, "skipped", "current for this model and data"))
            log(f"== {name}\n   skipped: current for this model and data")
        summary.succeeded, summary.failed = state["succeeded"], state["failed"]
        summary.monitoring_status, summary.violations = state["status"], state["violations"]
        summary.report = state["report"]
        summary.endpoint = str(state.get("last_endpoint", ""))
        summary.endpoint_detail = "not needed this time: every later step was current"
        return summary

    started = datetime.now(UTC).replace(microsecond=0)
    plan = traffic_plan(store, settings.bucket, started)
    step("deploy", lambda: _deploy(settings, options, summary, state, log))
    try:
        step("workflow", lambda: _workflow(settings, store, options, summary, progress, plan))
        if not options.keep_endpoint:
            _delete_own_endpoint(settings, state)  # flushes the capture buffers
        else:
            _wait_for_capture(store, settings.bucket, summary.endpoint, started)
        step("monitor", lambda: _monitor(settings, store, options, summary, started, plan))
    finally:
        if not options.keep_endpoint:
            _delete_own_endpoint(settings, state)
    summary.endpoint_detail = (
        "deployed by the pipeline, still running (--keep-endpoint)"
        if options.keep_endpoint
        else "deployed by the pipeline, deleted at the end"
    )
    state.update(
        {
            "fingerprint": fingerprint,
            "succeeded": summary.succeeded,
            "failed": summary.failed,
            "status": summary.monitoring_status,
            "violations": summary.violations,
            "report": summary.report,
            "last_endpoint": summary.endpoint,
        }
    )
    _save_state(settings, state)
    return summary


# ------------------------------------------------------------------ steps


def _stage(
    settings: Settings, store: Store, options: PipelineOptions, progress: ProgressFn
) -> tuple[str, str]:
    from sconeflow import staging

    if options.source is None:
        tarball = staging.download_cifar(
            settings.downloads_dir / "cifar-100-python.tar.gz", progress=progress
        )
    else:
        tarball = options.source
    result = staging.stage_cifar(
        store, settings.bucket, tarball, options.classes, progress=progress
    )
    counts = ", ".join(f"{s} {sum(c.values())}" for s, c in result.counts.items())
    if result.load.current:
        return "skipped", f"{counts} images already current in {result.load.location}"
    return "ran", f"{counts} images -> {result.load.location}"


def _train(
    settings: Settings,
    store: Store,
    options: PipelineOptions,
    summary: PipelineSummary,
    log: LogFn,
    progress: ProgressFn,
) -> tuple[str, str]:
    from sconeflow.training.job import find_current_job, run_training_job

    current = find_current_job(settings, store, options.hyperparameters)
    if current is not None:
        summary.job = current
        return "skipped", f"{current} already trained on this data with these settings"
    job = run_training_job(settings, store, options.hyperparameters, log=log, progress=progress)
    summary.job = job.name
    metrics = job.metrics
    return "ran", (
        f"{job.name}: held-out accuracy {metrics.get('validation_accuracy', float('nan')):.3f}"
        f", trained in {metrics.get('train_seconds', float('nan')):.0f} s"
    )


def _evaluate(
    settings: Settings,
    store: Store,
    summary: PipelineSummary,
    options: PipelineOptions,
    progress: ProgressFn,
) -> tuple[str, str]:
    from sconeflow.evaluation import evaluate_model

    ev = evaluate_model(settings, store, summary.job, "test", progress=progress)
    row = next(r for r in ev.thresholds((options.threshold,)))
    summary.test_accuracy, summary.test_ece = ev.accuracy, ev.ece
    summary.pass_share, summary.accuracy_on_passed = row.pass_share, row.accuracy_on_passed
    return "ran", (
        f"test accuracy {ev.accuracy:.3f}, ECE {ev.ece:.3f}; at {options.threshold}: "
        f"{_passed(row.pass_share, row.accuracy_on_passed)}"
    )


def _deploy(
    settings: Settings,
    options: PipelineOptions,
    summary: PipelineSummary,
    state: dict[str, Any],
    log: LogFn,
) -> tuple[str, str]:
    from sconeflow.serving.capture import capture_config
    from sconeflow.serving.endpoints import delete_endpoint, deploy

    name, note = _own_endpoint_name(settings, options.endpoint, state)
    if note:
        log(f"   {note}")
    existing = _endpoint_row(settings, name)  # if not None, the pipeline deployed it
    if existing is not None:
        if existing.model == summary.job and existing.status == "InService":
            summary.endpoint = existing.name
            return "skipped", f"{existing.name} already serves {summary.job} at {existing.url}"
        delete_endpoint(settings, existing.name)
        state.pop("endpoint", None)
        _save_state(settings, state)
    ep = deploy(
        settings,
        summary.job,
        capture_config(100, "InputAndOutput", settings.bucket),
        name=name,
        port=options.port,
    )
    # Recorded before anything else can fail, so that even a pipeline killed mid-run
    # leaves a record of what it started (the next run replaces or deletes it).
    state["endpoint"] = _ownership(ep)
    _save_state(settings, state)
    summary.endpoint = ep.name
    return "ran", f"{ep.name} at {ep.url}, capturing 100% of requests"


def traffic_plan(store: Store, bucket: str, now: datetime) -> TrafficPlan:
    """Stratified, seeded halves of data/test (see the module doc) and the simulated times
    of the stream: continuous arrivals over SIMULATED_HOURS from 08:00 UTC the day before."""
    import random

    from sconeflow.executions.traffic import arrival_offsets
    from sconeflow.staging import parse_lst

    rows = parse_lst(store.get(bucket, "data/test.lst").decode(), source="data/test.lst")
    labels = {f"data/test/{name}": label for _, label, name in rows}
    rng = random.Random(SPLIT_SEED)
    baseline: list[str] = []
    traffic: list[str] = []
    for label in sorted(set(labels.values())):
        keys = sorted(k for k, v in labels.items() if v == label)
        rng.shuffle(keys)
        baseline += keys[: len(keys) // 2]
        traffic += keys[len(keys) // 2:]
    rng.shuffle(traffic)  # the reference generator's random order
    start = (now - timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    rate = max(len(traffic), 1) / (SIMULATED_HOURS * 3600)
    return TrafficPlan(sorted(baseline), traffic, labels, start,
                       arrival_offsets(len(traffic), rate))


def _workflow(
    settings: Settings,
    store: Store,
    options: PipelineOptions,
    summary: PipelineSummary,
    progress: ProgressFn,
    plan: TrafficPlan,
) -> tuple[str, str]:
    from sconeflow.executions import runner
    from sconeflow.executions.definitions import load_definition
    from sconeflow.executions.records import ExecutionRecord

    inputs = [
        {"image_data": "", "s3_bucket": settings.bucket, "s3_key": k, "inferences": []}
        for k in plan.traffic
    ]
    definition = load_definition(None)
    handlers = runner.local_handlers(settings, summary.endpoint, options.threshold)
    wf = runner.WorkflowRunner(settings, definition, handlers, threshold=options.threshold)
    done = [0]

    def on_done(record: ExecutionRecord) -> None:
        done[0] += 1
        progress("workflow executions", done[0], len(inputs))

    records = wf.stream(inputs, concurrency=options.concurrency, on_done=on_done)
    plan.records = records
    summary.succeeded = sum(r.status == "SUCCEEDED" for r in records)
    summary.failed = sum(r.status == "FAILED" for r in records)
    other = len(records) - summary.succeeded - summary.failed
    errors = sorted({r.error for r in records if r.error})
    return "ran", (
        f"{len(records)} executions of the reference state machine (the traffic half of "
        f"data/test): {summary.succeeded} "
        f"SUCCEEDED, {summary.failed} FAILED ({', '.join(errors) or 'none'})"
        + (f", {other} other" if other else "")
    )


def _monitor(
    settings: Settings,
    store: Store,
    options: PipelineOptions,
    summary: PipelineSummary,
    started: datetime,
    plan: TrafficPlan,
) -> tuple[str, str]:
    import tempfile

    import numpy as np

    from sconeflow.monitoring import baseline as bl
    from sconeflow.monitoring.capture_reader import read_capture
    from sconeflow.monitoring.embeddings import load_embedder
    from sconeflow.monitoring.features import compute_features
    from sconeflow.monitoring.outcomes import Promise, WorkflowOutcome
    from sconeflow.monitoring.report import render_report, write_report
    from sconeflow.monitoring.runner import run_monitoring
    from sconeflow.monitoring.simulate import replay_capture
    from sconeflow.selective import select_threshold
    from sconeflow.serving.endpoints import resolve_model

    schedule = f"{summary.endpoint}-monitor"
    with tempfile.TemporaryDirectory(prefix="sconeflow-pipeline-") as tmp:
        model_dir = resolve_model(settings, summary.job, Path(tmp) / "model")
        # The baseline: the model's answers (and embeddings) on the baseline half, by the
        # endpoint's own code.
        records, names = bl.records_from_images(store, settings.bucket, "data/test", model_dir,
                                                keys=plan.baseline)  # fmt: skip
        table = compute_features(records, names, embedder=load_embedder(model_dir)[0])
        base = bl.build_baseline(table)
        bl.save_baseline(store, settings.bucket, bl.baseline_prefix(schedule), base)
        promise = _baseline_promise(records, plan, names, select_threshold, Promise, np)
        sim_end, replayed = _replay(store, settings.bucket, summary.endpoint, started, plan,
                                    read_capture, replay_capture)  # fmt: skip
        truth = _write_ground_truth(store, settings.bucket, summary.endpoint, plan)
        start = plan.start
        outcomes = [
            WorkflowOutcome(start + timedelta(seconds=off), r.status, r.name, key,
                            options.threshold)
            for r, key, off in zip(plan.records, plan.traffic, plan.offsets, strict=False)
        ]
        note = (f"Times are simulated: the endpoint's capture of this stream ({replayed} "
                f"records) is replayed onto {SIMULATED_HOURS} h of a working day "
                f"(capture variant {SIMULATED_VARIANT}); the baseline is the other half of "
                "data/test; labels are the test split's, written as ground truth.")
        with closing(db.connect(settings.db_path)) as conn:
            record, analysis = run_monitoring(
                store, settings.bucket, conn, endpoint=summary.endpoint, schedule=schedule,
                class_names=names, since=start, until=sim_end + timedelta(seconds=1),
                variant=SIMULATED_VARIANT, outcomes=outcomes, ground_truth_prefix=truth,
                model_dir=model_dir, model_name=summary.job, notes=[note], promise=promise,
            )
    keys = write_report(
        store,
        settings.bucket,
        record.prefix,
        render_report(analysis, run=record, threshold=options.threshold),
    )
    summary.monitoring_status = record.status
    summary.violations = [
        f"{v['feature_name']}: {v['constraint_check_type']}" for v in analysis.checks.violations
    ]
    summary.report = store.uri(settings.bucket, keys[0])
    return "ran", (
        f"{len(analysis.table)} captured records (a simulated {SIMULATED_HOURS} h day) vs a "
        f"baseline of {len(records)} other test images: {record.status}, "
        f"{len(summary.violations)} violation(s)"
    )


def _baseline_promise(records: Any, plan: TrafficPlan, names: list[str], select: Any,
                      promise_type: Any, np: Any) -> Any:
    """The threshold for PROMISE_ACCURACY chosen on the baseline half (labelled images the
    model never trained on), as the promise the monitor checks on the traffic half."""
    probs = np.array([r.probabilities for r in records])
    labels = np.array([plan.labels[r.event_id] for r in records])
    chosen = select(probs.max(axis=1), probs.argmax(axis=1) == labels, PROMISE_ACCURACY,
                    labels=labels, class_names=names)
    return promise_type(threshold=chosen.threshold, target_accuracy=PROMISE_ACCURACY,
                        confidence=chosen.confidence, guaranteed=chosen.guaranteed,
                        expected_coverage=chosen.coverage,
                        source=f"chosen by the pipeline on its {len(records)} baseline images")


def _replay(store: Store, bucket: str, endpoint: str, started: datetime, plan: TrafficPlan,
            read_capture: Any, replay_capture: Any) -> tuple[datetime, int]:
    """The endpoint's capture of the stream, again under SIMULATED_VARIANT at each image's
    simulated time (a retry keeps its real delay after the first try)."""
    when = {k: plan.start + timedelta(seconds=o) for k, o in zip(plan.traffic, plan.offsets,
                                                                    strict=True)}
    captured = read_capture(store, bucket, endpoint, since=started - timedelta(seconds=1))
    first: dict[str, datetime] = {}
    records, times = [], []
    for r in captured.records:
        key = r.inference_id or ""
        if key not in when:
            continue
        first.setdefault(key, r.inference_time)
        records.append(r)
        times.append(when[key] + (r.inference_time - first[key]))
    # An earlier run's replay (another model's answers) would fall in the same window.
    for old in store.list(bucket, f"data_capture/{endpoint}/{SIMULATED_VARIANT}/"):
        store.delete(bucket, old)
    replay_capture(store, bucket, endpoint, records, times, variant=SIMULATED_VARIANT)
    return max(times, default=plan.start), len(records)


def _write_ground_truth(store: Store, bucket: str, endpoint: str, plan: TrafficPlan) -> str:
    """The traffic's labels under ground_truth/<endpoint>/, keyed by inference id (the image
    key classifyImage sends), as a labelling job would deliver them; returns the prefix."""
    from sconeflow.monitoring.outcomes import format_ground_truth

    prefix = f"ground_truth/{endpoint}/"
    lines = [format_ground_truth(k, plan.labels[k]) for k in plan.traffic]
    key = f"{prefix}{plan.start:%Y/%m/%d/%H}/pipeline-labels.jsonl"
    store.put(bucket, key, ("\n".join(lines) + "\n").encode())
    return prefix


# ------------------------------------------------------------------ helpers


def _ownership(ep: Any) -> dict[str, Any]:
    """What identifies one deployment of an endpoint: a name can be deleted and deployed
    again by someone else, but not with the same creation time and server pid."""
    return {"name": ep.name, "created_at": ep.created_at, "pid": ep.pid}


def _endpoint_row(settings: Settings, name: str) -> Any:
    from sconeflow.serving.endpoints import describe_endpoint_row

    try:
        return describe_endpoint_row(settings, name)
    except EndpointError:  # no such endpoint
        return None


def is_own_endpoint(ep: Any, state: Mapping[str, Any]) -> bool:
    """True if `ep` (an endpoints row) is the very deployment the pipeline recorded."""
    return state.get("endpoint") == _ownership(ep)


def _own_endpoint_name(
    settings: Settings, wanted: str, state: Mapping[str, Any]
) -> tuple[str, str]:
    """The endpoint name the pipeline may use, and a note when it is not `wanted`.

    `wanted` if it is free or the pipeline's own; else `<wanted>-pipeline` on the same
    terms. Someone else's endpoint is never reused, replaced or stopped: it may serve
    another model, capture less than every request, or be in use.
    """
    fallback = f"{wanted}-pipeline"
    for name in (wanted, fallback):
        ep = _endpoint_row(settings, name)
        if ep is None or is_own_endpoint(ep, state):
            if name == wanted:
                return name, ""
            return name, (
                f"endpoint {wanted} was not deployed by the pipeline, so it is left as it "
                f"is; the pipeline deploys its own as {name}"
            )
    raise EndpointError(
        f"endpoints {wanted!r} and {fallback!r} both exist and were not deployed by the "
        "pipeline, which never stops an endpoint it did not create; pass --endpoint with "
        f"another name, or delete one with `sconeflow endpoint delete {fallback}`"
    )


def _delete_own_endpoint(settings: Settings, state: dict[str, Any]) -> None:
    """Delete the endpoint the pipeline deployed (if it still runs as deployed) and forget
    it. Anything else under that name is not the pipeline's and is left alone."""
    from sconeflow.serving.endpoints import delete_endpoint

    own = state.get("endpoint")
    if not own:
        return
    ep = _endpoint_row(settings, str(own.get("name", "")))
    if ep is not None and is_own_endpoint(ep, state):
        with contextlib.suppress(EndpointError):  # gone meanwhile
            delete_endpoint(settings, ep.name)
    state.pop("endpoint", None)
    _save_state(settings, state)


def _wait_for_capture(store: Store, bucket: str, endpoint: str, since: datetime) -> None:
    """With --keep-endpoint the server keeps running, so its capture buffer is flushed by
    time (every few seconds), not by a stop: wait until the record count stops growing."""
    from sconeflow.monitoring.capture_reader import read_capture

    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        n = len(read_capture(store, bucket, endpoint, since=since).records)
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since > 6:
            return
        time.sleep(1)


def _fingerprint(store: Store, bucket: str, job: str, options: PipelineOptions) -> str:
    """What the deploy/workflow/monitor steps depend on: model, staged data, threshold."""
    from sconeflow.staging import MANIFEST_KEY

    h = hashlib.sha256()
    h.update(job.encode())
    h.update(store.get(bucket, MANIFEST_KEY))
    h.update(f"{options.threshold}".encode())
    return h.hexdigest()


def _report_exists(store: Store, settings: Settings, state: Mapping[str, Any]) -> bool:
    report = state.get("report")
    if not report:
        return False
    key = str(report)
    prefix = store.uri(settings.bucket, "")
    key = key[len(prefix):] if key.startswith(prefix) else key
    try:
        return store.exists(settings.bucket, key.lstrip("/"))
    except Exception:
        return False


def _state_path(settings: Settings) -> Path:
    return settings.home / "pipeline.json"


def _load_state(settings: Settings) -> dict[str, Any]:
    try:
        data = json.loads(_state_path(settings).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(settings: Settings, state: Mapping[str, Any]) -> None:
    path = _state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def format_summary(summary: PipelineSummary) -> Sequence[tuple[str, str]]:
    """The rows of the closing summary table."""
    return [
        ("model", summary.job),
        ("endpoint", f"{summary.endpoint or 'none'} ({summary.endpoint_detail})"),
        ("test accuracy", f"{summary.test_accuracy:.3f}"),
        ("calibration error (ECE)", f"{summary.test_ece:.3f}"),
        ("confident at the threshold", _passed(summary.pass_share, summary.accuracy_on_passed)),
        ("executions succeeded", str(summary.succeeded)),
        ("executions failed (low confidence)", str(summary.failed)),
        ("monitoring", summary.monitoring_status),
        ("violations", ", ".join(summary.violations) or "none"),
        ("report", summary.report),
    ]


def _passed(share: float, accuracy: float) -> str:
    if share != share or share == 0:  # NaN or nobody passed
        return "0% of test images pass"
    return f"{share:.0%} of test images pass, {accuracy:.1%} of those right"
