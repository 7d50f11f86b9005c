#!/usr/bin/env bash
# Make the venv the target-mode tests run the Python apps with (tests/apps/.venv), from
# PyPI. Run once; tests/target.rs fails with a message pointing here when it is missing.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
echo "ready: $(pwd)/.venv"
