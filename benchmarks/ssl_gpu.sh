#!/usr/bin/env bash
# M2 trained long on one GPU (Kingma et al. 2014, Table 1: MNIST with 100 / 600 / 1000 / 3000 labels,
# three seeds each), in one prepared run of a fixed length:
#
#   benchmarks/ssl_gpu.sh MNIST.npz [OUT]
#
# Every run trains in its own worker process (--jobs, one CPU thread each) on the one GPU, where
# M2's step has fixed shapes and is replayed as a CUDA graph. The test error is measured every
# EVERY epochs (a learning curve; it never stops a run or picks an epoch). At TRAIN_BUDGET seconds
# the runs are cut (their checkpoints stay in CELLS, from which the same command goes on), and the
# table is made at the last epoch that every run has reached: OUT/ssl_m2_gpu.md, the curves in
# OUT/ssl_m2_gpu_curves.json, the log in OUT/train.log. Before that, where CUDA is present, the
# CUDA tests of the training loop run (OUT/tests.log).
#
# No install step: vaelab runs from src/ with the machine's own python3 and torch (carry a tomli-w
# wheel where it is missing). LABELS, SEEDS, EPOCHS (planned), EVERY, JOBS, TRAIN_BUDGET, CELLS,
# PRECISION and EXTRA (more ssl_mnist.py arguments) shrink it for a smoke check (tests/test_benchmarks.py).
set -uo pipefail
DATA=${1:?usage: benchmarks/ssl_gpu.sh MNIST.npz [OUT]}
OUT=${2:-ssl-gpu-results}
PY=${PYTHON:-python3}
CELLS=${CELLS:-$OUT/cells}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ "${TESTS:-1}" = 1 ] && "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/models/test_m2.py \
        tests/test_training.py -k "cuda or m2 or curve" > "$OUT/tests.log" 2>&1
    echo "tests: exit status $?" | tee -a "$OUT/tests.log"
fi

# shellcheck disable=SC2206
args=(--data "$DATA" --m1-run "$CELLS/m1" --models m2 --seeds "${SEEDS:-3}" --labels "${LABELS:-100,600,1000,3000}"
      --m2-epochs "${EPOCHS:-1000}" --eval-every "${EVERY:-5}" --cells "$CELLS" --precision "${PRECISION:-float32}"
      ${EXTRA:-})
STARTED=$(date +%s)
timeout -k 10 "${TRAIN_BUDGET:-420}" "$PY" benchmarks/ssl_mnist.py "${args[@]}" --jobs "${JOBS:-12}" --threads 1 \
    > "$OUT/train.log" 2>&1
echo "training: exit status $? after $(( $(date +%s) - STARTED )) s (124: cut at TRAIN_BUDGET, as planned)" \
    | tee -a "$OUT/train.log"
"$PY" benchmarks/ssl_mnist.py "${args[@]}" --progress-only --results "$OUT/ssl_m2_gpu.md" \
    --curves "$OUT/ssl_m2_gpu_curves.json" > "$OUT/progress.log" 2>&1 || tail -5 "$OUT/progress.log"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$OUT/ssl_m2_gpu.md"
fi
cat "$OUT/ssl_m2_gpu.md" 2>/dev/null
exit 0
