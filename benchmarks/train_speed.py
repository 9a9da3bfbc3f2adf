"""Seconds per epoch: vaelab's training loop against a plain PyTorch baseline.

The baseline is written the common way (as in the PyTorch VAE example): a
``Dataset`` that returns one image at a time, a shuffling ``DataLoader`` with
the default collate, and the same MLP VAE (784-400-z-400-784, sigmoid output
with binary cross-entropy, closed-form KL). Both train on the same data with
the same batch size, threads and optimizer; runs alternate so that drift in
the machine's speed hits both alike. vaelab's loop runs in each precision the
machine offers (float32, and bfloat16 where its kernels run), and the table
gives the fraction of this machine's measured matmul throughput in that
precision, at the loop's own shapes, that each loop reaches. Two bounds per
precision show where the rest of the time goes: the same loop on digits
binarized once (no per-epoch draws), and the epoch's matrix products alone,
back to back at the loop's shapes (the ceiling no loop around them can pass).

    python benchmarks/train_speed.py                       # embedded mnist5k
    python benchmarks/train_speed.py --data ../shared/data/mnist.npz --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vaelab.config import DataConfig, ModelConfig, TrainConfig
from vaelab.data import load_dataset
from vaelab.models import build_model
from vaelab.runtime import matmul_throughput
from vaelab.training import Trainer, dynamic_binarization


# ---- the baseline, written the common way ------------------------------------
class ExampleMNIST(Dataset):
    """As torchvision's MNIST with ``transforms.ToTensor()``: uint8 -> PIL image -> float tensor."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images  # (n, 28, 28) uint8

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")
        return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(1, 28, 28).float().div(255)


