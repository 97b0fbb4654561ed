"""CLI start-up benchmark: `sconeflow --help` and every command's and subcommand's --help.

Target (issue 12): each finishes in 0.5 s or less, wall clock, on any 2-core machine. Each
run is a fresh process, as when a user types the command, so nothing is cached in memory
but the OS's page cache (the first run of each command warms it and is not counted). The
peer is the interpreter itself: `python -c pass` is the floor no command can go below.

Run quietly (nothing else busy on the machine): python benchmarks/cli_bench.py [--runs 7]
Prints the machine, each command's median, and the worst case against the target; exits 1
if the worst case is over it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 0.5


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_paths() -> list[tuple[str, ...]]:
    """(), then every command and subcommand, from the CLI's own tree."""
    import click

    from sconeflow.cli import cli

    def walk(group: click.Group, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        ctx = click.Context(group)
        out: list[tuple[str, ...]] = []
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            out.append((*prefix, name))
            if isinstance(cmd, click.Group):
                out.extend(walk(cmd, (*prefix, name)))
        return out

    return [(), *walk(cli, ())]


def time_once(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def median_time(argv: list[str], runs: int) -> float:
    time_once(argv)  # warm the page cache; not counted
    return statistics.median(time_once(argv) for _ in range(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    parser.add_argument(
        "--python-m",
        action="store_true",
        help="run `python -m sconeflow` instead of the installed `sconeflow` script",
    )
    parser.add_argument("--only", help="time only paths starting with this command")
    args = parser.parse_args()

    script = shutil.which("sconeflow")
    exe = [sys.executable, "-m", "sconeflow"] if args.python_m or not script else [script]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
          f"{platform.release()}, Python {platform.python_version()}")  # fmt: skip
    print(f"command: {' '.join(exe)} ... --help, median of {args.runs} fresh processes")
    if os.environ.get("PYTHONPATH"):
        print(f"PYTHONPATH={os.environ['PYTHONPATH']}")
    floor = median_time([sys.executable, "-c", "pass"], args.runs)
    print(f"{'python -c pass (the floor)':<34}{floor:>8.3f} s")

    paths = command_paths()
    if args.only:
        paths = [p for p in paths if p and p[0] == args.only] or [()]
    results = []
    for path in paths:
        seconds = median_time([*exe, *path, "--help"], args.runs)
        results.append((seconds, path))
        label = " ".join(("sconeflow", *path, "--help"))
        print(f"{label:<34}{seconds:>8.3f} s   (+{seconds - floor:.3f} s over the floor)")
    worst, worst_path = max(results)
    verdict = "within" if worst <= TARGET_S else "OVER"
    print(
        f"worst: sconeflow {' '.join(worst_path)} --help {worst:.3f} s, {verdict} the "
        f"{TARGET_S} s target ({worst / TARGET_S:.0%} of it); {len(results)} commands"
    )
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
