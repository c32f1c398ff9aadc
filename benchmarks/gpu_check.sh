#!/usr/bin/env bash
# The kernel tests compiled for a CUDA GPU, then benchmarks/kernels.py, in one go.
#
#   bash benchmarks/gpu_check.sh [extra arguments for benchmarks/kernels.py]
#
# Run from the repository root where python3 has torch (CUDA), triton, transformers and peft.
# paretune need not be installed: its packages are linked into a temporary site directory.
# Logs go to $OUT (default /tmp/paretune-gpu-check).
set -uo pipefail
out=${OUT:-/tmp/paretune-gpu-check}
mkdir -p "$out"
site=$(mktemp -d)
mkdir -p "$site/paretune"
for pkg in kernels trainers spaces search; do ln -s "$PWD/$pkg" "$site/paretune/$pkg"; done
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch, triton, transformers, peft; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
status=0
python3 benchmarks/kernels.py "$@" 2>&1 | tee "$out/kernels.txt" || status=1
# One tile config per kernel variant: autotuning every test shape would take many minutes.
PARETUNE_TEST_DEVICE=cuda PARETUNE_KERNELS_AUTOTUNE=0 python3 -m pytest -q -p no:cacheprovider \
    tests/test_kernels_ops.py tests/test_kernels_fused.py 2>&1 | tee "$out/tests.txt" | tail -40 || status=1
exit $status
