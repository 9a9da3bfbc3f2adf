"""The one training loop every model in vaelab uses.

Data lives on the compute device and is batched by index: one ``randperm``
per epoch, ``index_select`` per batch, no per-sample Python work. A model is
called as ``model(**batch, generator=gen)`` and must return an object with
``loss`` (scalar to minimise) and ``elbo`` (one value per row); the loop
knows nothing else about it.

Checkpoints (model, optimizer, the random generator's state, epoch and
history) are written atomically every ``checkpoint_every`` epochs and at the
end; resuming from one gives weights bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vaelab import checkpoint as ckpt
from vaelab.config import Config, ModelConfig, TrainConfig, identity
from vaelab.data.labels import LABELLED_SHARE, epoch_rows
from vaelab.errors import TrainingDiverged, VaelabError
from vaelab.models import build_model
from vaelab.runtime import autocast, make_generator, resolve_device, resolve_precision, seeded_init

Batch = dict[str, torch.Tensor]
Transform = Callable[[Batch, torch.Generator], Batch]


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    precision: str = "float32"  # the precision the products ran in (``auto`` resolved)


# "auto" trains in bfloat16 only where one batch's loss in bfloat16 is within this relative
# distance of float32's (the same draws); bfloat16's own rounding is about 0.4%.
LOSS_TOLERANCE = 0.02


def dynamic_binarization(batch: Batch, generator: torch.Generator) -> Batch:
    """A fresh Bernoulli draw of the grey pixels in ``batch["x"]``: 1 where a uniform draw falls
    below the pixel's value (twice as fast on the CPU as ``torch.bernoulli``, the same law)."""
    x = batch["x"]
    return {**batch, "x": (torch.rand(x.shape, generator=generator, device=x.device) < x).to(x.dtype)}


def latent_draws(batch: Batch, generator: torch.Generator) -> Batch:
    """A fresh draw x ~ N(batch["x"], batch["x_sd"]^2) per row and unit: M1+M2's input, a new sample of
    M1's posterior q(z1|x) each time a row is seen (as Kingma et al. 2014 train M2 on M1's codes)."""
    rest = {k: v for k, v in batch.items() if k != "x_sd"}
    x, sd = batch["x"], batch["x_sd"]
    return {**rest, "x": x + sd * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)}


def iterate_batches(tensors: Batch, batch_size: int):
    """Yield dicts of consecutive row slices of ``tensors`` (all of one length)."""
    n = next(iter(tensors.values())).shape[0]
    for start in range(0, n, batch_size):
        yield {k: v[start:start + batch_size] for k, v in tensors.items()}


def select_rows(tensors: Batch, index: torch.Tensor) -> Batch:
    """Rows ``index`` of each of ``tensors`` (copies, in that order)."""
    return {k: v.index_select(0, index) for k, v in tensors.items()}


@torch.no_grad()
def evaluate_elbo(model: nn.Module, tensors: Batch, batch_size: int, seed: int,
                  precision: str = "float32") -> float:
    """Mean single-sample ELBO over ``tensors`` with a fixed-seed generator (nats)."""
    model.eval()
    device = next(iter(tensors.values())).device
    gen = make_generator(seed, device)
    total, n = 0.0, 0
    with autocast(device, precision):
        for batch in iterate_batches(tensors, batch_size):
            out = model(**batch, generator=gen)
            total += float(out.elbo.double().sum())
            n += out.elbo.shape[0]
    return total / max(n, 1)


