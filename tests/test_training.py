"""The training loop: it learns, resumes bit-exactly, survives a kill and stops on NaN."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_config
from vaelab.config import ModelConfig, TrainConfig
from vaelab.data import load_dataset
from vaelab.data.labels import balanced_labels
from vaelab.errors import TrainingDiverged, VaelabError
from vaelab.evaluation import error_rate
from vaelab.experiments.training_run import train_model
from vaelab.models import build_model
from vaelab.scores import marginal_elbo
from vaelab.training import Trainer, evaluate_elbo, train_m2

ROOT = Path(__file__).resolve().parents[1]


def test_a_step_changes_weights_and_evaluation_does_not():
    config = tiny_config(train={"epochs": 1})
    data = load_dataset(config.data)
    model = build_model(config.model, data.n_features, "bernoulli")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = {"x": torch.from_numpy(data.val.x)}
    evaluate_elbo(model, x, 128, seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    Trainer(model, config.train, run_config=config.to_dict()).fit({"x": torch.from_numpy(data.train.x)})
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_training_improves_the_validation_elbo(tmp_path):
    run = train_model(tiny_config(train={"epochs": 6}), tmp_path / "r")
    history = json.loads((tmp_path / "r" / "history.json").read_text())
    assert len(history) == 6 and history[-1]["val_elbo"] > history[0]["val_elbo"] + 20
    assert run.meta["metrics"]["epochs"] == 6


def test_seeded_runs_are_reproducible(tmp_path):
    config = tiny_config()
    train_model(config, tmp_path / "a")
    train_model(config, tmp_path / "b")
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    full = tiny_config(train={"epochs": 4})
    train_model(full, tmp_path / "full")
    train_model(tiny_config(train={"epochs": 2}), tmp_path / "part")
    train_model(full, tmp_path / "part", existing="resume")
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_the_checkpoint(tmp_path):
    config = tiny_config(train={"epochs": 3, "checkpoint_every": 1})
    data = load_dataset(config.data)
    model = build_model(config.model, data.n_features, "bernoulli")
    calls = {"n": 0}

    def poison(batch, gen):
        calls["n"] += 1
        if calls["n"] == 10 + 3:  # epoch 2 (10 batches an epoch), batch 3
            batch = {"x": batch["x"] * float("nan")}
        return batch

    path = tmp_path / "ckpt.safetensors"
    trainer = Trainer(model, config.train, run_config=config.to_dict(), checkpoint_path=path, transform=poison)
    with pytest.raises(TrainingDiverged, match="epoch 2, batch 3") as info:
        trainer.fit({"x": torch.from_numpy(data.train.x[:600])})
    assert "last good checkpoint" in str(info.value)
    again = Trainer(build_model(config.model, data.n_features, "bernoulli"), config.train,
                    run_config=config.to_dict(), checkpoint_path=path)
    again.load_checkpoint()
    assert again.epoch == 1 and all(torch.isfinite(p).all() for p in again.model.parameters())


def _subprocess_env() -> dict[str, str]:
    """One thread; precision = "auto" unpinned: the two runs compared are separate processes, and the second
    reads the answer the first measured and kept in the test's machine cache (measured by each on a busy
    machine, they once answered differently)."""
    assert os.environ.get("VAELAB_CACHE_DIR")  # conftest: one cache per test
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def _train_cmd(out: Path, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vaelab", "train", "--data", "mnist5k", "--epochs", str(epochs),
            "--latent-dim", "2", "--batch-size", "32", "--out", str(out),
            "--set", "train.progress=false", "--set", "model.hidden_dims=[128]",
            "--set", "train.checkpoint_every=1", *extra]


def test_process_killed_mid_epoch_resumes_bit_identically(tmp_path):
    env = _subprocess_env()
    subprocess.run(_train_cmd(tmp_path / "full", 3), check=True, env=env, capture_output=True)
    victim = subprocess.Popen(_train_cmd(tmp_path / "cut", 3), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = tmp_path / "cut" / "checkpoint.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (meta.exists() and json.loads(meta.read_text())["epoch"] >= 1):
        time.sleep(0.02)
    time.sleep(0.1)  # into the next epoch
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "cut" / "model.safetensors").exists(), "the kill came too late to test a resume"
    done = subprocess.run(_train_cmd(tmp_path / "cut", 3, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# A child process that kills itself (SIGKILL: no clean-up runs) while writing its second checkpoint,
# after the new bytes are in the temporary file and before the rename puts them in place.
KILL_DURING_SECOND_CHECKPOINT = """
import os, signal, sys
from vaelab.cli import main
real_fsync, seen = os.fsync, []
def fsync(fd):
    if "checkpoint.safetensors" in os.readlink(f"/proc/self/fd/{fd}"):
        seen.append(fd)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_fsync(fd)
