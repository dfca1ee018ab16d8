#!/usr/bin/env bash
# One call on a GPU machine: the CUDA-path tests, then the GPU and engine benchmarks.
# Writes its tables to $OUT (default ./out/gpu). Meant to finish in under 8 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
timeout 150 "$PY" -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.txt"
timeout 240 "$PY" benchmarks/gpu_bench.py --out "$OUT" 2>&1 | tee "$OUT/gpu_bench.txt"
timeout 90 "$PY" benchmarks/engine_bench.py --steps 20 --json "$OUT/engine_bench.json" 2>&1 | tee "$OUT/engine_bench.txt"
