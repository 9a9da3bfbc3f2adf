"""The one place for device, precision and seeds."""

import numpy as np
import pytest
import torch

from vaelab.errors import ConfigError
from vaelab.runtime import autocast, make_generator, numpy_rng, resolve_device, seeded_init


def test_auto_device_is_cpu_without_cuda_and_bad_devices_are_refused():
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("abacus")
    with pytest.raises(ConfigError, match="unknown precision"):
        autocast(torch.device("cpu"), "float8")


def test_generators_are_reproducible_from_their_seed():
    assert torch.equal(torch.randn(5, generator=make_generator(3)), torch.randn(5, generator=make_generator(3)))
    assert not torch.equal(torch.randn(5, generator=make_generator(3)), torch.randn(5, generator=make_generator(4)))
    assert np.array_equal(numpy_rng(1).random(3), numpy_rng(1).random(3))


def test_seeded_init_is_reproducible_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    with seeded_init(7):
        a = torch.nn.Linear(4, 3).weight.clone()
    assert torch.equal(torch.rand(1), expected_next)  # the caller's stream continues untouched
    with seeded_init(7):
        b = torch.nn.Linear(4, 3).weight.clone()
    assert torch.equal(a, b)


def test_auto_precision_can_be_pinned_for_every_process_of_a_run(monkeypatch):
    from vaelab.errors import ConfigError
    from vaelab.runtime import resolve_precision

    monkeypatch.setenv("VAELAB_PRECISION", "bfloat16")
    assert resolve_precision("auto", "cpu") == "bfloat16"
    assert resolve_precision("auto", "cpu", agrees=lambda: False) == "float32"  # the caller's check still counts
    assert resolve_precision("float32", "cpu") == "float32"  # an explicit precision is not touched
    monkeypatch.setenv("VAELAB_PRECISION", "float32")
    assert resolve_precision("auto", "cpu", agrees=lambda: True) == "float32"
    monkeypatch.setenv("VAELAB_PRECISION", "half")
    with pytest.raises(ConfigError, match="VAELAB_PRECISION must be float32 or bfloat16"):
        resolve_precision("auto", "cpu")


def test_auto_precision_is_measured_once_per_machine_and_kept(monkeypatch, tmp_path):
    """Two processes of one command answer alike even when the second starts on a busy machine: the
    first measurement is kept (per processor, torch version and thread count) and read after."""
    import json

    from vaelab import runtime

    speeds = {"float32": 100.0, "bfloat16": 400.0}
    monkeypatch.setattr(runtime, "matmul_throughput", lambda p, *a, **k: speeds[p])
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "cache"))
    assert runtime.resolve_precision("auto", "cpu") == "bfloat16"
    kept = json.loads((tmp_path / "cache" / "precision.json").read_text())
    assert kept == {runtime.device_identity(torch.device("cpu")): "bfloat16"}
    speeds["bfloat16"] = 50.0  # the machine is busy now: the answer kept before stands
    assert runtime.resolve_precision("auto", "cpu") == "bfloat16"
    (tmp_path / "cache" / "precision.json").write_text("{not json")  # unreadable: measured again, rewritten
    assert runtime.resolve_precision("auto", "cpu") == "float32"
    assert json.loads((tmp_path / "cache" / "precision.json").read_text()) == {
        runtime.device_identity(torch.device("cpu")): "float32"}
    monkeypatch.setenv(runtime.MEASURED_ENV, json.dumps({"cpu": "bfloat16"}))  # a parent's answer comes first
    assert runtime.resolve_precision("auto", "cpu") == "bfloat16"
    monkeypatch.delenv(runtime.MEASURED_ENV)
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv(runtime.CACHE_ENV, str(blocked / "cache"))  # cannot be created: measured, not kept
    speeds["bfloat16"] = 400.0
    assert runtime.resolve_precision("auto", "cpu") == "bfloat16" and not (blocked / "cache").exists()
    assert "threads" in runtime.device_identity(torch.device("cpu"))
