#!/usr/bin/env bash
# The GPU path, checked in one prepared run of at most 8 minutes: training speed, importance-
# sampling speed and accuracy, and the whole seed study with device = "auto" (CUDA where present)
# and precision = "auto", written as a small table to OUT/speed.md.
#
#   benchmarks/gpu.sh ../shared/data/mnist.npz [OUT]
#
# No install step: it runs vaelab from src/ with the machine's own python3 and torch (a GPU
# image has them; carry wheels for tomli-w and openTSNE where they are missing). See
# docs/speed.md for how it was run and what it gave. Each part runs on its own: one that fails
# writes its error into the table and the next part still runs. EPOCHS, ROWS, STUDY_SET (extra
# --set arguments for the study), STUDY_JOBS / STUDY_THREADS (its workers), BUDGET (seconds for
# the whole script) and SPEED_BUDGET (for its first part) shrink it for a smoke check
# (tests/test_benchmarks.py); STUDY=0 leaves the study out.
set -uo pipefail
DATA=${1:?usage: benchmarks/gpu.sh MNIST.npz [OUT]}
OUT=${2:-gpu-results}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-480}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
STARTED=$(date +%s)

timeout "${SPEED_BUDGET:-$(( BUDGET / 3 ))}" "$PY" - "$DATA" "$OUT/speed.md" "${EPOCHS:-5}" "${ROWS:-10000}" <<'EOF'
import sys, time, traceback
import numpy as np, torch
sys.path.insert(0, "benchmarks")
from train_speed import training_gflop
from vaelab.config import ModelConfig, TrainConfig
from vaelab.models import build_model
from vaelab.runtime import matmul_throughput, resolve_device, resolve_precision, seeded_init
from vaelab.scores import score_array
from vaelab.training import Trainer, dynamic_binarization

data, out, epochs, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lines: list[str] = []


def say(line: str) -> None:
    lines.append(line)
    print(line, flush=True)
    open(out, "w").write("\n".join(lines) + "\n")


def sync() -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


device = resolve_device("auto")
name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
say(f"# GPU path: {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
say("")
d = np.load(data)
x = d["x_train"][:50000].reshape(50000, -1).astype(np.float32) / 255
x_test = d["x_test"][:rows].reshape(-1, 784).astype(np.float32) / 255
side = 8192 if device.type == "cuda" else 1024
peaks = {}
for p in ("float32", "bfloat16"):
    try:
        peaks[p] = matmul_throughput(p, (side, side, side), str(device))
    except RuntimeError as exc:
        say(f"matmul {p}: {exc}")
say(f"matmul throughput ({side}^3): " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items()))
auto = resolve_precision("auto", device)
say(f"precision auto -> {auto}")
say("")
say("| what | latent | precision | seconds | note |")
say("|---|---|---|---|---|")
variants = [("float32", False)] + ([("float32", True)] if device.type == "cuda" else [])
variants += [(auto, device.type == "cuda")] if auto != "float32" else []
for latent in (5, 200):
    weights = {}
    for precision, graphs in variants:
        try:
            with seeded_init(0):
                model = build_model(ModelConfig(latent_dim=latent, hidden_dims=(400,)), 784, "bernoulli")
            trainer = Trainer(model, TrainConfig(epochs=epochs, batch_size=512, progress=False, precision=precision,
                                                 cuda_graphs=graphs), run_config={}, transform=dynamic_binarization)
            result = trainer.fit({"x": torch.from_numpy(x)})
            weights[precision, graphs] = {k: v.double() for k, v in model.state_dict().items()}
            per_epoch = sorted(r["seconds"] for r in result.history)[len(result.history) // 2]
            rate = training_gflop(len(x), latent) / per_epoch
            same = ""
            if graphs and ("float32", False) in weights and precision == "float32":
                eager = weights["float32", False]
                same = f"; weights after {epochs} epochs differ from eager by at most " + \
                    f"{max(float((eager[k] - v).abs().max()) for k, v in weights[precision, graphs].items()):.2e}"
            mode = "CUDA graphs" if trainer.graphed is not None else "eager"
            say(f"| training, s/epoch (median of {epochs}), {mode} | {latent} | {result.precision} | {per_epoch:.3f} | "
                f"{rate:.0f} GFLOP/s, {rate / peaks.get(result.precision, float('nan')):.1%} of its peak{same} |")
        except Exception:
            traceback.print_exc()
            say(f"| training | {latent} | {precision} | failed | {traceback.format_exc().splitlines()[-1]} |")
    try:  # the last model trained (auto precision) scores the test digits in each precision
        scores = {}
        for precision in dict.fromkeys(["float32", auto]):
            score_array(model, x_test[:100], "iwae", n_samples=1000, precision=precision)
            sync()
            start = time.perf_counter()
            scores[precision] = score_array(model, x_test, "iwae", n_samples=1000, batch_size=2000,
                                            memory_mb=4096, precision=precision)
            sync()
            seconds = time.perf_counter() - start
            note = (f"mean abs diff to float32 {np.abs(scores[precision] - scores['float32']).mean():.4f} nats"
                    if precision != "float32" else f"mean log p(x) {scores[precision].mean():.2f}")
            say(f"| IWAE K=1000, {len(x_test)} test digits | {latent} | {precision} | {seconds:.2f} | "
                f"{len(x_test) / seconds:.0f} rows/s; {note} |")
    except Exception:
        traceback.print_exc()
        say(f"| IWAE K=1000 | {latent} | | failed | {traceback.format_exc().splitlines()[-1]} |")
EOF
rc=$?
[ $rc -eq 0 ] || echo "| speed part | | | did not finish | exit status $rc, see the output |" | tee -a "$OUT/speed.md"

# the whole seed study from an empty run directory, in the time that is left
[ "${STUDY:-1}" = 1 ] || exit 0
rm -rf "$OUT/seed"
LEFT=$(( BUDGET - ($(date +%s) - STARTED) ))
STUDY_STARTED=$(date +%s)
# shellcheck disable=SC2086
if timeout "$LEFT" "$PY" -m vaelab run configs/seed.toml --set "data.path=$DATA" \
        --set score.batch_size=2000 --set score.memory_mb=4096 ${STUDY_SET:-} \
        --jobs "${STUDY_JOBS:-4}" --threads "${STUDY_THREADS:-4}" --out "$OUT/seed" > "$OUT/seed.log" 2>&1; then
    echo "| seed study (configs/seed.toml${STUDY_SET:+, shrunk}, --jobs ${STUDY_JOBS:-4}), wall | 3, 5, 200 | auto |" \
         "$(( $(date +%s) - STUDY_STARTED )) | from an empty run directory |" | tee -a "$OUT/speed.md"
else
    echo "| seed study (configs/seed.toml) | 3, 5, 200 | auto | did not finish in ${LEFT} s | see seed.log |" \
        | tee -a "$OUT/speed.md"
fi
grep -E "done in|precision" "$OUT/seed.log" | tail -40 || true
cp "$OUT/seed/report.md" "$OUT/seed_report.md" 2>/dev/null || true
exit 0
