#!/usr/bin/env bash
# The checks a lent GPU machine runs (python3 there holds PyTorch CUDA; no TensorRT), in one go:
# the GPU tests, the side-by-side comparison on CUDA at full width, and the network benchmarks.
# Usage: bash scripts/gpu_checks.sh OUT_FOLDER   (logs and JSON land there)
set -uo pipefail
SECONDS=0
out=${1:?usage: bash scripts/gpu_checks.sh OUT_FOLDER}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c 'import sys, torch, numpy, scipy, sklearn, onnx, onnxruntime as ort
print(sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__,
      "sklearn", sklearn.__version__, "onnx", onnx.__version__, "onnxruntime", ort.__version__, ort.get_available_providers())' \
  | tee -a "$out/gpu.txt"
timeout 300 python3 -m benchmarks.compare --device cuda --width full --rounds 7 --json "$out/compare-cuda.json" \
  2>&1 | tee "$out/compare-cuda.log"
timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/test_backends.py 2>&1 | tee "$out/gpu-tests.log"
timeout 150 python3 -m pytest -q -p no:cacheprovider benchmarks/test_networks_bench.py --benchmark-enable \
  --benchmark-json="$out/bench-gpu.json" 2>&1 | tee "$out/bench-gpu.log"
echo "gpu checks took ${SECONDS} s"
