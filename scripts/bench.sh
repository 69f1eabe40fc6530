#!/usr/bin/env bash
# Latency benchmarks (pytest-benchmark, short rounds): JSON in out/benchmarks/benchmarks.json.
# Full-width VGG16 at 224 by default (OCTC_BENCH_WIDTH, OCTC_BENCH_INPUT_PX to change); the first run
# makes a random-weight bundle in out/ (about two minutes), later runs reuse it. A 20-minute limit
# keeps a stuck benchmark from eating CI's time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
mkdir -p out/benchmarks
timeout 1200 .venv/bin/python -m pytest -o addopts="" benchmarks --benchmark-only --benchmark-min-rounds=3 \
    --benchmark-columns=min,median,max,rounds --benchmark-json out/benchmarks/benchmarks.json "$@"
