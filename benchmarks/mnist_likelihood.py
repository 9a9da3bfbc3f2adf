"""Test log p(x) of the study's VAE on full MNIST, one row per latent size.

The study's model: MLP encoder and decoder with one hidden layer of 400
units, Bernoulli decoder, batch 512, Adam 1e-3, 50,000 train / 10,000
validation / 10,000 test, dynamically binarized (a fresh Bernoulli draw of
the training pixels each batch; validation and test binarized once with a
fixed seed). log p(x) is importance-sampled with K samples (IWAE bound).

Each model trains into its own run directory, so an interrupted benchmark
resumes where it stopped and finished models are reused.

    python benchmarks/mnist_likelihood.py --data ../shared/data/mnist.npz
    python benchmarks/mnist_likelihood.py --epochs 20 --latent-dims 3,5   # shorter
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from vaelab.config import Config
from vaelab.data import load_dataset
from vaelab.experiment import summary_table, train_and_score
from vaelab.fileio import write_text

# Published reference (different architecture, for scale): Burda, Grosse &
# Salakhutdinov (2016), "Importance Weighted Autoencoders", Table 1: VAE with
# one stochastic layer of 50 units and two deterministic layers of 200,
# dynamically binarized MNIST, test log p(x) with K=5000: -86.76 nats.
REFERENCE = ("Burda et al. 2016, VAE 1 stochastic layer (50 latent, 2x200 hidden), K=5000", -86.76)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/mnist.npz", help="MNIST .npz or IDX directory")
    parser.add_argument("--latent-dims", default="3,5,200")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1000, help="K of the importance-sampled log p(x)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-likelihood"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/mnist_likelihood.md"))
    args = parser.parse_args()

    base = {"data": {"name": "mnist", "path": args.data, "binarize": "dynamic"},
            "model": {"hidden_dims": [400]},
            "train": {"epochs": args.epochs, "batch_size": 512, "lr": 1e-3, "seed": args.seed,
                      "checkpoint_every": 5},
            "score": {"iwae_samples": args.samples}}
    dataset = None
    rows = []
    start = time.perf_counter()
    for latent in [int(v) for v in args.latent_dims.split(",")]:
        config = Config.from_dict({**base, "model": {**base["model"], "latent_dim": latent}})
        dataset = dataset or load_dataset(config.data)
        print(f"latent {latent}: training {args.epochs} epochs (or resuming) in {args.out / f'latent{latent}'}",
              flush=True)
        rows.append(train_and_score(config, args.out / f"latent{latent}", dataset=dataset))
    table = summary_table(rows)
    header = (f"MNIST {len(dataset.train)}/{len(dataset.val)}/{len(dataset.test)}, 784-400-z-400-784, "
              f"batch 512, dynamic binarization, seed {args.seed}; {platform.machine()}, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    text = (f"{header}\n\n{table}\n\nreference: {REFERENCE[0]}: {REFERENCE[1]:.2f}\n"
            f"(nats per image; train s = training wall time; this invocation took "
            f"{time.perf_counter() - start:.0f} s)\n")
    print("\n" + text)
    write_text(args.results, "```\n" + text + "```\n")


if __name__ == "__main__":
    main()
