"""Executors: who computes the units of work that a :class:`~vaelab.experiments.units.UnitStore` runs.

- :class:`SerialExecutor`: one unit after another in this process (the default).
- :class:`LocalExecutor` (``--jobs N``): N local worker processes, one thread each by default, each
  computing one unit after another.
- :class:`RayExecutor` (``--executor ray [--address A]``): Ray tasks on a Ray cluster (a local one
  when no address is given); a unit whose device is CUDA asks Ray for a GPU.

Workers need no shared file system: a worker computes its unit in a private directory that starts
with the files of the units it reads (``after``, transitively), and returns the unit's result and the
bytes of every file it wrote; the driver writes them into the run directory (all or nothing) and
records the unit.
Inputs named by path in a unit's parameters (the data set, a model file given by the user) are read
by the worker from that path, so those paths must be visible to every worker.

A worker that dies is replaced and its unit retried (``retries`` times); work already recorded is
kept whatever happens. Results do not depend on the executor or the order in which units finish:
each unit is a deterministic function of its inputs and seed. The tables (AUROC, AP) are equal; stored
float64 scores agree to 1e-12 (measured: 4e-14 on PCA reconstruction errors), because NumPy's BLAS may
round the last bits differently with another thread count or in another process (it picks kernels by
memory alignment). Workers use ``threads`` threads each (default 1).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError
from vaelab.experiments.units import Unit, compute
from vaelab.fileio import write_files
from vaelab.runtime import MEASURED_ENV, PRECISION_ENV, measured_precisions

RAY_INSTALL = "pip install 'vaelab[ray]'"


@dataclass(frozen=True)
class Finished:
    """What a worker sends back: the unit's result, the files it wrote (path -> bytes) and its seconds."""

    result: dict[str, Any]
    files: dict[str, bytes]
    seconds: float


@contextlib.contextmanager
def thread_limit(threads: int | None):
    """Within the block, torch and the BLAS / OpenMP pools of NumPy and scikit-learn use ``threads``
    threads (None: as they are). Float sums can differ in their last bits between thread counts, so
    runs meant to agree bit for bit use the same limit."""
    if not threads:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def execute(unit: Unit, inputs: dict[str, bytes], threads: int | None = None) -> Finished:
    """Compute ``unit`` in a private directory holding ``inputs`` (path -> bytes) and return what it made."""
    with thread_limit(threads):
        return _execute(unit, inputs)


def _execute(unit: Unit, inputs: dict[str, bytes]) -> Finished:
    work = Path(tempfile.mkdtemp(prefix="vaelab-unit-"))
    try:
        for rel, data in inputs.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(data)
        start = time.perf_counter()
        result = compute(unit, work)
        seconds = time.perf_counter() - start
        made = {}
        for path in sorted(p for p in work.rglob("*") if p.is_file()):
            rel = path.relative_to(work).as_posix()
            data = path.read_bytes()
            if inputs.get(rel) != data:  # everything the unit wrote (declared or not), not what it was given
                made[rel] = data
        return Finished(result, made, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class SerialExecutor:
    """Every unit in this process, one after another (with ``threads`` threads; None: as the process has)."""

    name = "serial"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, store, units: list[Unit]) -> None:
        self.run_groups([(store, units)])

    def run_groups(self, groups: list[tuple[Any, list[Unit]]]) -> None:
        """Each group's units in its store, group after group."""
        with thread_limit(self.threads):
            for store, units in groups:
                for unit in units:
                    store.run(unit)


def run_groups(executor: Any, groups: list[tuple[Any, list[Unit]]]) -> None:
    """Run the units of several stores on ``executor`` together (None: serially, store after store,
    each with :meth:`~vaelab.experiments.units.UnitStore.run_all`), so that a parallel executor keeps
    every worker busy across stages; each unit is recorded in its own store."""
    if executor is None:
        for store, units in groups:
            store.run_all(units)
    else:
        executor.run_groups(groups)


