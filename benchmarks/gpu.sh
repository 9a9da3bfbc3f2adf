#!/usr/bin/env bash
# The GPU path, checked in one prepared run of at most 8 minutes: training speed, importance-
# sampling speed and the whole seed study with device = "auto" (CUDA where present) and
# precision = "auto", written as a small table to OUT/gpu.md.
#
#   benchmarks/gpu.sh ../shared/data/mnist.npz [OUT]
#
# No install step: it runs vaelab from src/ with the machine's own python3 and torch (a GPU
# image has them; carry wheels for tomli-w and openTSNE where they are missing). See
# docs/speed.md for how it was run and what it gave. EPOCHS, ROWS and STUDY_SET (extra --set
# arguments for the study) shrink it for a smoke check (tests/test_benchmarks.py).
set -euo pipefail
DATA=${1:?usage: benchmarks/gpu.sh MNIST.npz [OUT]}
OUT=${2:-gpu-results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
STARTED=$(date +%s)

"$PY" - "$DATA" "$OUT/speed.md" "${EPOCHS:-5}" "${ROWS:-10000}" <<'EOF'
import sys, time
import numpy as np, torch
from vaelab.config import ModelConfig, TrainConfig
from vaelab.models import build_model
from vaelab.runtime import matmul_throughput, resolve_device, resolve_precision, seeded_init
from vaelab.scores import score_array
from vaelab.training import Trainer, dynamic_binarization

data, out, epochs, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
device = resolve_device("auto")
name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
d = np.load(data)
x = d["x_train"][:50000].reshape(50000, -1).astype(np.float32) / 255
x_test = d["x_test"][:rows].reshape(-1, 784).astype(np.float32) / 255
side = 8192 if device.type == "cuda" else 1024
lines = [f"# GPU path: {name}, torch {torch.__version__}", "",
         f"matmul throughput ({side}^3): " + ", ".join(
             f"{p} {matmul_throughput(p, (side, side, side), str(device)):.0f} GFLOP/s" for p in ("float32", "bfloat16")),
         f"precision auto -> {resolve_precision('auto', device)}", "",
         "| what | latent | seconds | note |", "|---|---|---|---|"]
for latent in (5, 200):
    with seeded_init(0):
        model = build_model(ModelConfig(latent_dim=latent, hidden_dims=(400,)), 784, "bernoulli")
    result = Trainer(model, TrainConfig(epochs=epochs, batch_size=512, progress=False), run_config={},
                     transform=dynamic_binarization).fit({"x": torch.from_numpy(x)})
    per_epoch = sorted(r["seconds"] for r in result.history)[len(result.history) // 2]
    lines.append(f"| training, s/epoch (median of {epochs}) | {latent} | {per_epoch:.3f} | precision {result.precision} |")
    score_array(model, x_test[:100], "iwae", n_samples=1000)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    score_array(model, x_test, "iwae", n_samples=1000, batch_size=2000, memory_mb=4096)
    if device.type == "cuda":
        torch.cuda.synchronize()
    lines.append(f"| IWAE K=1000, {len(x_test)} test digits | {latent} | {time.perf_counter() - start:.1f} | |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF

# the whole seed study from an empty run directory, at most 5 minutes of the budget
rm -rf "$OUT/seed"
SECONDS_LEFT=$(( 480 - ($(date +%s) - STARTED) ))
# shellcheck disable=SC2086
if timeout "$SECONDS_LEFT" "$PY" -m vaelab run configs/seed.toml --set "data.path=$DATA" \
        --set score.batch_size=2000 --set score.memory_mb=4096 ${STUDY_SET:-} --out "$OUT/seed" > "$OUT/seed.log" 2>&1; then
    echo "| seed study (configs/seed.toml${STUDY_SET:+, shrunk}), wall | 3, 5, 200 | $(( $(date +%s) - STARTED - (480 - SECONDS_LEFT) )) | |" \
        | tee -a "$OUT/speed.md"
else
    echo "| seed study (configs/seed.toml) | 3, 5, 200 | did not finish in ${SECONDS_LEFT} s | see seed.log |" \
        | tee -a "$OUT/speed.md"
fi
