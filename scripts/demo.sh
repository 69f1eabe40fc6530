#!/usr/bin/env bash
# The README's main command: set up the environment (first run) and run the demo end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m demo "$@"