class FloatRows(Dataset):
    """The leanest per-sample dataset: one float32 row of a pre-scaled array."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.rows[i])


class ExampleVAE(nn.Module):
    def __init__(self, latent: int) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, latent), nn.Linear(400, latent)
        self.fc3, self.fc4 = nn.Linear(latent, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def baseline_epoch(model: ExampleVAE, optimizer, loader: DataLoader) -> float:
    model.train()
    start = time.perf_counter()
    for x in loader:
        recon, mu, logvar = model(x.view(-1, 784))
        bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = (bce + kld) / x.shape[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


# ---- measurement ---------------------------------------------------------------
def trainer_epoch_seconds(model_cfg: ModelConfig, x: torch.Tensor, batch_size: int, epochs: int,
                          precision: str, draws: bool = True) -> list[float]:
    """Seconds of each epoch of vaelab's Trainer (dynamic binarization) on a fresh model of ``model_cfg``;
    without ``draws``, on the digits binarized once beforehand: the most that any faster generator for
    the draws could give."""
    model = build_model(model_cfg, x.shape[1], "bernoulli")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, progress=False, precision=precision)
    if draws:
        trainer, data = Trainer(model, config, run_config={}, transform=dynamic_binarization), x
    else:
        trainer, data = Trainer(model, config, run_config={}), dynamic_binarization(
            {"x": x}, torch.Generator().manual_seed(0))["x"]
    return [row["seconds"] for row in trainer.fit({"x": data}).history]


def layer_shapes(latent: int) -> list[tuple[int, int]]:
    """(inputs, outputs) of each linear layer of the study's VAE, in forward order (the encoder's
    mean and log-variance heads are two layers)."""
    return [(784, 400), (400, latent), (400, latent), (latent, 400), (400, 784)]


def products_epoch_seconds(n_rows: int, latent: int, batch_size: int, precision: str) -> float:
    """Seconds of one epoch's matrix products alone, back to back: per batch each layer's forward
    product (with its bias, as ``nn.Linear``), its weight gradient and, for all layers but the first,
    its input gradient, at autograd's shapes and layouts; nothing else. The ceiling of the loop."""
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    gen = torch.Generator().manual_seed(0)
    work = []
    for i, (fan_in, fan_out) in enumerate(layer_shapes(latent)):
        weight = torch.randn(fan_out, fan_in, generator=gen).to(dtype)
        bias = torch.randn(fan_out, generator=gen).to(dtype)
        inputs = torch.randn(batch_size, fan_in, generator=gen).to(dtype)
        grad = torch.randn(batch_size, fan_out, generator=gen).to(dtype)
        work.append((weight, bias, inputs, grad, i > 0))
    start = time.perf_counter()
    for _ in range(-(-n_rows // batch_size)):
        for weight, bias, inputs, grad, needs_input_grad in work:
            torch.addmm(bias, inputs, weight.t())
            inputs.t().mm(grad)
            if needs_input_grad:
                grad.mm(weight)
    return time.perf_counter() - start


def offered_precisions() -> list[str]:
    """float32, and bfloat16 where this machine runs its matrix products."""
    try:
        torch.ones(2, 2, dtype=torch.bfloat16) @ torch.ones(2, 2, dtype=torch.bfloat16)
        return ["float32", "bfloat16"]
    except RuntimeError:
        return ["float32"]


def training_gflop(n_rows: int, latent: int) -> float:
    """Matmul FLOPs of one epoch: forward, weight gradients, and input gradients of all
    layers but the first (the data needs no gradient)."""
    first, *rest = (fan_in * fan_out for fan_in, fan_out in layer_shapes(latent))
    return 2 * (2 * first + 3 * sum(rest)) * n_rows / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k", help="mnist5k or a path to an MNIST .npz")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each loop")
    parser.add_argument("--latent-dim", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = DataConfig(name="mnist", path=args.data) if args.data.endswith(".npz") else DataConfig(name=args.data)
    data = load_dataset(DataConfig(**{**cfg.__dict__, "binarize": "none"}))
    x = data.train.x
    model_cfg = ModelConfig(latent_dim=args.latent_dim, hidden_dims=(400,))
    precisions = offered_precisions()

    images = np.rint(x * 255).astype(np.uint8).reshape(-1, 28, 28)
    baselines = {"baseline: PyTorch example (PIL)": lambda: ExampleMNIST(images),
                 "baseline: float rows": lambda: FloatRows(x)}
    ours = {p: f"vaelab Trainer, {p}" for p in precisions}
    # the two ceilings of each precision's loop: no binarization draws, and its products alone
    no_draws = {p: f"bound: {p}, no draws" for p in precisions}
    products = {p: f"bound: {p}, products alone" for p in precisions}
    loops = [name for p in precisions for name in (ours[p], no_draws[p], products[p])]
    times: dict[str, list[float]] = {**{name: [] for name in loops}, **{name: [] for name in baselines}}
    for rep in range(args.repeats):
        for precision, name in ours.items():
            torch.manual_seed(rep)
            times[name] += trainer_epoch_seconds(model_cfg, torch.from_numpy(x), args.batch_size, args.epochs,
                                                 precision)
            torch.manual_seed(rep)
            times[no_draws[precision]] += trainer_epoch_seconds(
                model_cfg, torch.from_numpy(x), args.batch_size, args.epochs, precision, draws=False)
            times[products[precision]] += [products_epoch_seconds(len(x), args.latent_dim, args.batch_size,
                                                                  precision) for _ in range(args.epochs)]
        for name, dataset in baselines.items():
            torch.manual_seed(rep)
            model_b = ExampleVAE(args.latent_dim)
            opt = torch.optim.Adam(model_b.parameters(), lr=1e-3)
            loader = DataLoader(dataset(), batch_size=args.batch_size, shuffle=True)
            times[name] += [baseline_epoch(model_b, opt, loader) for _ in range(args.epochs)]

    peaks = {p: matmul_throughput(p, (args.batch_size, 784, 400), seconds=2.0) for p in precisions}
    work = training_gflop(len(x), args.latent_dim)
    print(f"data: {args.data} ({len(x)} training rows), batch {args.batch_size}, latent {args.latent_dim}, "
          f"dynamic binarization, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("measured matmul throughput at the loop's shape: "
          + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in peaks.items())
          + f"; one epoch is {work:.1f} GFLOP of matmuls\n")
    print(f"{'loop':34} {'s/epoch (median)':>17} {'min':>8} {'max':>8} {'GFLOP/s':>8} {'of peak':>8} {'speed-up':>9}")
    reference = statistics.median(times[ours["float32"]])
    for name, values in times.items():
        med = statistics.median(values)
        peak = peaks["bfloat16" if "bfloat16" in name else "float32"]
        print(f"{name:34} {med:>17.3f} {min(values):>8.3f} {max(values):>8.3f} "
              f"{work / med:>8.1f} {work / med / peak:>8.1%} {med / reference:>8.2f}x")
    print("\nof peak: of the measured throughput in the loop's precision (float32 for the baselines); speed-up: "
          "the loop's median s/epoch over vaelab's float32 loop; bound, no draws: the same Trainer on digits "
          "binarized once (what any faster generator for the draws could give at most); bound, products alone: "
          "the epoch's matrix products back to back at the loop's shapes, nothing else (the loop's ceiling)")


if __name__ == "__main__":
    main()
