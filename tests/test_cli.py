"""The command layer: every subcommand has --help; errors are one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from sconeflow.cli import COMMANDS, cli, main


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        path = (*prefix, name)
        out.append(path)
        if isinstance(cmd, click.Group):
            out.extend(_all_commands(cmd, path))
    return out


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _all_commands(cli)
    for expected in ["stage", "train", "evaluate", "deploy", "serve", "invoke", "pipeline",
                     "cleanup"]:  # fmt: skip
        assert (expected,) in commands
    assert ("endpoint", "list") in commands and ("workflow", "history") in commands
    assert ("monitor", "baseline") in commands and ("train", "describe") in commands
    for path in [(), *commands]:
        with pytest.raises(SystemExit) as e:
            main([*path, "--help"])
        assert e.value.code == 0, path
        assert "Usage: sconeflow" in capsys.readouterr().out


def test_help_works_even_with_invalid_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--bucket", "NOT VALID", "stage", "--help"])
    assert e.value.code == 0


def test_invalid_setting_is_one_line_naming_it(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sconeflow",
            "--home",
            str(tmp_path),
            "--bucket",
            "NO",
            "stage",
            "--source",
            "x.tar.gz",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("ConfigError: bucket:")
    assert "Traceback" not in proc.stderr


HEAVY = ("torch", "scipy", "matplotlib", "onnxruntime", "boto3", "numpy", "PIL")


def test_no_help_imports_heavy_libraries() -> None:
    """`sconeflow --help` and every command's and subcommand's --help, one after another in
    one fresh interpreter: none of them imports a heavy library (each command imports those
    where it runs), so --help starts fast. benchmarks/cli_bench.py measures the time."""
    code = (
        "import sys\n"
        "from sconeflow.cli import main\n"
        "import sconeflow.cli\n"
        f"for path in {[list(p) for p in [(), *_all_commands(cli)]]!r}:\n"
        "    try:\n        main([*path, '--help'])\n    except SystemExit:\n        pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_command_list_comes_from_commands_without_importing_them() -> None:
    code = (
        "import sys\nfrom sconeflow.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('sconeflow.cli.') "
        "and m != 'sconeflow.cli.common'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    listing = " ".join(out.stdout.split())  # whatever the terminal's width wrapped
    for name, (_target, summary) in COMMANDS.items():
        assert f" {name} {summary}" in listing, name
        command = cli.get_command(click.Context(cli), name)
        assert command is not None and command.get_short_help_str(200) == summary


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as e:
        main(["stage", "--no-such-flag"])
    assert e.value.code == 2


@pytest.mark.parametrize("command", [["pipeline"], ["deploy"], ["console"]])
def test_port_0_is_refused_where_the_port_must_be_known(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # "any port" is what leaving --port out means; 0 used to deploy an endpoint that could
    # never be found, and wait 120 s for it.
    with pytest.raises(SystemExit) as e:
        main([*command, "--port", "0"])
    assert e.value.code == 2
    assert "'--port': 0 is not in the range 1<=x<=65535" in capsys.readouterr().err
