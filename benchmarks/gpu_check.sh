#!/usr/bin/env bash
# The GPU path in one command, a few minutes on one GPU:
#   1. the device tests on CUDA: tests/test_device.py (dense, SVD, ARPACK and factored-eigenvalue
#      answers against CPU LAPACK references, float64 and float32 products),
#      tests/test_block_solver.py (the block solver against LAPACK and ARPACK) and
#      tests/test_run_context.py (every study of one model with --device cuda: tables equal to
#      the CPU's within each column's precision, the same verdicts);
#   2. the whole-network benchmark (bench_spectra.py part d: all 27 units and 3 stages of a
#      CIFAR-shaped ResNet-56, one image, all values, float64 and float32 products, each part next
#      to its floor), the image-batching part (e) and the block solver against ARPACK (g: a digits,
#      a CIFAR-shaped and the 200704-wide ResNet-18 layer1.0 unit, --imagenet) with --device cuda;
#   3. vit_b_16 at 224x224 (bench_vit.py: top-20 σ by ARPACK and an SLQ density of two
#      151296-wide sub-layers) with --device cuda;
#   4. a GPT-2-small-sized causal LM, T = 128 (bench_lm.py: the 24 98304-wide sub-layers; one
#      J·v and Jᵀ·w each in float64 and float32, block/ARPACK x float32/float64 compared on two,
#      the top-20 σ of all 24 by the fastest that agrees with ARPACK float64 to 1e-4, target
#      all 24 within 1 minute on one H100/H200; SLQ of two at the script's modest 4 probes x 30
#      steps, Lyapunov exponents across the 24) with --device cuda;
#   5. `resdyn demo --quick --device cuda`, timed.
# The whole script should stay within about 8 minutes on one GPU.
# Usage: benchmarks/gpu_check.sh [OUT_DIR]   (default out/gpu; logs and JSON land there)
# Needs a Python with torch (CUDA), scipy, pandas, pyarrow, scikit-learn, matplotlib, click, rich,
# safetensors, transformers and pytest; resdyn is used from src/ (no install needed). PYTHON
# picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=${1:-out/gpu}
mkdir -p "$DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: this script is for a GPU machine'; print(torch.__version__, torch.cuda.get_device_name())" | tee "$DIR/device.txt"
"$PY" -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_block_solver.py \
    tests/test_run_context.py tests/test_vit_units.py -rs 2>&1 \
    | tee "$DIR/tests.log"
"$PY" benchmarks/bench_spectra.py --parts d,e,g --device cuda --imagenet --repeat 1 \
    --json "$DIR/bench.json" 2>&1 \
    | tee "$DIR/bench.log"
"$PY" benchmarks/bench_vit.py --device cuda --probes 16 --steps 80 --json "$DIR/vit.json" 2>&1 \
    | tee "$DIR/vit.log"
"$PY" benchmarks/bench_lm.py --device cuda --json "$DIR/lm.json" 2>&1 \
    | tee "$DIR/lm.log"
TIMEFORMAT="demo --quick --device cuda: %R s"
{ time "$PY" -m resdyn demo --quick --device cuda --out "$DIR/demo" --fresh > "$DIR/demo.log" 2>&1 ; } \
    2>&1 | tee -a "$DIR/demo.log"
