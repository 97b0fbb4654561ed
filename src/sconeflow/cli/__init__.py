"""The `sconeflow` command: parse, call the library, print. Nothing else lives here.

Each capability has its own command module in this package; they are registered below.
A SconeflowError prints `ErrorName: message` on stderr and exits 1, without a traceback.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

from sconeflow import __version__
from sconeflow.cli.common import Context
from sconeflow.config import load_settings
from sconeflow.errors import SconeflowError

# command name -> ("module:attribute", the one-line summary `sconeflow --help` lists). A
# command's module is imported only when that command runs or shows its own --help, so
# `sconeflow --help` imports no command module and `sconeflow stage` never pays for scipy,
# matplotlib or torch. The summary lives here, not only in the command's docstring, because
# reading the docstring would mean importing the module; get_command gives it to the
# command as its short_help, so the two never disagree.
COMMANDS = {
    "stage": ("stage:stage", "Stage CIFAR-100 images and .lst manifests in the store."),
    "train": ("train:train", "Train the classifier on the staged data (a training job)."),
    "evaluate": ("evaluate:evaluate", "Accuracy, calibration and thresholds on a split."),
    "deploy": ("endpoint:deploy", "Start an endpoint in the background for a model."),
    "endpoint": ("endpoint:endpoint", "List, describe and delete endpoints."),
    "serve": ("endpoint:serve", "Run the model server in the foreground (container style)."),
    "invoke": ("endpoint:invoke", "Send images to an endpoint and print its predictions."),
    "workflow": ("workflow:workflow", "Run the state machine and inspect its executions."),
    "monitor": ("monitor:monitor", "Monitor an endpoint's captured traffic for drift."),
    "pipeline": ("pipeline:pipeline", "Run everything end to end: stage to monitoring report."),
    "cleanup": ("pipeline:cleanup", "Delete endpoints and, if asked, models, captures, data."),
    "aws": ("aws:aws", "Move the workspace to AWS: synth, deploy, status, destroy."),
    "console": ("console:console", "Serve the AWS APIs and the web console on one local URL."),
}


class LazyGroup(click.Group):
    """click's documented lazy-loading group: commands resolved from COMMANDS on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, summary = COMMANDS[cmd_name]
        module, attr = target.split(":")
        command = getattr(importlib.import_module(f"sconeflow.cli.{module}"), attr)
        assert isinstance(command, click.Command)
        command.short_help = summary
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from COMMANDS alone, importing no command module."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="sconeflow")
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    help="Workspace folder (default: $SCONEFLOW_HOME or ./.sconeflow).",
)
@click.option(
    "--store",
    "store_uri",
    help="Object store: file:///path (default: <home>/store) or s3:// for any S3 API "
    "(honours AWS_ENDPOINT_URL). Also $SCONEFLOW_STORE.",
)
@click.option("--bucket", help="Bucket for data, models and captures (default: sconeflow).")
@click.pass_context
def cli(ctx: click.Context, home: str | None, store_uri: str | None, bucket: str | None) -> None:
    """sconeflow: stage CIFAR-100, train, serve, orchestrate and monitor the Scones Unlimited
    vehicle classifier on one machine, in AWS's formats."""
    # Settings are built lazily so that `--help` works even with a broken environment.
    ctx.obj = Context(lambda: load_settings(home=home, store_uri=store_uri, bucket=bucket))




class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that work in
    progress ends the same way: recorded as stopped (executions ABORTED), never left
    running in the workspace."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning SconeflowError into `ErrorName: message`, exit 1;
    Ctrl-C exits 130 and SIGTERM 143, after the command has recorded what it stopped."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        # standalone_mode=False returns --help's and ctx.exit()'s code instead of exiting.
        code = cli.main(args=argv, prog_name="sconeflow", standalone_mode=False)
        if isinstance(code, int):
            sys.exit(code)
    except click.exceptions.Abort as err:
        # click turns KeyboardInterrupt (and so Terminated) into Abort.
        if isinstance(err.__cause__, Terminated):
            click.echo("Terminated.", err=True)
            sys.exit(143)
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except SconeflowError as err:
        click.echo(f"{type(err).__name__}: {err}", err=True)
        sys.exit(1)
    except Terminated:
        click.echo("Terminated.", err=True)
        sys.exit(143)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
