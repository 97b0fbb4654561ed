#!/usr/bin/env bash
# Install sconeflow with everything its tests need, then run the whole suite:
# ruff (lint), mypy (types), pytest (unit, integration, browser). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
# Debian's Chromium drives the browser test of the monitoring report (Playwright uses it
# as is; it never downloads a browser of its own).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium not installed; the browser test will be skipped" >&2
  fi
fi

echo "== ruff"; python -m ruff check src tests benchmarks
echo "== mypy"; python -m mypy
echo "== pytest"; python -m pytest "$@"