os.fsync = fsync
sys.exit(main(sys.argv[1:]))
"""


def test_process_killed_during_a_checkpoint_write_resumes_bit_identically(tmp_path):
    env = _subprocess_env()
    subprocess.run(_train_cmd(tmp_path / "full", 3), check=True, env=env, capture_output=True)
    victim = subprocess.run([sys.executable, "-c", KILL_DURING_SECOND_CHECKPOINT, *_train_cmd(tmp_path / "cut", 3)[3:]],
                            env=env, capture_output=True, text=True)
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    assert json.loads((tmp_path / "cut" / "checkpoint.json").read_text())["epoch"] == 1  # the first one, whole
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    done = subprocess.run(_train_cmd(tmp_path / "cut", 3, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "cut").glob(".*")), "the killed write's temporary file was left behind"


def test_bfloat16_autocast_trains(tmp_path):
    run = train_model(tiny_config(train={"precision": "bfloat16", "epochs": 2}), tmp_path / "bf")
    assert torch.isfinite(torch.tensor(run.meta["metrics"]["val_elbo"]))


@pytest.fixture
def m2():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="m2", latent_dim=3, hidden_dims=(16,), n_classes=4, logvar_min=-80.0), 12, "bernoulli")


def test_m2_learns_from_few_labels_without_seeing_test_labels():
    from vaelab.data import load_dataset

    data = load_dataset(tiny_config(data={"binarize": "none", "train_limit": 0}).data)
    semi = balanced_labels(data.train.y, 50, seed=0)
    x_train = data.train.x
    # label leak guard: the training call gets only the training rows and the partial labels
    m2 = train_m2(x_train, semi, ModelConfig(latent_dim=8, hidden_dims=(64,), n_classes=10),
                  TrainConfig(epochs=4, batch_size=128, progress=False), likelihood="bernoulli")
    err = error_rate(m2, data.test.x, data.test.y)
    assert err < 0.6  # far better than the 90% error of guessing, with 50 labels
    assert np.isfinite(marginal_elbo(m2, data.test.x[:50])).all()


def test_latent_draws_sample_each_row_from_its_gaussian_and_leave_the_rest():
    from vaelab.training import latent_draws

    n = 20000
    batch = {"x": torch.tensor([[1.0, -2.0]]).repeat(n, 1), "x_sd": torch.tensor([[0.5, 2.0]]).repeat(n, 1),
             "y": torch.arange(n)}
    out = latent_draws(batch, torch.Generator().manual_seed(0))
    assert set(out) == {"x", "y"} and torch.equal(out["y"], batch["y"])
    assert torch.allclose(out["x"].mean(0), torch.tensor([1.0, -2.0]), atol=0.05)
    assert torch.allclose(out["x"].std(0), torch.tensor([0.5, 2.0]), rtol=0.03)


@pytest.mark.parametrize("precision", ["float32", "auto"])
def test_m2_trains_on_draws_of_m1_codes(precision):
    """M1+M2 on draws from q(z1|x): the draws differ each epoch, the run is seeded, and the precision
    check (which runs the model on a stored batch) does not pass it the standard deviations."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    means = (rng.normal(size=(300, 4)) + 3 * y[:, None]).astype(np.float32)
    sd = np.full_like(means, 0.3)
    semi = np.where(np.arange(300) < 30, y, -1)
    config = ModelConfig(latent_dim=2, hidden_dims=(16,), n_classes=3)
    train = TrainConfig(epochs=2, batch_size=64, progress=False, precision=precision)
    fits = [train_m2(means, semi, config, train, likelihood="gaussian", x_sd=sd) for _ in range(2)]
    plain = train_m2(means, semi, config, train, likelihood="gaussian")
    a, b, c = (m.state_dict() for m in (*fits, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the draws are used
    with pytest.raises(ValueError, match="not both"):
        train_m2(means, semi, config, train, likelihood="gaussian", x_sd=sd, binarize=True)


def _toy_m2():
    """Rows of three separated classes, 24 of 240 labelled: (rows, model config, fit(epochs, **train_m2 args))."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 240)
    x = (rng.normal(size=(240, 4)) + 3 * y[:, None]).astype(np.float32)
    semi = np.where(np.arange(240) < 24, y, -1)
    config = ModelConfig(latent_dim=2, hidden_dims=(16,), n_classes=3)

    def fit(epochs: int, **kw):
        return train_m2(x, semi, config, TrainConfig(epochs=epochs, batch_size=64, progress=False),
                        likelihood="gaussian", **kw)

    return x, config, fit


def test_m2_learning_curve_and_resume_leave_the_weights_of_training_straight_through(tmp_path):
    x, config, fit = _toy_m2()
    straight = fit(5).state_dict()
    seen: list[int] = []
    curved = fit(5, every=2, after=lambda model, epoch: seen.append(epoch)).state_dict()
    assert seen == [2, 4, 5] and all(torch.equal(straight[k], curved[k]) for k in straight)
    checkpoint = tmp_path / "m2.ckpt"
    fit(3, checkpoint_path=checkpoint)  # cut short at 3 epochs, then asked for 5: goes on from 3
    resumed = fit(5, checkpoint_path=checkpoint).state_dict()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    with pytest.raises(VaelabError, match="more than the 4"):
        fit(4, checkpoint_path=checkpoint)


def test_m2_weight_averages_follow_every_step_and_survive_a_resume(tmp_path):
    """ema: the returned model has the moving average of the weights over the steps (decay per step),
    training itself goes on from the last step's weights, and a resumed run keeps the averages."""
    x, config, fit = _toy_m2()
    last = fit(4).state_dict()
    steps: list[dict[str, torch.Tensor]] = []
    original = Trainer._step

    def recording(self, batch):
        out = original(self, batch)
        steps.append({k: v.detach().clone() for k, v in self.model.named_parameters()})
        return out

    Trainer._step = recording
    try:
        averaged = fit(4, ema=0.5).state_dict()
    finally:
        Trainer._step = original
    assert all(torch.equal(last[k], steps[-1][k]) for k in steps[-1])  # training itself is unchanged
    initial = build_initial(config, x.shape[1])
    for name, value in averaged.items():
        if name in steps[0]:
            expected = initial[name]
            for step in steps:
                expected = expected + 0.5 * (step[name] - expected)
            assert torch.allclose(value, expected, atol=1e-6), name
    checkpoint = tmp_path / "m2.ckpt"
    fit(2, checkpoint_path=checkpoint, ema=0.5)
    resumed = fit(4, checkpoint_path=checkpoint, ema=0.5).state_dict()
    assert all(torch.equal(averaged[k], resumed[k]) for k in averaged)
    fit(2, checkpoint_path=tmp_path / "plain.ckpt")  # trained without averages
    with pytest.raises(VaelabError, match="no weight averages"):
        fit(3, checkpoint_path=tmp_path / "plain.ckpt", ema=0.5)


def build_initial(config: ModelConfig, n_features: int) -> dict[str, torch.Tensor]:
    """M2's initial weights under train_m2's seed (TrainConfig's default)."""
    import dataclasses

    from vaelab.runtime import seeded_init

    with seeded_init(TrainConfig().seed):
        return build_model(dataclasses.replace(config, name="m2"), n_features, "gaussian").state_dict()


def test_kl_warmup_weighs_the_kl_term_of_the_loss_only_while_it_lasts(tmp_path):
    from vaelab.runtime import seeded_init

    x = {"x": torch.rand(300, 20, generator=torch.Generator().manual_seed(0))}

    def fit(checkpoint=None, **train):
        with seeded_init(0):
            model = build_model(ModelConfig(latent_dim=3, hidden_dims=(16,)), 20, "bernoulli")
        config = TrainConfig(**{"epochs": 4, "batch_size": 64, "progress": False, "precision": "float32", **train})
        trainer = Trainer(model, config, run_config={}, checkpoint_path=checkpoint)
        if checkpoint is not None and checkpoint.exists():
            trainer.load_checkpoint()
        weights = []
        trainer._step = (lambda step: lambda batch: (weights.append(float(model.kl_weight)), step(batch))[1])(trainer._step)
        trainer.fit(x)
        return model, sorted(set(weights))

    plain, seen = fit()
    assert seen == [1.0]
    warmed, seen = fit(kl_warmup=3)
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0]) and float(warmed.kl_weight) == 1.0
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), warmed.state_dict().values()))
    one, _ = fit(kl_warmup=1)  # weight 1 from the first epoch: plain training
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), one.state_dict().values()))
    fit(tmp_path / "c.safetensors", kl_warmup=3, epochs=1, checkpoint_every=1)  # cut during the warm-up, go on
    resumed, seen = fit(tmp_path / "c.safetensors", kl_warmup=3)
    assert seen == pytest.approx([2 / 3, 1.0])
    assert all(torch.equal(a, b) for a, b in zip(warmed.state_dict().values(), resumed.state_dict().values()))
    with torch.no_grad():
        out = warmed(x["x"][:10], torch.Generator().manual_seed(1))
        warmed.kl_weight.fill_(0.5)
        half = warmed(x["x"][:10], torch.Generator().manual_seed(1))
    assert torch.equal(out.elbo, half.elbo) and torch.isclose(half.loss, -(out.log_px_given_z - 0.5 * out.kl).mean())
    assert "kl_weight" not in warmed.state_dict()


