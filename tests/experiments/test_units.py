"""Units of work: computed once per fingerprint, redone when an input changes, nothing kept on failure."""

import json
from pathlib import Path

import pytest

from vaelab.experiments.units import Unit, UnitStore, compute, config_part, resolve

CALLS: list[str] = []


def write_square(unit: Unit, root: Path) -> dict:
    """A unit function for these tests: writes x^2 to its output and returns it."""
    CALLS.append(unit.name)
    if unit.params.get("fail"):
        raise RuntimeError("interrupted")
    value = unit.params["x"] ** 2
    (root / unit.outputs[0]).parent.mkdir(parents=True, exist_ok=True)
    (root / unit.outputs[0]).write_text(str(value))
    return {"value": value, "device": unit.runtime.get("device")}


def square(x: int, **kw) -> Unit:
    return Unit(f"sq/{x}", "tests.experiments.test_units:write_square", {"x": x, **kw}, outputs=(f"out/{x}.txt",))


def test_a_unit_runs_once_per_fingerprint_and_records_its_result(tmp_path):
    CALLS.clear()
    store = UnitStore(tmp_path)
    assert store.run(square(3)) == {"value": 9, "device": None}
    assert store.run(square(3)) == {"value": 9, "device": None}
    assert CALLS == ["sq/3"]
    record = json.loads((tmp_path / "units" / "sq" / "3.json").read_text())
    assert record["fingerprint"] == square(3).fingerprint and record["result"]["value"] == 9


def test_runtime_settings_do_not_change_the_fingerprint_but_inputs_do():
    unit = square(3)
    assert Unit(**{**unit.__dict__, "runtime": {"device": "cuda"}}).fingerprint == unit.fingerprint
    assert Unit(**{**unit.__dict__, "after": ("abc",)}).fingerprint != unit.fingerprint
    assert square(3, k=1).fingerprint != unit.fingerprint


def test_a_changed_input_or_a_lost_output_redoes_the_unit(tmp_path):
    CALLS.clear()
    store = UnitStore(tmp_path)
    store.run(square(2))
    changed = Unit(**{**square(2).__dict__, "after": ("upstream changed",)})
    store.run(changed)
    (tmp_path / "out" / "2.txt").unlink()
    store.run(changed)
    assert CALLS == ["sq/2", "sq/2", "sq/2"]
    assert store.done(changed) and not store.done(square(2))


def test_a_failed_unit_leaves_no_record(tmp_path):
    store = UnitStore(tmp_path)
    with pytest.raises(RuntimeError):
        store.run(square(4, fail=True))
    assert not (tmp_path / "units" / "sq" / "4.json").exists()
    assert [p.name for p in (tmp_path / "units" / "sq").iterdir()] == ["4.lock"]  # the lock file only
    (tmp_path / "units" / "sq" / "4.json").write_text('{"fingerprint": ')  # a damaged record is redone
    assert not store.done(square(4))


def test_compute_ignores_the_store_and_resolve_needs_a_module_and_function(tmp_path):
    assert compute(square(5), tmp_path)["value"] == 25
    with pytest.raises(ValueError):
        resolve("no_function_named")


def test_config_part_keeps_only_the_named_keys():
    config = {"data": {"name": "x", "path": ""}, "train": {"seed": 1, "lr": 0.1}}
    assert config_part(config, data=None, train=["seed"]) == {"data": {"name": "x", "path": ""}, "train": {"seed": 1}}


def slow_square(unit: Unit, root: Path) -> dict:
    """A unit function that takes a while and logs every computation (pid and name) to compute.log."""
    import os
    import time

    with open(root / "compute.log", "a") as log:
        log.write(f"{os.getpid()} {unit.name} start\n")
    time.sleep(0.3)
    value = unit.params["x"] ** 2
    if unit.after:  # reads its upstream's output
        value += int((root / "out" / "up.txt").read_text())
    (root / unit.outputs[0]).parent.mkdir(parents=True, exist_ok=True)
    (root / unit.outputs[0]).write_text(str(value))
    return {"value": value}


def _shared_units() -> list[Unit]:
    up = Unit("up", "tests.experiments.test_units:slow_square", {"x": 10}, outputs=("out/up.txt",))
    cells = [Unit(f"cell/{x}", "tests.experiments.test_units:slow_square", {"x": x}, outputs=(f"out/{x}.txt",))
             for x in range(6)]
    down = Unit("down", "tests.experiments.test_units:slow_square", {"x": 1}, outputs=("out/down.txt",),
                after=(up.fingerprint,))
    return [up, *cells, down]


def _run_shared(root: str, queue) -> None:
    queue.put(UnitStore(root).run_all(_shared_units()))


def test_two_processes_on_one_store_share_the_work_and_agree(tmp_path):
    """Started together on one directory, two processes compute each unit once between them, a unit
    that reads another's output waits for it, and both return the serial run's results."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_run_shared, args=(str(tmp_path / "shared"), queue)) for _ in range(2)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    serial = UnitStore(tmp_path / "serial").run_all(_shared_units())
    assert results[0] == results[1] == serial
    assert serial[-1] == {"value": 101}
    log = (tmp_path / "shared" / "compute.log").read_text().split("\n")[:-1]
    names = [line.split()[1] for line in log]
    assert sorted(names) == sorted(u.name for u in _shared_units()), "a unit was computed twice or not at all"
    assert len({line.split()[0] for line in log}) == 2, "the second process did none of the work"
    for unit in _shared_units():
        shared, alone = tmp_path / "shared" / unit.outputs[0], tmp_path / "serial" / unit.outputs[0]
        assert shared.read_text() == alone.read_text()
