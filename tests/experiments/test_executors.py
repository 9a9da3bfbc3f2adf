"""Executors: local worker processes and a real (local, loopback) Ray instance give the serial run's files and
numbers, whatever order units finish in; a killed worker's unit is retried; nothing is shared but what the
driver sends."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import tiny_config
from vaelab.errors import VaelabError
from vaelab.experiments.anomaly import AnomalyBenchmark
from vaelab.experiments import executors
from vaelab.experiments.executors import LocalExecutor, RayExecutor, SerialExecutor, make_executor
from vaelab.experiments.units import Unit, UnitStore
from vaelab.runtime import MEASURED_ENV, PRECISION_ENV, resolve_precision

ANOMALY = {"protocols": ["loco"], "classes": [1, 7], "latent_dims": [2], "loco_epochs": 2,
           "latent_estimators": ["gmm"], "raw_estimators": ["iforest", "pca-recon"]}
SETTINGS = {"anomaly": ANOMALY, "study": {"latent_dims": [2]}, "detector": {"iwae_samples": 5, "reference_rows": 200}}


def power(unit: Unit, root: Path) -> dict:
    """A unit function: x**p, plus its upstream's value; on its first attempt in ``runtime['die_once']``
    (a directory) its process kills itself, as a worker lost to the machine would."""
    marker = unit.runtime.get("die_once")
    if marker and not (Path(marker) / unit.name.replace("/", "_")).exists():
        (Path(marker) / unit.name.replace("/", "_")).write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    value = unit.params["x"] ** unit.params["p"]
    if unit.after:
        value += int((root / "out" / "base.txt").read_text())
    (root / unit.outputs[0]).parent.mkdir(parents=True, exist_ok=True)
    (root / unit.outputs[0]).write_text(str(value))
    (root / "extra" / f"{unit.name}.log").parent.mkdir(parents=True, exist_ok=True)
    (root / "extra" / f"{unit.name}.log").write_text(f"pid {os.getpid()}\n")  # undeclared files come back too
    return {"value": value}


def auto_precision(unit: Unit, root: Path) -> dict:
    """A unit function: what precision = "auto" answers in the process that computes it."""
    return {"precision": resolve_precision("auto", "cpu")}


def _units(runtime: dict | None = None) -> list[Unit]:
    base = Unit("base", "tests.experiments.test_executors:power", {"x": 3, "p": 2}, outputs=("out/base.txt",),
                runtime=runtime or {})
    cells = [Unit(f"cell{i}", "tests.experiments.test_executors:power", {"x": i, "p": 3},
                  outputs=(f"out/{i}.txt",), runtime=runtime or {}) for i in range(4)]
    top = Unit("top", "tests.experiments.test_executors:power", {"x": 2, "p": 5}, outputs=("out/top.txt",),
               after=(base.fingerprint,), runtime=runtime or {})
    return [base, *cells, top]


def _outputs(root: Path) -> dict[str, bytes]:
    """Every output file's bytes; the tables, which also record compute seconds, are compared as rows."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "units" not in p.parts and not p.name.endswith(".log")
            and not p.name.startswith("results.")}


def _same_outputs(a: Path, b: Path) -> None:
    """The two run directories hold the same files with the same contents: equal bytes, except that the
    scores in .npz files need only agree to 1e-12 (float64 BLAS in another process may round the last
    bits differently: NumPy's OpenBLAS picks kernels by memory alignment)."""
    import numpy as np

    left, right = _outputs(a), _outputs(b)
    assert set(left) == set(right)
    for rel, data in left.items():
        if rel.endswith(".npz") and data != right[rel]:
            x, y = np.load(a / rel), np.load(b / rel)
            assert x.files == y.files and all(np.allclose(x[k], y[k], rtol=1e-12, atol=1e-12) for k in x.files), rel
        else:
            assert data == right[rel], rel


