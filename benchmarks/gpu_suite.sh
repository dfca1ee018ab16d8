#!/usr/bin/env bash
# One call on a GPU machine: the CUDA-path tests, then the GPU and engine benchmarks.
# Writes its tables to $OUT (default ./out/gpu). Meant to finish in under 8 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# The project's virtualenv where there is one; else the machine's python3 (a GPU image with
# torch, torchvision and Pillow already in it is enough for this suite).
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -m cuda tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"
timeout 240 "$PY" benchmarks/gpu_bench.py --out "$OUT" 2>&1 | tee "$OUT/gpu_bench.txt"
timeout 90 "$PY" benchmarks/engine_bench.py --steps 20 --json "$OUT/engine_bench.json" 2>&1 | tee "$OUT/engine_bench.txt"