class _ParallelExecutor:
    """Shared scheduling: submit every unit whose upstream units are finished, write what comes back."""

    name = "parallel"

    def __init__(self, threads: int = 1, retries: int = 2) -> None:
        self.threads, self.retries = threads, retries

    def run(self, store, units: list[Unit]) -> None:
        self.run_groups([(store, units)])

    def run_groups(self, groups: list[tuple[Any, list[Unit]]]) -> None:
        """The units of several stores together (each recorded in its own store): a unit starts once
        the units it reads (``after``, in any of the groups) have finished."""
        pending = [(store, u) for store, units in groups for u in units if not store.done(u)]
        rank = {id(u): i for i, (_, u) in enumerate(pending)}  # the serial order: what a free worker takes first
        ours = {u.fingerprint for _, u in pending}
        attempts: dict[str, int] = {}
        running: dict[Any, tuple[Any, Unit]] = {}
        self._start()
        try:
            while pending or running:
                for store, unit in [(s, u) for s, u in pending if not (set(u.after) & ours)]:
                    pending.remove((store, unit))
                    store.say(f"[{unit.name}] submitted ({self.name})")
                    running[self._submit(unit, store.input_files(unit), rank[id(unit)])] = (store, unit)
                if not running:
                    raise VaelabError("units wait on each other in a cycle: " + ", ".join(u.name for _, u in pending))
                for handle, outcome in self._wait(list(running)):
                    store, unit = running.pop(handle)
                    if isinstance(outcome, Finished):
                        write_files({store.root / rel: data for rel, data in outcome.files.items()})
                        store.save(unit, outcome.result, outcome.seconds)
                        ours.discard(unit.fingerprint)
                        continue
                    key = f"{store.root}:{unit.name}"
                    attempts[key] = attempts.get(key, 0) + 1
                    if not self._retryable(outcome) or attempts[key] > self.retries:
                        raise outcome
                    store.say(f"[{unit.name}] its worker died ({type(outcome).__name__}); retrying")
                    pending.append((store, unit))
        finally:
            self._stop()

    # the parts each kind of worker pool provides
    def _start(self) -> None: ...
    def _stop(self) -> None: ...
    def _submit(self, unit: Unit, inputs: dict[str, bytes], rank: int) -> Any: raise NotImplementedError  # noqa: E704
    def _wait(self, handles: list[Any]) -> list[tuple[Any, Any]]: raise NotImplementedError  # noqa: E704
    def _retryable(self, error: BaseException) -> bool: return False  # noqa: E704


class WorkerDied(RuntimeError):
    """A worker process ended without returning its unit (killed, out of memory, ...)."""


