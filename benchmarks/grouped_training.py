"""Seconds per epoch: the study's latent sizes trained one after another, or together as one grouped step.

Issue 13 asked whether training the study's three VAEs (784-400-z-400-784, z = 3, 5, 200) together is
faster than one after another. Both loops here are the same hand-written float32 step (dynamic
binarization, Bernoulli decoder, closed-form KL, fused Adam, batch 512); they differ only in grouping:

- one after another: each size has its own epoch, batches and binarization draws;
- grouped: one batch order and one binarization draw serve all sizes, the encoders' first layers are
  one product (784 x 1200), the decoders' output layers one batched product, and one Adam steps all.

The grouped models see the same batches, so their weights are not those of training each alone
under a seed: this measures speed only. vaelab's own Trainer, one size after another, is the third
row. Fractions are of the measured float32 throughput at the first layer's shape, with
``train_speed.training_gflop``'s count.

    python benchmarks/grouped_training.py --data ../shared/data/mnist.npz --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from train_speed import trainer_epoch_seconds, training_gflop
from vaelab.config import DataConfig, ModelConfig
from vaelab.data import load_dataset
from vaelab.runtime import matmul_throughput

HIDDEN, PIXELS = 400, 784


def layer(generator: torch.Generator, n_in: int, n_out: int) -> list[torch.Tensor]:
    """A linear layer's weight (n_in x n_out) and bias, as leaf tensors."""
    weight = torch.randn(n_in, n_out, generator=generator) / n_in ** 0.5
    return [weight.requires_grad_(), torch.zeros(n_out, requires_grad=True)]


class Sizes:
    """The VAEs of ``latents`` as plain tensors: per size the encoder's first layer, its mean and
    log-variance head, the decoder's first layer and its output layer."""

    def __init__(self, latents: list[int], seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.latents = latents
        self.layers = [{"enc": layer(gen, PIXELS, HIDDEN), "head": layer(gen, HIDDEN, 2 * z),
                        "dec": layer(gen, z, HIDDEN), "out": layer(gen, HIDDEN, PIXELS)} for z in latents]
        self.generator = gen

    def middle(self, i: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Size i from its encoder's hidden layer to its decoder's: (decoder hidden, KL summed over rows)."""
        z, part = self.latents[i], self.layers[i]
        s = torch.addmm(part["head"][1], h, part["head"][0])
        mu, logvar = s[:, :z], s[:, z:]
        code = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=self.generator)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum()
        return torch.relu(torch.addmm(part["dec"][1], code, part["dec"][0])), kl

    def binarized(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.rand(x.shape, generator=self.generator) < x).float()


def one_after_another(sizes: Sizes, x: torch.Tensor, batch: int) -> float:
    """One epoch of each size in turn; seconds."""
    optimizers = [torch.optim.Adam([t for pair in part.values() for t in pair], lr=1e-3, fused=True)
                  for part in sizes.layers]
    start = time.perf_counter()
    for i, (part, opt) in enumerate(zip(sizes.layers, optimizers)):
        order = torch.randperm(len(x), generator=sizes.generator)
        for first in range(0, len(x) - batch + 1, batch):
            xb = sizes.binarized(x[order[first:first + batch]])
            h, kl = sizes.middle(i, torch.relu(torch.addmm(part["enc"][1], xb, part["enc"][0])))
            logits = torch.addmm(part["out"][1], h, part["out"][0])
            loss = (F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") + kl) / batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def grouped(sizes: Sizes, x: torch.Tensor, batch: int) -> float:
    """One epoch of every size at once: shared batches and draws, the wide layers as one product each."""
    k = len(sizes.latents)
    enc_w = torch.cat([p["enc"][0].detach() for p in sizes.layers], 1).requires_grad_()
    enc_b = torch.cat([p["enc"][1].detach() for p in sizes.layers]).requires_grad_()
    out_w = torch.stack([p["out"][0].detach() for p in sizes.layers]).requires_grad_()
    out_b = torch.stack([p["out"][1].detach() for p in sizes.layers]).unsqueeze(1).requires_grad_()
    small = [t for p in sizes.layers for key in ("head", "dec") for t in p[key]]
    opt = torch.optim.Adam([enc_w, enc_b, out_w, out_b, *small], lr=1e-3, fused=True)
    start = time.perf_counter()
    order = torch.randperm(len(x), generator=sizes.generator)
    for first in range(0, len(x) - batch + 1, batch):
        xb = sizes.binarized(x[order[first:first + batch]])
        h = torch.relu(torch.addmm(enc_b, xb, enc_w))
        middles = [sizes.middle(i, h[:, i * HIDDEN:(i + 1) * HIDDEN]) for i in range(k)]
        logits = torch.baddbmm(out_b, torch.stack([m[0] for m in middles]), out_w)
        rec = F.binary_cross_entropy_with_logits(logits, xb.expand(k, -1, -1), reduction="sum")
        loss = (rec + sum(m[1] for m in middles)) / batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def trainer_sizes(latents: list[int], x: torch.Tensor, batch: int) -> float:
    """vaelab's Trainer, one epoch of each size in turn; seconds."""
    return sum(trainer_epoch_seconds(ModelConfig(latent_dim=z, hidden_dims=(HIDDEN,)), x, batch, 1, "float32")[0]
               for z in latents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k", help="mnist5k or a path to an MNIST .npz")
    parser.add_argument("--latent-dims", default="3,5,200")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each loop")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    latents = [int(v) for v in args.latent_dims.split(",")]
    cfg = DataConfig(name="mnist", path=args.data) if args.data.endswith(".npz") else DataConfig(name=args.data)
    x = torch.from_numpy(load_dataset(DataConfig(**{**cfg.__dict__, "binarize": "none"})).train.x)
    loops = {"one after another (hand-written)": lambda rep: one_after_another(Sizes(latents, rep), x, args.batch_size),
             "grouped (hand-written)": lambda rep: grouped(Sizes(latents, rep), x, args.batch_size),
             "one after another (vaelab Trainer)": lambda rep: trainer_sizes(latents, x, args.batch_size)}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for rep in range(args.repeats):
        for name, loop in loops.items():
            torch.manual_seed(rep)
            times[name].append(loop(rep))
    peak = matmul_throughput("float32", (args.batch_size, PIXELS, HIDDEN), seconds=2.0)
    used = (len(x) // args.batch_size) * args.batch_size  # the hand-written loops drop the last partial batch
    work = sum(training_gflop(used, z) for z in latents)
    print(f"data: {args.data} ({len(x)} training rows), batch {args.batch_size}, latents {latents}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; float32 matmul at the first layer's "
          f"shape {peak:.1f} GFLOP/s; one epoch of all sizes is {work:.1f} GFLOP of matmuls\n")
    print(f"{'loop':36} {'s/epoch of all sizes (median)':>30} {'min':>7} {'max':>7} {'GFLOP/s':>8} {'of peak':>8}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:36} {med:>30.3f} {min(values):>7.3f} {max(values):>7.3f} {work / med:>8.1f} "
              f"{work / med / peak:>8.1%}")


if __name__ == "__main__":
    main()
