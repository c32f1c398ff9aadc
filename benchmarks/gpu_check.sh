#!/usr/bin/env bash
# The whole GPU check in one go, at most 8 minutes on one GPU machine:
#   1. the kernel tests compiled for the GPU,
#   2. benchmarks/kernels.py (fused ops against peft / PyTorch),
#   3. benchmarks/kernels_breakdown.py (host, GPU and GEMM time per op),
#   4. benchmarks/gpu_trial.py (a LoRA SFT trial against HF's Trainer),
# then one table: every goal, met or not.
#
#   bash benchmarks/gpu_check.sh             # on a GPU machine
#   bash benchmarks/gpu_check.sh --dry-run   # the same steps on the CPU at toy sizes
#
# Run from the repository root where python3 has torch (CUDA), triton, transformers and peft.
# paretune need not be installed: its packages are linked into a temporary site directory.
# Logs go to $OUT (default /tmp/paretune-gpu-check). Each step has its own time limit, so a
# hung step costs its share and the others still run.
set -uo pipefail
dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1
out=${OUT:-/tmp/paretune-gpu-check}
mkdir -p "$out"
site=$(mktemp -d)
mkdir -p "$site/paretune"
for pkg in kernels trainers spaces search; do ln -s "$PWD/$pkg" "$site/paretune/$pkg"; done
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
started=$(date +%s)
declare -a rows

step() {  # step NAME LIMIT_S LOG COMMAND...
    local name=$1 limit=$2 log=$3
    shift 3
    local t0=$(date +%s)
    timeout "$limit" "$@" >"$out/$log" 2>&1
    local rc=$?
    local took=$(( $(date +%s) - t0 ))
    tail -25 "$out/$log"
    rows+=("$name|rc $rc in ${took}s")
}

if [[ $dry == 1 ]]; then
    echo "dry run: CPU, toy sizes, kernels in the Triton interpreter; times mean nothing"
    export TRITON_INTERPRET=1
    step "kernel tests (interpreter, LoRA subset)" 300 tests.txt \
        "$py" -m pytest -q -p no:cacheprovider tests/test_kernels_ops.py -k "lora" -x
    step "kernels.py (cpu smoke)" 120 kernels.txt \
        "$py" benchmarks/kernels.py --device cpu --tokens 64 --dim 64 --ranks 8
    step "kernels_breakdown.py" 60 breakdown.txt "$py" benchmarks/kernels_breakdown.py
    step "gpu_trial.py --dry-run" 180 trial.txt "$py" benchmarks/gpu_trial.py --dry-run
else
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    "$py" -c "import torch, triton, transformers, peft; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
    # One tile config per kernel variant: autotuning every test shape would take many minutes.
    step "kernel tests (compiled)" 200 tests.txt env PARETUNE_TEST_DEVICE=cuda \
        PARETUNE_KERNELS_AUTOTUNE=0 "$py" -m pytest -q -p no:cacheprovider \
        tests/test_kernels_ops.py tests/test_kernels_fused.py tests/test_blas_lora.py
    step "kernels.py" 150 kernels.txt "$py" benchmarks/kernels.py
    step "kernels_breakdown.py" 60 breakdown.txt "$py" benchmarks/kernels_breakdown.py
    step "gpu_trial.py" 150 trial.txt "$py" benchmarks/gpu_trial.py --steps 40
fi

echo
echo "| step | result |"
echo "| --- | --- |"
for row in "${rows[@]}"; do echo "| ${row%%|*} | ${row#*|} |"; done
grep -h "passed\|failed" "$out/tests.txt" | tail -1 | sed 's/^/| kernel tests | /; s/$/ |/'
echo
echo "| goal | verdict |"
echo "| --- | --- |"
cat "$out"/kernels.txt "$out"/breakdown.txt "$out"/trial.txt 2>/dev/null | grep "^goal: " |
    sed -E 's/^goal: (.*): ((NOT )?met|dry run, not measured)(.*)$/| \1 | \2\4 |/'
echo
echo "gpu_check: $(( $(date +%s) - started )) s in all; logs in $out"