def _timeless(rows: list[dict]) -> list[dict]:
    """Benchmark rows without their compute seconds (the one thing that differs from run to run)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_local_jobs_give_the_serial_results_and_files(tmp_path):
    serial = UnitStore(tmp_path / "serial").run_all(_units())
    store = UnitStore(tmp_path / "jobs", executor=LocalExecutor(2))
    assert store.run_all(_units()) == serial and serial[-1] == {"value": 41}
    assert _outputs(tmp_path / "jobs") == _outputs(tmp_path / "serial")
    assert (tmp_path / "jobs" / "extra" / "top.log").exists()  # written by a worker, brought back by the driver
    assert {store.record(u)["name"] for u in _units()} == {u.name for u in _units()}


def test_a_local_worker_computes_one_unit_after_another(tmp_path):
    UnitStore(tmp_path / "run", executor=LocalExecutor(1)).run_all(_units())
    pids = {p.read_text() for p in (tmp_path / "run" / "extra").glob("*.log")}
    assert len(pids) == 1 and pids != {f"pid {os.getpid()}\n"}  # one worker, started once, not this process


def test_a_killed_local_worker_is_replaced_and_its_unit_retried(tmp_path):
    (tmp_path / "markers").mkdir()
    units = _units({"die_once": str(tmp_path / "markers")})
    results = UnitStore(tmp_path / "run", executor=LocalExecutor(2)).run_all(units)
    assert results == UnitStore(tmp_path / "serial").run_all(_units())
    assert len(list((tmp_path / "markers").iterdir())) == len(units)  # every unit's first worker died


def test_finished_units_are_kept_whichever_executor_ran_them(tmp_path):
    UnitStore(tmp_path / "run", executor=LocalExecutor(2)).run_all(_units()[:3])
    store = UnitStore(tmp_path / "run")
    assert all(store.done(u) for u in _units()[:3]) and not store.done(_units()[3])


def test_the_executor_is_named_or_refused_in_one_line():
    assert make_executor("serial").name == "serial" and make_executor("local", jobs=2).jobs == 2
    with pytest.raises(VaelabError, match="--address is for --executor ray"):
        make_executor("local", jobs=2, address="auto")


def test_without_ray_the_ray_executor_names_the_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(VaelabError, match=r"pip install 'vaelab\[ray\]'"):
        make_executor("ray")


def test_a_tiny_benchmark_on_local_jobs_equals_the_serial_one(tmp_path, monkeypatch):
    # precision "auto" is measured once here and handed to the workers: no pin needed, even on a busy machine
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.delenv(MEASURED_ENV, raising=False)
    serial = AnomalyBenchmark(tiny_config(**SETTINGS), tmp_path / "serial", executor=SerialExecutor(threads=1)).run()
    jobs = AnomalyBenchmark(tiny_config(**SETTINGS), tmp_path / "jobs", executor=LocalExecutor(2)).run()
    assert _timeless(jobs) == _timeless(serial)
    _same_outputs(tmp_path / "jobs", tmp_path / "serial")


ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'vaelab[ray]')")


@pytest.fixture(scope="module")
def ray_executor():
    executor = RayExecutor(init_options={"num_cpus": 2, "object_store_memory": 200 * 2**20,
                                         "_node_ip_address": "127.0.0.1"})
    executor._start()  # one local, loopback-only instance for the module
    yield executor
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_serial_results_and_retries_a_killed_worker(ray_executor, tmp_path):
    serial = UnitStore(tmp_path / "serial").run_all(_units())
    assert UnitStore(tmp_path / "ray", executor=ray_executor).run_all(_units()) == serial
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "serial")
    (tmp_path / "markers").mkdir()
    units = _units({"die_once": str(tmp_path / "markers")})
    assert UnitStore(tmp_path / "killed", executor=ray_executor).run_all(units) == serial
    assert len(list((tmp_path / "markers").iterdir())) == len(units)
    assert _outputs(tmp_path / "killed") == _outputs(tmp_path / "serial")


@pytest.mark.slow
def test_a_tiny_benchmark_on_ray_equals_the_serial_one(ray_executor, tmp_path):
    serial = AnomalyBenchmark(tiny_config(**SETTINGS), tmp_path / "serial", executor=SerialExecutor(threads=1)).run()
    on_ray = AnomalyBenchmark(tiny_config(**SETTINGS), tmp_path / "ray", executor=ray_executor).run()
    assert _timeless(on_ray) == _timeless(serial)
    _same_outputs(tmp_path / "ray", tmp_path / "serial")


def test_a_free_local_worker_takes_the_earliest_unit_of_the_serial_order(monkeypatch):
    executor = LocalExecutor(jobs=1)
    monkeypatch.setattr(executor, "_launch", lambda: None)  # queue only: no worker takes anything
    units = _units()
    for rank in (3, 0, 5, 1):
        executor._submit(units[rank], {}, rank)
    assert [job[2].name for job in executor.queue] == [units[r].name for r in (0, 1, 3, 5)]


@pytest.mark.parametrize("answer", ["float32", "bfloat16"])
def test_local_workers_answer_auto_precision_as_their_parent_measured(tmp_path, monkeypatch, answer):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.delenv(MEASURED_ENV, raising=False)
    monkeypatch.setattr(executors, "measured_precisions", lambda: {"cpu": answer})
    unit = Unit("p", "tests.experiments.test_executors:auto_precision", {})
    store = UnitStore(tmp_path, say=None, executor=LocalExecutor(1))
    store.run_all([unit])
    assert store.result(unit) == {"precision": answer}
    assert MEASURED_ENV not in os.environ  # the parent itself is left as it was


def sleepy(unit: Unit, root: Path) -> dict:
    """A unit function: notes its process id in the directory ``pids`` (outside the run: a worker's own
    files come back only when it finishes), then sleeps ``seconds`` before writing its output."""
    import time

    (Path(unit.params["pids"]) / unit.name).write_text(str(os.getpid()))
    time.sleep(unit.params["seconds"])
    (root / unit.outputs[0]).parent.mkdir(parents=True, exist_ok=True)
    (root / unit.outputs[0]).write_text("done")
    return {"slept": unit.params["seconds"]}


TERMINATED_DRIVER = """
import signal, sys
from pathlib import Path
from vaelab.cli import Terminated, _terminate
from vaelab.experiments.executors import LocalExecutor
from vaelab.experiments.units import Unit, UnitStore
signal.signal(signal.SIGTERM, _terminate)
units = [Unit(name, "tests.experiments.test_executors:sleepy", {"seconds": s, "pids": sys.argv[2]},
              outputs=(f"out/{name}.txt",)) for name, s in (("quick", 0), ("slow1", 300), ("slow2", 300))]
