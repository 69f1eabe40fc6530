#!/usr/bin/env bash
# Create .venv and install the project with the CPU build of torch (never the multi-GB CUDA build).
# Usage: scripts/setup.sh [extra ...]   e.g. scripts/setup.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="train,dicom,report,signing,topcon"
for extra in "$@"; do extras="$extras,$extra"; done
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
fi
.venv/bin/pip install --quiet torch==2.13.0 -e ".[$extras]"
