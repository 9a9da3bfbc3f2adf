"""Test log p(x) of the study's VAE on full MNIST, one row per latent size.

The models are those of ``configs/seed.toml`` (MLP 784-400-z-400-784,
Bernoulli decoder, batch 512, Adam 1e-3, 200 epochs, dynamic binarization,
50,000 train / 10,000 validation / 10,000 test). log p(x) is importance-
sampled with K samples (the IWAE bound). This runs the train and scores
stages of the study in the same run directory as

    vaelab run configs/seed.toml --set data.path=../shared/data/mnist.npz --out runs/seed

so the two share their trained models, and an interrupted benchmark resumes.

    python benchmarks/mnist_likelihood.py
    python benchmarks/mnist_likelihood.py --epochs 20 --latent-dims 3,5 --out runs/seed-e20
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from vaelab.config import load_config
from vaelab.data import load_dataset
from vaelab.experiments.study import Study
from vaelab.fileio import write_text
from vaelab.report import study_table

# Published reference, for scale (a different architecture): Burda, Grosse &
# Salakhutdinov (2016), "Importance Weighted Autoencoders", Table 1: VAE with
# one stochastic layer of 50 units and two deterministic layers of 200 units,
# dynamically binarized MNIST, test log p(x) with K=5000: -86.76 nats.
REFERENCE = ("Burda et al. 2016, VAE, 50 latent, 2x200 hidden, K=5000", -86.76)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/mnist.npz", help="MNIST .npz or IDX directory")
    parser.add_argument("--latent-dims", default="3,5,200")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1000, help="K of the importance-sampled log p(x)")
    parser.add_argument("--out", type=Path, default=Path("runs/seed"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/mnist_likelihood.md"))
    args = parser.parse_args()

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "configs" / "seed.toml", [
        f"data.path={args.data!r}", f"study.latent_dims=[{args.latent_dims}]",
        f"train.epochs={args.epochs}", f"score.iwae_samples={args.samples}"])
    start = time.perf_counter()
    study = Study(config, args.out)
    metrics = {"study": {str(d): m for d, m in study.models().items()}}
    ds = load_dataset(config.data)
    header = (f"MNIST {len(ds.train)}/{len(ds.val)}/{len(ds.test)}, 784-400-z-400-784, batch 512, "
              f"{args.epochs} epochs, dynamic binarization, seed {config.train.seed}; {platform.machine()}, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    text = (f"{header}\n\n{study_table(metrics)}\n\n"
            f"test iwae = importance-sampled log p(x), K={args.samples}; nats per image; train s = training time\n"
            f"reference: {REFERENCE[0]}: {REFERENCE[1]:.2f}\n"
            f"(this invocation: {time.perf_counter() - start:.0f} s; finished models are reused)\n")
    print("\n" + text)
    write_text(args.results, "```\n" + text + "```\n")


if __name__ == "__main__":
    main()
