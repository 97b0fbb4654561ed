"""`sconeflow deploy`, `endpoint list|describe|delete`, `serve` and `invoke`."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import click

from sconeflow.cli.common import (
    Context,
    console,
    json_option,
    pass_context,
    print_json,
    print_table,
)
from sconeflow.config import ServingSettings, serving_settings
from sconeflow.errors import ConfigError, EndpointError

# Shared by `deploy` and `serve`.
threads_option = click.option(
    "--threads",
    type=click.IntRange(1, 64),
    help="onnxruntime threads per worker (default: the machine's cores / workers).",
)
max_batch_option = click.option(
    "--max-batch",
    type=click.IntRange(1, 1024),
    help="Most images per model call (default: 8, the fastest for sconeflow's net here).",
)


@click.command()
@click.option(
    "--model",
    required=True,
    help="Training job name, a model.tar.gz, or a folder with model.onnx + model.json.",
)
@click.option("--name", help="Endpoint name (default: <model>-<timestamp>).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port on 127.0.0.1 (default: 8080 if free, else any free port).",
)
@click.option(
    "--capture-sampling",
    type=click.IntRange(0, 100),
    default=100,
    show_default=True,
    help="Data capture sampling percentage; 0 disables capture.",
)
@click.option(
    "--capture-options",
    type=click.Choice(["Input", "Output", "InputAndOutput"]),
    default="InputAndOutput",
    show_default=True,
)
@click.option(
    "--capture-destination", help="DestinationS3Uri (default: s3://<bucket>/data_capture)."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Server worker processes (default: one per core).",
)
@threads_option
@max_batch_option
@json_option
@pass_context
def deploy(
    ctx: Context,
    model: str,
    name: str | None,
    port: int | None,
    capture_sampling: int,
    capture_options: str,
    capture_destination: str | None,
    workers: int | None,
    threads: int | None,
    max_batch: int | None,
    as_json: bool,
) -> None:
    """Create an endpoint: start its server in the background and wait until it is healthy."""
    from sconeflow.serving.capture import capture_config
    from sconeflow.serving.endpoints import deploy as deploy_endpoint

    settings = ctx.settings
    capture = capture_config(
        capture_sampling, capture_options, settings.bucket, capture_destination
    )
    with console.status("Starting the endpoint..."):
        ep = deploy_endpoint(
            settings, model, capture, name=name, port=port, workers=workers, threads=threads,
            max_batch=max_batch,
        )  # fmt: skip
    if as_json:
        print_json(ep.describe(settings))
        return
    console.print(
        f"Endpoint [bold]{ep.name}[/] is {ep.status} at {ep.url} "
        f"(pid {ep.pid}, capture {capture.sampling_percentage}% "
        f"{'on' if capture.enabled else 'off'})"
    )


@click.group()
def endpoint() -> None:
    """List, describe and delete endpoints."""


@endpoint.command("list")
@json_option
@pass_context
def list_cmd(ctx: Context, as_json: bool) -> None:
    """Endpoints of this workspace with their status and URL."""
    from sconeflow.serving.endpoints import list_endpoints

    eps = list_endpoints(ctx.settings)
    if as_json:
        print_json([e.describe(ctx.settings) for e in eps])
        return
    print_table(
        "Endpoints",
        ["name", "status", "url", "workers", "capture", "model", "created"],
        [
            (
                e.name,
                e.status,
                e.url,
                e.workers,
                f"{e.capture.sampling_percentage}%" if e.capture.enabled else "off",
                e.model,
                e.created_at,
            )
            for e in eps
        ],
    )


@endpoint.command()
@click.argument("name")
@json_option
@pass_context
def describe(ctx: Context, name: str, as_json: bool) -> None:
    """One endpoint in DescribeEndpoint's shape."""
    from sconeflow.serving.endpoints import describe_endpoint_row

    info = describe_endpoint_row(ctx.settings, name).describe(ctx.settings)
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        console.print(f"[bold]{key}[/]: {shown}", highlight=False)


@endpoint.command()
@click.argument("name")
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
@pass_context
def delete(ctx: Context, name: str, timeout: float) -> None:
    """Stop the server (it flushes captured data), then remove the endpoint."""
    from sconeflow.serving.endpoints import delete_endpoint

    delete_endpoint(ctx.settings, name, timeout=timeout)
    console.print(f"Deleted endpoint [bold]{name}[/]")