def _graph_trainer(graphs: bool, device: str, **train) -> Trainer:
    from vaelab.runtime import seeded_init
    from vaelab.training import dynamic_binarization

    with seeded_init(0):
        model = build_model(ModelConfig(latent_dim=5, hidden_dims=(64,)), 784, "bernoulli")
    config = TrainConfig(**{"epochs": 3, "batch_size": 128, "progress": False, "device": device,
                            "precision": "float32", "cuda_graphs": graphs, **train})
    return Trainer(model, config, run_config={}, transform=dynamic_binarization)


def test_cuda_graphs_are_off_on_the_cpu():
    assert not _graph_trainer(True, "cpu").graphs
    m2 = build_model(ModelConfig(name="m2", latent_dim=4, hidden_dims=(16,)), 784, "bernoulli")
    assert m2.graph_safe and build_model(ModelConfig(), 784, "bernoulli").graph_safe


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_training_matches_eager_training():
    """Replayed steps draw what eager steps draw and update alike; a learning-rate change recaptures."""
    import dataclasses

    x = {"x": torch.rand(1000, 784, generator=torch.Generator().manual_seed(1))}
    runs = {}
    for graphs in (False, True):
        trainer = _graph_trainer(graphs, "cuda", epochs=2)
        trainer.fit(x)
        for group in trainer.optimizer.param_groups:
            group["lr"] /= 2
        trainer.config = dataclasses.replace(trainer.config, epochs=4)
        history = trainer.fit(x).history
        assert (trainer.graphed is not None) == graphs
        assert not graphs or trainer.graphed.lr == trainer.optimizer.param_groups[0]["lr"]
        runs[graphs] = (trainer.model.state_dict(), [row["train_elbo"] for row in history])
    (eager, eager_elbo), (graphed, graphed_elbo) = runs[False], runs[True]
    assert max(float((eager[k] - graphed[k]).abs().max()) for k in eager) < 1e-4
    assert np.allclose(eager_elbo, graphed_elbo, rtol=0, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_m2_training_replays_a_cuda_graph_and_matches_eager_training():
    """M2's fixed-shape step (labelled and unlabelled rows in every batch) is captured and replayed,
    and trains the weights that eager steps train."""
    rng = np.random.default_rng(0)
    x = rng.random((1000, 784), dtype=np.float32)
    semi = np.where(rng.random(1000) < 0.1, rng.integers(0, 10, 1000), -1)
    weights = {}
    for graphs in (False, True):
        config = TrainConfig(epochs=2, batch_size=128, progress=False, device="cuda", precision="float32",
                             cuda_graphs=graphs, seed=3)
        lines: list[str] = []
        model = train_m2(x, semi, ModelConfig(latent_dim=4, hidden_dims=(64,), n_classes=10), config,
                         likelihood="bernoulli", binarize=True, log=lines.append)
        assert graphs == any("replay one CUDA graph" in line for line in lines)
        weights[graphs] = model.state_dict()
    assert max(float((weights[False][k] - weights[True][k]).abs().max()) for k in weights[False]) < 1e-4


def test_a_terminated_training_exits_in_one_line_and_resumes(tmp_path):
    """SIGTERM (a scheduler's time limit) mid-training: exit 143 with one line that says how to go on,
    the finished epochs in the checkpoint, no model file; --resume finishes the run."""
    env = _subprocess_env()
    victim = subprocess.Popen(_train_cmd(tmp_path / "cut", 200), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    meta = tmp_path / "cut" / "checkpoint.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (meta.exists() and json.loads(meta.read_text())["epoch"] >= 1):
        time.sleep(0.02)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("vaelab: terminated; finished work is kept")
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    done = subprocess.run(_train_cmd(tmp_path / "cut", 2, "--resume"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
