#!/usr/bin/env bash
# Create .venv/ in the repository root and install polydiff with every domain and the test tools, pinned by
# constraints.txt. Idempotent: it reinstalls only when pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.polydiff-setup
want=$(cat pyproject.toml constraints.txt examples/polydiff-example-plugin/pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import polydiff.core, polydiff.cli" 2>/dev/null; then
  echo "polydiff: environment up to date (.venv)"
  exit 0
fi
echo "polydiff: installing into .venv (first time: a few minutes)"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[all,test]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import polydiff.core, polydiff.cli, torch, torchaudio, e3nn, trimesh, rdkit" \
  || { echo "polydiff: installation failed (see pip's messages above)"; exit 1; }
echo "$want" > "$stamp"
