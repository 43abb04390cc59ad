#!/usr/bin/env bash
# Set up .venv/ (idempotent) and run the test suite (tests marked slow are left to `pytest -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -m "not slow" -p no:cacheprovider --durations=10 "$@"
