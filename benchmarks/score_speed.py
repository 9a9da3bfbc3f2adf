"""Rows per second of importance-sampled log p(x) (IWAE, K=1000): vaelab's scorer against the
previous one, in each precision, with its accuracy against float64.

The previous scorer (kept below as the baseline) evaluated log p(x|z) as a d-wide element-wise
Bernoulli term per (row, sample) and the Gaussian densities of z separately, in sample chunks.
The current one (:func:`vaelab.scores.score_array`) computes the data term's per-row part once
per row, the densities from the draws in closed form, and all of a group of rows' samples at
once; with ``precision = "bfloat16"`` the decoder's products run in bfloat16.

Accuracy: each scorer's own estimate computed in float64 from the same draws (each row's noise
from its own seed, drawn in float32) on ``--reference-rows`` rows; the table shows the mean
absolute difference per row (target at most 0.05 nats) and the AUROC of the score on a synthetic anomaly test set (the test
digits with 5% each of noise, blur and thinning) to three decimals.

Time at peak: the decoder's matrix-multiply FLOPs (2 x rows x K x (latent x 400 + 400 x 784))
over the machine's matmul throughput, measured in this run at the decoder's own shape.

    python benchmarks/score_speed.py --data ../shared/data/mnist.npz          # 10,000 test digits
    python benchmarks/score_speed.py --rows 1000 --latent-dims 5 --epochs 2   # a quick look
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vaelab import distributions as D
from vaelab.config import DataConfig, ModelConfig, TrainConfig
from vaelab.data import load_dataset
from vaelab.data.synthetic import image_test_set
from vaelab.evaluation import auroc
from vaelab.models import build_model
from vaelab.models.files import load_model
from vaelab.runtime import RowNoise, matmul_throughput, resolve_precision, seeded_init
from vaelab.scores import IWAE_TOLERANCE, _per_row, iwae_log_px, score_array, scoring_precision
from vaelab.training import Trainer, dynamic_binarization


# ---- the previous scorer, kept as the baseline -----------------------------------------------
def previous_iwae(model: nn.Module, x: np.ndarray, k: int, seed: int = 0, batch_size: int = 1000,
                  memory_mb: int = 256, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """IWAE as vaelab computed it before: element-wise log p(x|z) per (row, sample), both Gaussian
    densities of z, sample chunks of a whole block. With ``dtype=float64`` it is the reference."""
    model = model.to(dtype)
    cost = 4 * 3 * (max(m.out_features for m in model.modules() if isinstance(m, nn.Linear)) + x.shape[1])

    @torch.no_grad()
    def block(xb: torch.Tensor, n: int) -> torch.Tensor:
        xb = xb.to(dtype)
        noise = RowNoise(xb.float(), seed, n)
        mean, logvar = model.encode(xb)
        chunk = max(1, min(k, memory_mb * 2**20 // (cost * len(xb))))
        total = torch.full((len(xb),), -math.inf, dtype=dtype)
        for start in range(0, k, chunk):
            z = D.reparameterize(mean, logvar, min(chunk, k - start), noise)
            logw = (model.log_px_given_z(xb, z) + D.log_standard_normal(z) - D.log_normal_diag(z, mean, logvar))
            total = torch.logaddexp(total, torch.logsumexp(logw, dim=0))
        return (total - math.log(k)).double()

    try:
        return _per_row(x, batch_size, "cpu", block).numpy()
    finally:
        model.float()


def float64_iwae(model: nn.Module, x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The current scorer's estimate in float64 from the same draws (each row's from its seed)."""
    model = model.double()

    @torch.no_grad()
    def block(xb: torch.Tensor, n: int) -> torch.Tensor:
        return iwae_log_px(model, xb.double(), k, RowNoise(xb, seed, n), rows=16).double()

    try:
        return _per_row(x, 1000, "cpu", block).numpy()
    finally:
        model.float()