try:
    UnitStore(Path(sys.argv[1]), executor=LocalExecutor(2)).run_all(units)
except Terminated:
    sys.exit(143)
"""


def test_a_terminated_driver_stops_its_workers_and_keeps_finished_units(tmp_path):
    """SIGTERM (a scheduler's time limit) reaches the driver as an interrupt: its worker processes are
    stopped with it, not left computing, and the units that finished stay stored."""
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'src'}", "VAELAB_PRECISION": "float32"}
    pids = tmp_path / "pids"
    pids.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", TERMINATED_DRIVER, str(tmp_path / "run"), str(pids)], env=env,
                              cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not ((pids / "slow1").exists() and (pids / "slow2").exists()):
        time.sleep(0.05)
    workers = [int((pids / name).read_text()) for name in ("slow1", "slow2")]
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == 143, driver.stderr.read().decode()
    time.sleep(0.5)
    for pid in workers:  # gone (or a zombie reaped by nobody: not running either way)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    store = UnitStore(tmp_path / "run")
    quick, slow = (Unit(n, "tests.experiments.test_executors:sleepy", {"seconds": s, "pids": str(pids)},
                        outputs=(f"out/{n}.txt",)) for n, s in (("quick", 0), ("slow1", 300)))
    assert store.done(quick) and not store.done(slow) and not (tmp_path / "run" / "out" / "slow1.txt").exists()
