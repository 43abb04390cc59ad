#!/usr/bin/env bash
# The main job: set up .venv/ (idempotent) and run a quick end-to-end pass over every domain into demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/polydiff demo --out demo-out "$@"
