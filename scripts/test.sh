#!/usr/bin/env bash
# The README's test command: set up the environment (first run), lint (ruff), type-check (mypy), run the
# whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev pretrained heidelberg-reference ray
.venv/bin/ruff check .
.venv/bin/mypy  # on sdk, as [tool.mypy] in pyproject.toml says
.venv/bin/python -m pytest "$@"