def _config_difference(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str | None:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diff = _config_difference(va, vb, f"{prefix}{key}.")
            if diff:
                return diff
        elif va != vb:
            return f"{prefix}{key}: checkpoint has {va!r}, now {vb!r}"
    return None


def make_adam(model: nn.Module, lr: float, capturable: bool = False) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where this torch build supports it (~10% faster on CPU);
    ``capturable``: its step counts live on the device, so that a CUDA graph can replay the step."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True, capturable=capturable)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, capturable=capturable)


# Eager steps before a CUDA graph is captured, on a side stream as PyTorch's graph docs ask: they
# create what is made lazily (Adam's moments, cuBLAS handles). They are real training steps.
GRAPH_WARMUP_STEPS = 3


class GraphedStep:
    """One full batch's training step, captured once as a CUDA graph and then replayed: a replay
    launches the whole step (draws, forward, backward, Adam) at once, instead of the dozens of
    kernels that eager mode launches one by one from Python, which is what bounds a small model's
    step on a GPU. The rows of a step are copied into a fixed index buffer that the graph reads.
    The trainer's generator is registered with the graph, so each replay draws fresh numbers from
    it and advances it as the eager step would. Adam's learning rate and the training tensors are
    fixed in the graph (it holds them, so that their memory is not reused): a trainer captures again
    when either changes."""

    def __init__(self, step: Callable[[Batch], tuple[torch.Tensor, torch.Tensor]], data: Batch,
                 rows: int, generator: torch.Generator, lr: float) -> None:
        self.lr, self.data = lr, data
        self.index = torch.zeros(rows, dtype=torch.long, device=generator.device)
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(generator)
        with torch.cuda.graph(self.graph):
            self.loss, self.elbo = step(select_rows(data, self.index))

    def reads(self, data: Batch, lr: float) -> bool:
        """Whether this graph trains on exactly these tensors at this learning rate."""
        return self.lr == lr and data.keys() == self.data.keys() and all(v is self.data[k] for k, v in data.items())

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on rows ``index``; the step's loss and ELBO sum (copies: the next replay overwrites)."""
        self.index.copy_(index)
        self.graph.replay()
        return self.loss.clone(), self.elbo.clone()


class Trainer:
    """Adam on a model's ``loss``, with checkpoints, resume, a NaN guard and progress."""

    def __init__(self, model: nn.Module, config: TrainConfig, *, run_config: dict[str, Any],
                 checkpoint_path: str | Path | None = None, transform: Transform | None = None,
                 log: Callable[[str], None] | None = None, ema: float = 0.0) -> None:
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema is a decay per step in [0, 1); got {ema}")
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        # a CUDA graph per full batch (GraphedStep) where the device is CUDA and the model's step has
        # fixed shapes; off after a capture that failed (then the steps run eagerly)
        self.graphs = (self.device.type == "cuda" and config.cuda_graphs
                       and bool(getattr(model, "graph_safe", False)))
        self.optimizer = make_adam(self.model, config.lr, capturable=self.graphs)
        self.graphed: GraphedStep | None = None
        self.eager_steps = 0  # full-batch steps run eagerly in this process (GRAPH_WARMUP_STEPS)
        self.generator = make_generator(config.seed, self.device)
        self.run_config = run_config
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.transform = transform
        self.log = log or (lambda line: None)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        # ``auto`` is resolved on the first batch of fit(), or taken from a resumed checkpoint
        self.precision = None if config.precision == "auto" else config.precision
        self.best: dict[str, torch.Tensor] | None = None  # the best epoch's weights (with a schedule)
        self.stopped = False  # the validation bound stopped improving (train.stop_patience)
        # an exponential moving average of the weights (Polyak averaging), updated after every step:
        # what averaged() returns; training itself goes on from the current weights
        self.ema = ema
        self.averages = [p.detach().clone() for p in self.model.parameters()] if ema else []

    @property
    def scheduled(self) -> bool:
        """Whether the validation bound drives the learning rate or the stop."""
        return self.config.lr_decay < 1.0 or self.config.stop_patience > 0

    def _resolve_precision(self, data: Batch) -> str:
        """The precision of the products: ``config.precision`` with ``auto`` measured here
        (:func:`vaelab.runtime.resolve_precision`), bfloat16 only where one batch's loss agrees
        with float32's within :data:`LOSS_TOLERANCE`."""
        def agrees() -> bool:
            batch = next(iterate_batches(data, self.config.batch_size))  # as stored: no transform's draws
            inputs = inspect.signature(self.model.forward).parameters
            batch = {k: v for k, v in batch.items() if k in inputs}  # less what only the transform reads
            losses = []
            with torch.no_grad():
                for precision in ("float32", "bfloat16"):
                    with autocast(self.device, precision):
                        out = self.model(**batch, generator=make_generator(0, self.device))
                    losses.append(float(out.loss))
            return abs(losses[1] - losses[0]) <= LOSS_TOLERANCE * max(abs(losses[0]), 1e-6)

        return resolve_precision(self.config.precision, self.device, agrees)

    # ---- checkpoints -------------------------------------------------------
    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_tensors, opt_meta = ckpt.optimizer_to_tensors(self.optimizer)
        tensors.update(opt_tensors)
        tensors["rng.train"] = self.generator.get_state()
        if self.best is not None:
            tensors.update({f"best.{k}": v for k, v in self.best.items()})
        tensors.update({f"ema.{i}": v for i, v in enumerate(self.averages)})
        meta = {"kind": "checkpoint", "epoch": self.epoch, "history": self.history, "precision": self.precision,
                "stopped": self.stopped,
                "optimizer": opt_meta, "config": self.run_config, "versions": ckpt.versions()}
        ckpt.save_tensors(self.checkpoint_path, tensors, meta)

    def load_checkpoint(self) -> None:
        """Restore model, optimizer, generator, epoch and history from the checkpoint."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            raise VaelabError("no checkpoint to resume from", path)
        tensors, meta = ckpt.load_tensors(path)
        if meta.get("kind") != "checkpoint":
            raise VaelabError("not a training checkpoint", path)
        diff = _config_difference(identity(meta["config"]), identity(self.run_config))
        if diff:
            raise VaelabError(f"cannot resume with a different config ({diff})", path)
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(ckpt.optimizer_from_tensors(tensors, meta["optimizer"]))
        for group in self.optimizer.param_groups:  # as this trainer steps, whatever device wrote it
            group["capturable"] = self.graphs
        self.graphed = None  # the optimizer's state is new: a graph captures it again
        self.generator.set_state(tensors["rng.train"])
        self.epoch = int(meta["epoch"])
        self.history = list(meta["history"])
        self.stopped = bool(meta.get("stopped", False))
        best = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best = best or None
        if self.averages:
            if f"ema.{len(self.averages) - 1}" not in tensors:
                raise VaelabError("the checkpoint has no weight averages to go on from (trained without ema)", path)
            for i, average in enumerate(self.averages):
                average.copy_(tensors[f"ema.{i}"])
        if self.config.precision == "auto" and meta.get("precision"):
            self.precision = meta["precision"]  # a resumed run keeps the arithmetic it started with
        self.log(f"resumed from {path} at epoch {self.epoch}")

    # ---- the loop ----------------------------------------------------------
    def _set_kl_weight(self, epoch: int | None) -> None:
        """The KL weight of a warm-up (``train.kl_warmup``) for 0-based ``epoch``; None: 1."""
        weight = getattr(self.model, "kl_weight", None)
        if self.config.kl_warmup and isinstance(weight, torch.Tensor):
            weight.fill_(1.0 if epoch is None else min(1.0, (epoch + 1) / self.config.kl_warmup))

    def _train_epoch(self, data: Batch, n: int) -> float:
        self.model.train()
        self._set_kl_weight(self.epoch)
        order = torch.randperm(n, generator=self.generator, device=self.device)
        losses, elbo_sum = [], torch.zeros((), device=self.device, dtype=torch.float64)
        for start in range(0, n, self.config.batch_size):
            loss, elbo = self._run_step(data, order[start:start + self.config.batch_size])
            losses.append(loss)
            elbo_sum += elbo
        finite = torch.isfinite(torch.stack(losses))
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            kept = (f"the last good checkpoint ({self.checkpoint_path}, epoch {self.epoch}) is kept"
                    if self.checkpoint_path and self.checkpoint_path.exists() else "no checkpoint was written")
            raise TrainingDiverged(f"loss became NaN or infinite at epoch {self.epoch + 1}, batch {bad + 1}; "
                                   f"{kept}; try a lower train.lr")
        return float(elbo_sum) / n

    def _step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on ``batch``: its loss and the sum of its rows' ELBO (float64)."""
        if self.transform is not None:
            batch = self.transform(batch, self.generator)
        with autocast(self.device, self.precision):
            out = self.model(**batch, generator=self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        if self.averages:
            with torch.no_grad():
                torch._foreach_lerp_(self.averages, [p.detach() for p in self.model.parameters()], 1.0 - self.ema)
        return out.loss.detach(), out.elbo.detach().sum(dtype=torch.float64)

    def averaged(self) -> nn.Module:
        """A copy of the model in eval mode with the averaged weights (``ema``); the model itself without."""
        if not self.averages:
            return self.model.eval()
        model = copy.deepcopy(self.model)
        with torch.no_grad():
            for p, average in zip(model.parameters(), self.averages):
                p.copy_(average)
        return model.eval()

    def _run_step(self, data: Batch, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on rows ``index`` of ``data``: a replay of the captured CUDA graph where there is
        one (captured here once :data:`GRAPH_WARMUP_STEPS` full batches have run eagerly on a side
        stream), else :meth:`_step`."""
        full = len(index) == self.config.batch_size
        if self.graphs and full and self.eager_steps >= GRAPH_WARMUP_STEPS:
            graphed = self._captured(data, len(index))
            if graphed is not None:
                return graphed(index)
        batch = select_rows(data, index)
        if not (self.graphs and full):
            return self._step(batch)
        side = torch.cuda.Stream(self.device)  # a warm-up step
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            out = self._step(batch)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.eager_steps += 1
        return out

    def _captured(self, data: Batch, rows: int) -> GraphedStep | None:
        """The graph of a full batch's step on ``data`` at the current learning rate, captured if it is
        not yet (None, and graphs off for this trainer, where the capture fails)."""
        lr = self.optimizer.param_groups[0]["lr"]
        if self.graphed is None or not self.graphed.reads(data, lr):
            self.graphed = None
            try:
                self.graphed = GraphedStep(self._step, data, rows, self.generator, lr)
                self.log(f"epoch {self.epoch + 1}: full batches of {rows} replay one CUDA graph (learning rate {lr:g})")
            except Exception as exc:  # an older torch, or a step that cannot be captured
                self.graphs = False
                self.log(f"CUDA graph capture failed ({type(exc).__name__}: {exc}); training eagerly")
        return self.graphed

    def _schedule(self) -> None:
        """After an epoch with a validation bound: remember the best weights, decay the learning
        rate after ``lr_patience`` epochs without a new best, stop after ``stop_patience`` (with
        the best weights). Counted from the history, so a resumed run counts on."""
        bounds = [row["val_elbo"] for row in self.history]
        best_epoch = int(np.argmax(bounds))
        since = len(bounds) - 1 - best_epoch
        if since == 0:
            self.best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        elif self.config.lr_decay < 1.0 and since % self.config.lr_patience == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.config.lr_decay
            self.log(f"epoch {self.epoch}: no better validation bound for {since} epochs; "
                     f"learning rate now {self.optimizer.param_groups[0]['lr']:.3g}")
        if self.config.stop_patience and since >= self.config.stop_patience:
            self.stopped = True
            if self.best is not None:
                self.model.load_state_dict(self.best)
            self.log(f"stopped at epoch {self.epoch}: no better validation bound since epoch "
                     f"{self.history[best_epoch]['epoch']}, whose weights are kept")

    def _snapshot(self) -> None:
        """The weights of this epoch into ``snapshots/epoch_NNNNN.safetensors`` beside the
        checkpoint, every ``snapshot_every`` epochs."""
        every = self.config.snapshot_every
        if every and self.checkpoint_path is not None and self.epoch % every == 0:
            path = self.checkpoint_path.parent / "snapshots" / f"epoch_{self.epoch:05d}.safetensors"
            path.parent.mkdir(exist_ok=True)
            ckpt.save_tensors(path, dict(self.model.state_dict()),
                              {"kind": "snapshot", "epoch": self.epoch, "config": self.run_config})

    def fit(self, train: Batch, val: Batch | None = None) -> TrainResult:
        """Train until ``config.epochs`` epochs are done (from a loaded checkpoint's epoch)."""
        train = {k: v.to(self.device) for k, v in train.items()}
        val = None if val is None else {k: v.to(self.device) for k, v in val.items()}
        if self.scheduled and val is None:
            raise VaelabError("train.lr_decay and train.stop_patience need a validation split")
        if self.precision is None:
            self.precision = self._resolve_precision(train)
            self.log(f"precision: {self.precision} (train.precision = auto)")
        result = TrainResult(resumed_from=self.epoch, precision=self.precision)
        n = next(iter(train.values())).shape[0]
        start = time.perf_counter()
        bar = _progress(self.config, self.epoch)
        try:
            while self.epoch < self.config.epochs and not self.stopped:
                t0 = time.perf_counter()
                train_elbo = self._train_epoch(train, n)
                seconds = time.perf_counter() - t0
                self.epoch += 1
                row = {"epoch": self.epoch, "train_elbo": train_elbo, "seconds": seconds}
                if val is not None:
                    row["val_elbo"] = evaluate_elbo(self.model, val, self.config.eval_batch_size,
                                                    self.config.seed + 1, self.precision)
                row["lr"] = self.optimizer.param_groups[0]["lr"]
                self.history.append(row)
                self.log(json.dumps(row))
                self._snapshot()
                if val is not None and self.scheduled:
                    self._schedule()
                if bar is not None:
                    bar.set_postfix({k: f"{v:.2f}" for k, v in row.items() if k.endswith("elbo")})
                    bar.update(1)
                if (self.epoch % self.config.checkpoint_every == 0 or self.epoch == self.config.epochs
                        or self.stopped):
                    self.save_checkpoint()
        finally:
            self._set_kl_weight(None)  # a trained model's loss is the plain bound
            if bar is not None:
                bar.close()
        if (self.epoch == self.config.epochs or self.stopped) and self.checkpoint_path and not self.checkpoint_path.exists():
            self.save_checkpoint()  # resumed a finished run: make sure the final state is on disk
        result.history = self.history
        result.seconds = time.perf_counter() - start
        self.model.eval()
        return result


def train_m2(x: np.ndarray, y_semi: np.ndarray, model: ModelConfig, train: TrainConfig, *, likelihood: str,
             labelled_share: float = LABELLED_SHARE, binarize: bool = False, x_sd: np.ndarray | None = None,
             log: Callable[[str], None] | None = None, checkpoint_path: Path | None = None,
             every: int = 0, after: Callable[[nn.Module, int], None] | None = None, ema: float = 0.0) -> nn.Module:
    """An M2 model (``model.name`` is set to m2) trained by the one loop on rows ``x`` with labels
    ``y_semi`` (-1 unknown); the labelled rows are repeated to ``labelled_share`` of each epoch.
    ``binarize``: a fresh Bernoulli draw of grey pixels per step; ``x_sd``: x holds Gaussian means
    with these standard deviations, and each step draws from them (:func:`latent_draws`, M1+M2).
    ``checkpoint_path``: checkpoints there, and a run that finds one goes on from it. ``after(model,
    epoch)`` is called every ``every`` epochs and at the end (a learning curve); the weights are those
    of training straight through. ``ema``: the model returned (and given to ``after``) has the
    exponential moving average of the weights with this decay per step (Polyak averaging) instead of the
    last step's."""
    if binarize and x_sd is not None:
        raise ValueError("give binarize (pixels) or x_sd (M1's codes), not both")
    config = dataclasses.replace(model, name="m2")
    with seeded_init(train.seed):
        m2 = build_model(config, x.shape[1], likelihood)
    rows = epoch_rows(y_semi, labelled_share)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a[rows], dtype=np.float32))  # noqa: E731
    data = {"x": as_tensor(x), "y": torch.from_numpy(y_semi[rows])}
    if x_sd is not None:
        data["x_sd"] = as_tensor(x_sd)
    transform = dynamic_binarization if binarize else latent_draws if x_sd is not None else None
    trainer = Trainer(m2, train, run_config={"model": Config(model=config).to_dict()["model"]}, log=log,
                      transform=transform, checkpoint_path=checkpoint_path, ema=ema)
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        trainer.load_checkpoint()
        if trainer.epoch > train.epochs:
            raise VaelabError(f"the checkpoint has trained {trainer.epoch} epochs, more than the {train.epochs} "
                              "asked for", checkpoint_path)
    data = {k: v.to(trainer.device) for k, v in data.items()}  # once: each stretch below trains on these
    stops = sorted({*range(every, train.epochs, every), train.epochs}) if every and after else [train.epochs]
    for stop in (s for s in stops if s > trainer.epoch):
        trainer.config = dataclasses.replace(train, epochs=stop)
        trainer.fit(data)
        if after is not None:
            after(trainer.averaged(), trainer.epoch)
    return trainer.averaged()


def _progress(config: TrainConfig, initial: int):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.epochs, initial=initial, desc="train", unit="epoch",
                file=sys.stderr, dynamic_ncols=True, leave=False)