# ---- set-up ---------------------------------------------------------------------------------
def trained_model(x_train: np.ndarray, latent: int, epochs: int, models: Path | None) -> nn.Module:
    """The study's model of this latent size from a run directory, or one trained here."""
    if models is not None:
        return load_model(models / f"z{latent}" / "model.safetensors")[0]
    with seeded_init(0):
        model = build_model(ModelConfig(latent_dim=latent, hidden_dims=(400,)), x_train.shape[1], "bernoulli")
    Trainer(model, TrainConfig(epochs=epochs, batch_size=512, progress=False), run_config={},
            transform=dynamic_binarization).fit({"x": torch.from_numpy(x_train)})
    return model.eval()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"
    parser.add_argument("--data", default=str(default_data) if default_data.exists() else "mnist5k",
                        help="an MNIST .npz or mnist5k (default: ../shared/data/mnist.npz where it exists)")
    parser.add_argument("--latent-dims", default="3,5,200")
    parser.add_argument("--samples", type=int, default=1000, help="K")
    parser.add_argument("--rows", type=int, default=0, help="test rows to score (default: all)")
    parser.add_argument("--reference-rows", type=int, default=300, help="rows scored in float64 too")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the models scored")
    parser.add_argument("--models", type=Path, default=None,
                        help="a study's run directory: score its models/z<d>/model.safetensors instead")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--results", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = DataConfig(name="mnist", path=args.data) if args.data.endswith(".npz") else DataConfig(name=args.data)
    data = load_dataset(DataConfig(**{**cfg.__dict__, "binarize": "none"}))
    x_test = data.test.x[:args.rows] if args.rows else data.test.x
    # the rows scored: the test digits, 5% of them each replaced by a noisy, blurred or thinned copy
    synthetic = image_test_set(x_test, (28, 28), ["noise", "blur", "thin"], 0.05, 1.0, seed=0)
    x_test = synthetic.x
    ref_rows = x_test[:args.reference_rows]
    peaks = {p: matmul_throughput(p, (14000, 400, 784)) for p in ("float32", "bfloat16")}
    chosen = resolve_precision("auto", "cpu")

    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"data: {args.data}, {len(x_test)} test rows, K={args.samples}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}")
    say("matmul throughput at the decoder's shape: "
        + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peaks.items()) + f"; precision auto -> {chosen}")
    say()
    header = (f"{'latent':>6} {'scorer':32} {'seconds':>8} {'rows/s':>7} {'x fp32 peak':>11} "
              f"{'|diff| nats':>11} {'AUROC':>6}")
    say(header)
    say("-" * len(header))
    for latent in [int(v) for v in args.latent_dims.split(",")]:
        model = trained_model(data.train.x, latent, args.epochs, args.models)
        references = {"previous": previous_iwae(model, ref_rows, args.samples, dtype=torch.float64),
                      "current": float64_iwae(model, ref_rows, args.samples)}
        at_peak = 2 * len(x_test) * args.samples * (latent * 400 + 400 * 784) / (peaks["float32"] * 1e9)
        scorers = {
            "previous (float32)": lambda xs: previous_iwae(model, xs, args.samples),
            "current, float32": lambda xs: score_array(model, xs, "iwae", n_samples=args.samples,
                                                       precision="float32"),
            "current, bfloat16": lambda xs: score_array(model, xs, "iwae", n_samples=args.samples,
                                                        precision="bfloat16"),
        }
        for name, scorer in scorers.items():
            values, seconds = timed(lambda: scorer(x_test))
            reference = references[name.split()[0].strip(",")]
            diff = float(np.abs(values[:len(ref_rows)] - reference).mean())
            auc = auroc(synthetic.is_anomaly, values)
            say(f"{latent:>6} {name:32} {seconds:>8.1f} {len(x_test) / seconds:>7.0f} "
                f"{seconds / at_peak:>10.2f}x {diff:>11.4f} {auc:>6.3f}")
        say(f"{'':>6} {'(decoder products at fp32 peak)':32} {at_peak:>8.1f}")
        say(f"{'':>6} precision auto for this model: {scoring_precision(model, 'auto', 'cpu')} "
            f"(bfloat16 only where it is faster and within {IWAE_TOLERANCE} nats of float32)")
    if args.results is not None:
        args.results.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
