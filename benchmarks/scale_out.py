"""The anomaly benchmark's wall time on each executor: serial (this process, its default threads) beside
``--jobs N`` (local worker processes, one thread each) and Ray (a local cluster of N CPUs, one thread per
task), each from an empty directory, in one run; their tables must agree.

    python benchmarks/scale_out.py --data-path ../shared/data/mnist.npz [--protocols loco] \
        [--classes 0,1] [--latent-dims 5] [--jobs 2] [--results benchmarks/results/scale_out.md]

The full benchmark is ``--protocols loco,ovr --classes 0,1,2,3,4,5,6,7,8,9 --latent-dims 3,5,200``
(80 cells). Cells are independent, so N workers need about max(total / N, longest cell) plus start-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from vaelab.config import load_config
from vaelab.experiments.anomaly import AnomalyBenchmark
from vaelab.experiments.executors import LocalExecutor, RayExecutor, SerialExecutor
from vaelab.fileio import write_text
from vaelab.runtime import PRECISION_ENV, resolve_device, resolve_precision

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "anomaly.toml"))
    parser.add_argument("--data-path", default="")
    parser.add_argument("--protocols", default="loco")
    parser.add_argument("--classes", default="0,1")
    parser.add_argument("--latent-dims", default="5")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--executors", default="serial,serial1,jobs,ray",
                        help="serial (default threads), serial1 (one thread), jobs, ray")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    parser.add_argument("--results", default="")
    args = parser.parse_args()

    dims = f"[{args.latent_dims}]"
    overrides = [f"anomaly.protocols={[p for p in args.protocols.split(',')]!r}".replace("'", '"'),
                 f"anomaly.classes=[{args.classes}]", f"anomaly.latent_dims={dims}", f"study.latent_dims={dims}",
                 "train.progress=false", *args.set]
    if args.data_path:
        overrides.append(f"data.path=\"{args.data_path}\"")
    config = load_config(args.config, overrides)
    # one arithmetic for every executor's processes: each would otherwise measure for itself, and on a
    # busy machine two of them can answer differently (their tables then differ for that reason alone)
    os.environ.setdefault(PRECISION_ENV, resolve_precision("auto", resolve_device(config.train.device)))
    executors = {"serial": lambda: None, "serial1": lambda: SerialExecutor(threads=1),
                 "jobs": lambda: LocalExecutor(args.jobs),
                 "ray": lambda: RayExecutor(init_options={"num_cpus": args.jobs})}
    work = Path(tempfile.mkdtemp(prefix="vaelab-scale-out-"))
    rows, tables = [], {}
    try:
        for name in args.executors.split(","):
            out = work / name
            start = time.perf_counter()
            bench = AnomalyBenchmark(config, out, executor=executors[name]())
            result = bench.run()
            wall = time.perf_counter() - start
            cells = bench.store.seconds(bench.units())
            tables[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in result]
            label = {"serial": "serial (one process, default threads)", "serial1": "serial, one thread",
                     "jobs": f"--jobs {args.jobs} (1 thread each)",
                     "ray": f"--executor ray (local cluster, {args.jobs} CPUs)"}[name]
            rows.append(f"| {label} | {wall:.0f} | {sum(cells.values()):.0f} | {max(cells.values()):.0f} | "
                        f"{len(cells)} |")
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    def gap(a: list[dict], b: list[dict]) -> float:
        """The largest AUROC difference between two executors' rows (inf if the rows do not match)."""
        if [(r["protocol"], r["class"], r["latent_dim"], r["detector"]) for r in a] != \
                [(r["protocol"], r["class"], r["latent_dim"], r["detector"]) for r in b]:
            return float("inf")
        return max(abs(x["auroc"] - y["auroc"]) for x, y in zip(a, b))

    one_thread = [n for n in tables if n != "serial"]
    same = all(tables[n] == tables[one_thread[0]] for n in one_thread)
    lines = [f"# Anomaly benchmark wall time by executor (protocols {args.protocols}, classes {args.classes}, "
             f"latent sizes {args.latent_dims}; {Path(args.config).name})", "",
             "| executor | wall s | sum of cell compute s | longest cell s | cells |", "|---|---|---|---|---|", *rows, "",
             f"Tables (AUROC and AP of every cell and detector) identical across the executors that run each unit "
             f"on one thread ({', '.join(one_thread)}): {same}."]
    if "serial" in tables and one_thread:
        lines.append(f"Largest AUROC difference between the default-threads serial run and the one-thread runs: "
                     f"{max(gap(tables['serial'], tables[n]) for n in one_thread):.2g} (float sums round "
                     "differently with another thread count, and training follows its arithmetic).")
    print("\n".join(lines))
    if args.results:
        write_text(args.results, "\n".join(lines) + "\n")
    if not same:
        raise SystemExit("the one-thread executors' tables differ")


if __name__ == "__main__":
    main()
