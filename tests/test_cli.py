"""The command layer: every subcommand has --help; errors are one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from sconeflow.cli import cli, main


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


def test_a_light_command_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from sconeflow.cli import main\n"
        "try:\n    main(['stage', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'scipy', 'matplotlib', 'onnxruntime') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as e:
        main(["stage", "--no-such-flag"])
    assert e.value.code == 2
