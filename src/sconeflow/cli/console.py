"""`sconeflow console`: the local console (AWS APIs + web pages) for this workspace."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from sconeflow.cli.common import Context, pass_context
from sconeflow.errors import ConfigError


def load_handlers(spec: str) -> Mapping[str, Any]:
    """`module:NAME` or `file.py:NAME`, a mapping of Lambda function name to handler."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ConfigError(f"--handlers {spec!r}: expected module:NAME or path/file.py:NAME, "
                          "NAME a dict of function name -> lambda_handler(event, context)")
    try:
        if target.endswith(".py"):
            loader = importlib.util.spec_from_file_location(Path(target).stem, target)
            if loader is None or loader.loader is None:
                raise ImportError(f"cannot load {target}")
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        table = getattr(module, attr)
    except (ImportError, AttributeError, OSError) as err:
        raise ConfigError(f"--handlers {spec!r}: {err}") from err
    if not isinstance(table, Mapping) or not all(callable(h) for h in table.values()):
        raise ConfigError(f"--handlers {spec!r}: {attr} must be a dict of function name -> "
                          "callable(event, context)")
    return table


console_options = [
    click.option("--port", type=click.IntRange(1, 65535),
                 help="Port (default: 4566, or the next free one)."),
    click.option("--host", default="127.0.0.1", show_default=True,
                 help="Address to bind; any other than 127.0.0.1 needs --token."),
    click.option("--token", help="Secret every request must carry (header X-Sconeflow-Token, "
                 "the cookie set by opening the printed link, or as the AWS access key id)."),
    click.option("--handlers", "handlers_spec", metavar="MODULE:NAME",
                 help="Extra Lambda handlers, a dict in a module or .py file, by function name."),
    click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True,
                 help="Executions running at once."),
    click.option("--sample-seconds", type=click.FloatRange(min=0.1), default=5.0,
                 show_default=True, help="How often endpoints' /metrics are sampled."),
]


def with_console_options(func: Any) -> Any:
    for option in reversed(console_options):
        func = option(func)
    return func


def run_console(ctx: Context, port: int | None, host: str, token: str | None,
                handlers_spec: str | None, concurrency: int, sample_seconds: float) -> None:
    from sconeflow.console.server import ConsoleOptions, serve

    options = ConsoleOptions(
        host=host, port=port, token=token, concurrency=concurrency,
        sample_seconds=sample_seconds,
        handlers=load_handlers(handlers_spec) if handlers_spec else {},
    )
    serve(ctx.settings, options, announce=lambda line: click.echo(line, nl=True))


@click.command()
@with_console_options
@pass_context
def console(ctx: Context, port: int | None, host: str, token: str | None,
            handlers_spec: str | None, concurrency: int, sample_seconds: float) -> None:
    """Serve this workspace's AWS APIs (Step Functions, SageMaker, sagemaker-runtime) and the
    web console on one local URL, until Ctrl-C; executions still running then end ABORTED,
    redrivable."""
    run_console(ctx, port, host, token, handlers_spec, concurrency, sample_seconds)
