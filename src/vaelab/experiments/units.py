"""Units of work: the one mechanism for resumable work (study stages, benchmark cells, SSL runs).

A :class:`Unit` is plain data: a name, the function that computes it (named
``"module:function"``, so any process can import it), its JSON-able inputs
(``params``, fingerprinted), how to run it (``runtime``: device and the like,
not fingerprinted), the files it writes (relative to the store's root) and the
fingerprints of the units whose outputs it reads (``after``). Nothing in it is
a live object, so an executor may run it in this process, another process or
on another machine.

A :class:`UnitStore` keeps one record per finished unit,
``<root>/units/<name>.json`` = {fingerprint, result, files, seconds}, written
atomically after the unit's outputs. A unit whose record has the same
fingerprint and whose files all exist is skipped and its stored result
returned; a changed input (params or an upstream fingerprint) redoes it.

Processes may share a store and cooperate: a unit runs under an exclusive
lock (``<root>/units/<name>.lock``, released by the operating system if its
process dies), so no unit is computed twice at once; :meth:`UnitStore.run_all`
passes over units another process is computing and comes back to them, and
waits for them before any unit that reads their outputs.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from vaelab.fileio import fingerprint, locked, write_json

UnitFunction = Callable[["Unit", Path], dict[str, Any]]


@dataclass(frozen=True)
class Unit:
    """One resumable piece of work, described by data."""

    name: str                                   # unique within its store, e.g. "train/z5" or "loco_c1_z5"
    function: str                               # "package.module:function", called as f(unit, root)
    params: Mapping[str, Any]                   # JSON-able inputs: what the result depends on
    outputs: tuple[str, ...] = ()               # files it writes, relative to the store's root
    after: tuple[str, ...] = ()                 # fingerprints of the units whose outputs it reads
    runtime: Mapping[str, Any] = field(default_factory=dict)  # how to run it (device, ...): not fingerprinted

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.function, self.params, list(self.after))


def resolve(function: str) -> UnitFunction:
    """The function a unit names, ``"package.module:function"``."""
    module, _, name = function.partition(":")
    if not module or not name:
        raise ValueError(f"a unit's function must be named 'package.module:function', not {function!r}")
    return getattr(importlib.import_module(module), name)


def compute(unit: Unit, root: str | Path) -> dict[str, Any]:
    """Run ``unit`` into ``root`` now, whatever is stored; returns its result."""
    return resolve(unit.function)(unit, Path(root))


class UnitStore:
    """The finished units under ``root`` and the serial way of running more of them."""

    def __init__(self, root: str | Path, say: Callable[[str], None] | None = None, executor: Any = None) -> None:
        self.root = Path(root)
        self.say = say or (lambda line: None)
        self.executor = executor  # None: this process, one unit at a time (see vaelab.experiments.executors)

    def record_path(self, name: str) -> Path:
        return self.root / "units" / f"{name}.json"

    def record(self, unit: Unit) -> dict[str, Any] | None:
        """The stored record of ``unit`` if it is finished with these inputs and its files exist."""
        try:
            record = json.loads(self.record_path(unit.name).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(record, dict) or record.get("fingerprint") != unit.fingerprint:
            return None
        files = [*unit.outputs, *record.get("files", [])]
        return record if all((self.root / f).exists() for f in files) else None

    def done(self, unit: Unit) -> bool:
        return self.record(unit) is not None

    def result(self, unit: Unit) -> dict[str, Any]:
        """The stored result of a finished unit."""
        record = self.record(unit)
        if record is None:
            raise KeyError(f"unit {unit.name} has not finished")
        return record["result"]

    def run(self, unit: Unit, *, wait: bool = True) -> dict[str, Any] | None:
        """The unit's result: stored if it is finished with these inputs, else computed and recorded.
        With ``wait`` False, None when another process is computing it now."""
        record = self.record(unit)
        if record is not None:
            self.say(f"[{unit.name}] up to date, skipped")
            return record["result"]
        with locked(self.record_path(unit.name).with_suffix(".lock"), wait=wait) as mine:
            if not mine:
                return None
            record = self.record(unit)  # finished by another process while this one waited
            if record is not None:
                self.say(f"[{unit.name}] finished by another process")
                return record["result"]
            self.say(f"[{unit.name}] running")
            start = time.perf_counter()
            result = compute(unit, self.root)
            return self.save(unit, result, time.perf_counter() - start)

    def save(self, unit: Unit, result: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Record ``unit`` as finished with ``result`` (its outputs must already be in place)."""
        files = [f for f in result.get("files", []) if isinstance(f, str)]
        write_json(self.record_path(unit.name), {"name": unit.name, "fingerprint": unit.fingerprint,
                                                 "result": result, "files": files, "outputs": list(unit.outputs),
                                                 "after": list(unit.after), "seconds": round(seconds, 2)})
        self.say(f"[{unit.name}] done in {seconds:.1f} s")
        return result

    def input_files(self, unit: Unit) -> dict[str, bytes]:
        """The files of the finished units that ``unit`` reads, and of theirs in turn (path -> bytes): what a
        worker without this directory needs."""
        records = {}
        for path in (self.root / "units").rglob("*.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(record, dict) and "fingerprint" in record:
                records[record["fingerprint"]] = record
        files: dict[str, bytes] = {}
        todo, seen = list(unit.after), set()
        while todo:
            fp = todo.pop()
            if fp in seen or fp not in records:
                continue
            seen.add(fp)
            record = records[fp]
            for rel in [*record.get("outputs", []), *record.get("files", [])]:
                if (self.root / rel).is_file():
                    files[rel] = (self.root / rel).read_bytes()
            todo += record.get("after", [])
        return files

    def seconds(self, units: Iterable[Unit]) -> dict[str, float]:
        """Compute seconds of each finished unit, by name."""
        out = {}
        for unit in units:
            record = self.record(unit)
            if record is not None:
                out[unit.name] = record.get("seconds", 0.0)
        return out

    def run_all(self, units: Iterable[Unit]) -> list[dict[str, Any]]:
        """Run ``units`` (with this store's executor; by default one at a time in this process) and return
        their results in order. Serially, units another process is computing are passed over and awaited
        later, before any unit that reads their outputs (``after``) and at the end."""
        units = list(units)
        if self.executor is not None:
            self.executor.run(self, units)
            return [self.result(unit) for unit in units]
        results: dict[str, dict[str, Any]] = {}
        busy: list[Unit] = []
        for unit in units:
            for upstream in [b for b in busy if b.fingerprint in unit.after]:
                results[upstream.name] = self.run(upstream)
                busy.remove(upstream)
            result = self.run(unit, wait=False)
            if result is None:
                self.say(f"[{unit.name}] being computed by another process; coming back to it")
                busy.append(unit)
            else:
                results[unit.name] = result
        for unit in busy:
            results[unit.name] = self.run(unit)
        return [results[unit.name] for unit in units]


def config_part(config: Mapping[str, Any], **sections: Iterable[str] | None) -> dict[str, Any]:
    """The part of a config dict a unit depends on: for each section, the named keys (None: all)."""
    return {s: (dict(config[s]) if keys is None else {k: config[s][k] for k in keys})
            for s, keys in sections.items()}