def _worker(conn, threads: int, env: dict[str, str]) -> None:
    """A local worker process: compute the units it is sent, one at a time, sending back what each
    made (or the error it raised), until it is sent None. ``env``: variables it sets first."""
    os.environ.update(env)
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            unit, inputs = job
            try:
                conn.send(execute(unit, inputs, threads))
            except BaseException as exc:  # noqa: BLE001 - every error goes back to the driver, which re-raises it
                try:
                    conn.send(exc)
                except Exception:  # an error that cannot be pickled: its text
                    conn.send(RuntimeError(f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class LocalExecutor(_ParallelExecutor):
    """``jobs`` local worker processes (spawned, ``threads`` threads each) that take one unit after
    another, so each pays the start-up (Python, torch) once, not once per unit. A worker that dies
    costs only the unit it was computing, which is retried, and is replaced."""

    def __init__(self, jobs: int, threads: int = 1, retries: int = 2) -> None:
        if jobs < 1:
            raise VaelabError(f"--jobs must be >= 1; got {jobs}")
        super().__init__(threads, retries)
        self.jobs, self.name = jobs, f"{jobs} local jobs"
        self.context = multiprocessing.get_context("spawn")
        self.queue: list[tuple[int, Any, Unit, dict[str, bytes]]] = []  # (rank, handle, unit, inputs)
        self.idle: list[tuple[Any, Any]] = []  # (process, connection) waiting for a unit
        self.busy: dict[Any, tuple[Any, Any]] = {}  # handle -> (process, connection)
        self.env: dict[str, str] = {}  # what every worker sets first

    def _start(self) -> None:
        """Measure once here what precision = "auto" answers on this machine and hand it to every worker
        (unless ``VAELAB_PRECISION`` pins it already): measured by each worker as it starts, two workers
        of one run could answer differently on a busy machine, and their results would differ."""
        if not os.environ.get(PRECISION_ENV) and not self.env:
            with thread_limit(self.threads):
                self.env = {MEASURED_ENV: json.dumps(measured_precisions())}

    def _stop(self) -> None:
        for process, conn in [*self.idle, *self.busy.values()]:
            with contextlib.suppress(OSError):
                conn.send(None)  # finish
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self.idle.clear()
        self.busy.clear()
        self.queue.clear()

    def _submit(self, unit: Unit, inputs: dict[str, bytes], rank: int) -> Any:
        """Queue ``unit`` by ``rank`` (its place in the serial order), so that a unit that became ready
        late (a model's scores after its training) goes before independent work queued earlier."""
        handle = object()
        bisect.insort(self.queue, (rank, handle, unit, inputs), key=lambda job: job[0])
        self._launch()
        return handle

    def _worker_process(self) -> tuple[Any, Any]:
        if self.idle:
            return self.idle.pop()
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(target=_worker, args=(child, self.threads, self.env), daemon=True)
        process.start()
        child.close()
        return process, parent

    def _launch(self) -> None:
        while self.queue and len(self.busy) < self.jobs:
            rank, handle, unit, inputs = self.queue.pop(0)
            process, conn = self._worker_process()
            try:
                conn.send((unit, inputs))
            except OSError:  # the idle worker had died: its unit goes to a fresh one
                process.join()
                conn.close()
                self.queue.insert(0, (rank, handle, unit, inputs))
                continue
            self.busy[handle] = (process, conn)

    def _wait(self, handles: list[Any]) -> list[tuple[Any, Any]]:
        from multiprocessing.connection import wait

        by_conn = {conn: h for h, (_, conn) in self.busy.items()}
        ready = wait(list(by_conn))
        out = []
        for conn in ready:
            handle = by_conn[conn]
            process, _ = self.busy.pop(handle)
            try:
                outcome = conn.recv()
                self.idle.append((process, conn))
            except (EOFError, OSError):
                process.join()
                conn.close()
                outcome = WorkerDied(f"worker process ended with status {process.exitcode}")
            out.append((handle, outcome))
        self._launch()
        return out

    def _retryable(self, error: BaseException) -> bool:
        return isinstance(error, WorkerDied)


def _ray():
    try:
        import ray
    except ImportError:
        raise VaelabError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


class RayExecutor(_ParallelExecutor):
    """Units as Ray tasks: on the cluster at ``address`` (``auto``: the one running on this machine),
    or on a local one started for the run. Ray retries a task whose worker dies (``retries`` times)."""

    def __init__(self, address: str | None = None, threads: int = 1, retries: int = 2,
                 init_options: dict[str, Any] | None = None) -> None:
        self.ray = _ray()
        super().__init__(threads, retries)
        self.address, self.init_options = address, dict(init_options or {})
        self.name = f"ray {address or 'local'}"
        self._started_here = False

    def _start(self) -> None:
        if not self.ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, **self.init_options}
            self.ray.init(address=self.address, **options)
            self._started_here = True
        self._remote = self.ray.remote(execute)

    def _stop(self) -> None:
        if self._started_here:
            self.ray.shutdown()
            self._started_here = False

    def _submit(self, unit: Unit, inputs: dict[str, bytes], rank: int) -> Any:
        gpus = 1 if str(unit.runtime.get("device", "cpu")).startswith("cuda") else 0
        return self._remote.options(num_cpus=self.threads, num_gpus=gpus, max_retries=self.retries,
                                    retry_exceptions=False).remote(unit, inputs, self.threads)

    def _wait(self, handles: list[Any]) -> list[tuple[Any, Any]]:
        ready, _ = self.ray.wait(handles, num_returns=1)
        out = []
        for ref in ready:
            try:
                out.append((ref, self.ray.get(ref)))
            except self.ray.exceptions.RayTaskError as exc:  # the unit raised: the driver re-raises its error
                out.append((ref, exc.as_instanceof_cause()))
            except self.ray.exceptions.RayError as exc:  # the worker was lost beyond its retries
                out.append((ref, exc))
        return out


EXECUTORS = ("serial", "local", "ray")


def make_executor(kind: str = "serial", jobs: int = 1, address: str | None = None,
                  threads: int | None = None) -> SerialExecutor | LocalExecutor | RayExecutor:
    """The executor the command line names: ``serial`` (jobs 1), ``local`` (``jobs`` processes) or ``ray``;
    ``threads`` per unit (None: all of them serially, 1 per worker)."""
    if kind not in EXECUTORS:
        raise VaelabError(f"unknown executor {kind!r}; use {', '.join(EXECUTORS)}")
    if kind == "ray":
        return RayExecutor(address, threads=threads or 1)
    if address:
        raise VaelabError("--address is for --executor ray")
    if kind == "local" or jobs > 1:
        return LocalExecutor(jobs, threads=threads or 1)
    return SerialExecutor(threads)


def add_executor_arguments(parser) -> None:
    """``--jobs``, ``--executor`` and ``--address`` on an argparse parser (the CLI's and the benchmarks')."""
    parser.add_argument("--jobs", type=int, default=1,
                        help="local worker processes, one thread each (default 1: this process)")
    parser.add_argument("--executor", choices=list(EXECUTORS),
                        help="serial, local (--jobs processes) or ray (a Ray cluster; default: local with --jobs > 1)")
    parser.add_argument("--address", help="with --executor ray: the cluster (auto: the one on this machine; "
                        "default: start a local one)")
    parser.add_argument("--threads", type=int, help="threads per unit (default: all of them serially, 1 per "
                        "worker); runs with equal --threads give bit-identical tables")


def executor_from_arguments(args) -> SerialExecutor | LocalExecutor | RayExecutor | None:
    """The executor the flags of :func:`add_executor_arguments` name (None: serial in this process)."""
    if args.jobs < 1:
        raise VaelabError(f"--jobs must be >= 1; got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise VaelabError(f"--threads must be >= 1; got {args.threads}")
    kind = args.executor or ("local" if args.jobs > 1 else "serial")
    if kind == "serial" and args.threads is None:
        return None
    return make_executor(kind, jobs=args.jobs, address=args.address, threads=args.threads)