@click.command()
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path),
    help="Model folder or model.tar.gz (default: /opt/ml/model).",
)
@click.option(
    "--host",
    default="0.0.0.0",
    show_default=True,
    help="Address to listen on (a container listens on all).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (default: $SAGEMAKER_BIND_TO_PORT or 8080)."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Worker processes (default: $SAGEMAKER_MODEL_SERVER_WORKERS or one per core).",
)
@threads_option
@max_batch_option
@click.option("--name", help="Endpoint name for /endpoints/{name}/invocations and capture keys.")
@click.option("--capture-config", help="DataCaptureConfig as JSON (AWS's shape).")
@pass_context
def serve(
    ctx: Context,
    model_dir: Path | None,
    host: str,
    port: int | None,
    workers: int | None,
    threads: int | None,
    max_batch: int | None,
    name: str | None,
    capture_config: str | None,
) -> None:
    """Run the model server in the foreground (a container's `serve` entrypoint)."""
    import tempfile

    from sconeflow.serving.capture import parse_capture_config
    from sconeflow.serving.endpoints import validate_name
    from sconeflow.serving.model import prepare_model_dir
    from sconeflow.serving.server import (
        DEFAULT_MAX_BATCH,
        ServerSpec,
        default_threads,
        run_server,
    )

    env: ServingSettings = serving_settings()
    changes = {k: v for k, v in (("port", port), ("workers", workers)) if v is not None}
    serving = ServingSettings(**{**env.__dict__, **changes})
    capture = None
    if capture_config:
        try:
            capture = parse_capture_config(json.loads(capture_config))
        except json.JSONDecodeError as err:
            raise ConfigError(f"--capture-config is not valid JSON: {err}") from err
    with tempfile.TemporaryDirectory(prefix="sconeflow-model-") as tmp:
        model = prepare_model_dir(model_dir or serving.model_dir, Path(tmp))
        spec = ServerSpec(
            model_dir=model,
            serving=serving,
            host=host,
            name=validate_name(name) if name else None,
            capture=capture,
            settings=ctx.settings if capture is not None else None,
            threads=threads or default_threads(serving.workers),
            max_batch=max_batch or DEFAULT_MAX_BATCH,
        )
        code = run_server(spec)
    if code:
        raise EndpointError(f"the server stopped with status {code}; see the messages above")
    if name:  # stopped on purpose: an endpoint of this workspace is OutOfService, not Failed
        from sconeflow.serving.endpoints import record_stopped

        record_stopped(ctx.settings, name, os.getpid())


@click.command()
@click.option(
    "--endpoint",
    "target",
    required=True,
    help="Endpoint name in this workspace, or a URL such as http://127.0.0.1:8080.",
)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@json_option
@pass_context
def invoke(ctx: Context, target: str, path: Path, concurrency: int, as_json: bool) -> None:
    """Send an image, or every PNG/JPEG of a folder, and print probabilities and classes."""
    from sconeflow.serving.client import EndpointClient, image_files, invoke_files

    if "://" in target or ":" in target:
        url = target
    else:
        from sconeflow.serving.endpoints import describe_endpoint_row

        url = describe_endpoint_row(ctx.settings, target).url
    client = EndpointClient(url)
    classes = _classes(url)
    results = invoke_files(client, image_files(path), concurrency)

    def label(probs: list[float] | None) -> tuple[str | None, float | None]:
        if not probs:
            return None, None
        best = max(range(len(probs)), key=probs.__getitem__)
        return (classes[best] if best < len(classes) else str(best)), probs[best]

    rows = [(r, *label(r.probabilities)) for r in results]
    if as_json:
        print_json(
            [
                {
                    "file": r.path,
                    "probabilities": r.probabilities,
                    "class": c,
                    "confidence": p,
                    "error": r.error,
                }
                for r, c, p in rows
            ]
        )
    else:
        print_table(
            f"Invocations of {url}",
            ["file", "class", "confidence", "probabilities"],
            [
                (
                    Path(r.path).name,
                    c or f"error: {r.error}",
                    None if p is None else f"{p:.4f}",
                    None
                    if r.probabilities is None
                    else "[" + ", ".join(f"{v:.4f}" for v in r.probabilities) + "]",
                )
                for r, c, p in rows
            ],
        )
    if any(r.error for r in results):
        raise EndpointError(
            f"{sum(1 for r in results if r.error)} of {len(results)} invocations failed"
        )


def _classes(url: str) -> list[str]:
    """Class names from the endpoint's /ping (empty if it does not say)."""
    base = url.split("/invocations")[0].split("/endpoints/")[0].rstrip("/")
    base = base if "://" in base else f"http://{base}"
    try:
        with urllib.request.urlopen(f"{base}/ping", timeout=5) as resp:
            return [str(c) for c in json.loads(resp.read()).get("classes", [])]
    except (OSError, ValueError, AttributeError):
        return []
