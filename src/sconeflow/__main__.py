"""`python -m sconeflow` runs the CLI."""

from sconeflow.cli import main

main()
