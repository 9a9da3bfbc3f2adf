"""Semi-supervised MNIST classification with M2 and M1+M2, beside Kingma et al. (2014), Table 1.

MNIST's 50,000 training digits, of which ``--labels`` (balanced over the classes) keep their
label; test error on the 10,000 test digits. M2 works on the pixels (dynamic binarization);
M1+M2 on the latent means of an M1 VAE: the study's model of ``--m1-latent`` in ``--m1-run``
(trained there first if missing, with configs/seed.toml). Published rows are copied from the
paper's Table 1 (error %, mean ± std over runs) for comparison only.

    python benchmarks/ssl_mnist.py --data ../shared/data/mnist.npz --m1-run runs/seed \
        [--labels 100,600,1000,3000] [--seeds 1] [--m2-epochs 20] [--m1m2-epochs 100] \
        [--cells runs/ssl_mnist] [--results benchmarks/results/ssl_mnist.md] [--figures docs/ssl]

With ``--cells DIR`` every finished (model, labels, seed) run is kept there (its error as JSON
keyed by a fingerprint of its settings, the M2 weights as safetensors): an interrupted run goes on
where it stopped, more seeds add to the earlier ones, changed settings redo only their runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from vaelab.config import ModelConfig, TrainConfig, load_config
from vaelab.fileio import cached_json, fingerprint, write_text

# Kingma, Rezende, Mohamed & Welling (2014), Table 1: test error (%) on MNIST with N labels.
PUBLISHED = {
    100: {"M1+TSVM": "11.82 ± 0.25", "M2": "11.97 ± 1.71", "M1+M2": "3.33 ± 0.14"},
    600: {"M1+TSVM": "5.72 ± 0.05", "M2": "4.94 ± 0.13", "M1+M2": "2.59 ± 0.05"},
    1000: {"M1+TSVM": "4.24 ± 0.07", "M2": "3.60 ± 0.56", "M1+M2": "2.40 ± 0.02"},
    3000: {"M1+TSVM": "3.49 ± 0.04", "M2": "3.92 ± 0.63", "M1+M2": "2.18 ± 0.04"},
}


def main(argv: list[str] | None = None) -> None:
    from vaelab.checkpoint import load_model, save_model, tensor_digest
    from vaelab.data import load_grey
    from vaelab.scores import latent_means
    from vaelab.semisupervised import balanced_labels, error_rate, train_m2
    from vaelab.study import Study

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST .npz or IDX directory")
    parser.add_argument("--m1-run", type=Path, required=True, help="study run directory holding (or to hold) M1")
    parser.add_argument("--m1-latent", type=int, default=200)
    parser.add_argument("--m1-config", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "seed.toml")
    parser.add_argument("--labels", default="100,600,1000,3000")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1 of every model")
    parser.add_argument("--m2-seeds", type=int, help="M2 on pixels costs ~10x M1+M2: fewer seeds for it")
    parser.add_argument("--models", default="m2,m1m2")
    parser.add_argument("--m2-epochs", type=int, default=20)
    parser.add_argument("--m1m2-epochs", type=int, default=100)
    parser.add_argument("--latent-dim", type=int, default=50, help="M2's z")
    parser.add_argument("--m1-active", type=float, default=0.01,
                        help="M1+M2 keeps the active latent units: variance of the means over training > this")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--m1m2-latent-dim", type=int, default=32)
    parser.add_argument("--m1m2-hidden", type=int, default=256)
    parser.add_argument("--train-limit", type=int, default=0, help="for smoke tests: fewer training rows")
    parser.add_argument("--m1-epochs", type=int, help="for smoke tests: M1 epochs (default: the config's)")
    parser.add_argument("--cells", type=Path, help="keep each finished run here and reuse it")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--figures", type=Path, help="write conditional sample grids of the M2 models here")
    args = parser.parse_args(argv)

    seed_cfg = load_config(args.m1_config, [f'data.path="{args.data}"', f"study.latent_dims=[{args.m1_latent}]",
                                            "train.progress=false", "anomaly.protocols=[]", "synthetic.types=[]",
                                            f"data.train_limit={args.train_limit}",
                                            *([f"train.epochs={args.m1_epochs}"] if args.m1_epochs else [])])
    data = load_grey(seed_cfg.data)
    x_train, y_train, x_test, y_test = data.train.x, data.train.y, data.test.x, data.test.y
    models = args.models.split(",")
    m1_features, m1_digest = None, None
    if "m1m2" in models:
        Study(seed_cfg, args.m1_run).models()  # trains M1 if the run does not hold it yet
        m1, _ = load_model(args.m1_run / "models" / f"z{args.m1_latent}" / "model.safetensors")
        f_train, f_test = latent_means(m1, x_train), latent_means(m1, x_test)
        active = f_train.var(0) > args.m1_active  # Burda et al. (2016)'s active units; the rest carry no signal
        active = active if active.any() else np.ones_like(active)
        m1_features = (f_train[:, active], f_test[:, active])
        m1_digest = (tensor_digest(m1.state_dict()), args.m1_active)
        print(f"M1: {int(active.sum())} of {len(active)} latent units active", flush=True)
    rows: dict[tuple[str, int], list[float]] = {}
    seconds: dict[str, float] = {m: 0.0 for m in models}
    m2_files: dict[int, Path] = {}
    cells = args.cells or Path(tempfile.mkdtemp(prefix="ssl_mnist-"))
    m2_cfg = ModelConfig(name="m2", latent_dim=args.latent_dim, hidden_dims=(args.hidden,), n_classes=10)
    m1m2_cfg = ModelConfig(name="m2", latent_dim=args.m1m2_latent_dim, hidden_dims=(args.m1m2_hidden,), n_classes=10)
    seeds = {"m2": args.m2_seeds or args.seeds, "m1m2": args.seeds}
    for seed in range(max(seeds[m] for m in models)):  # seeds outermost: a cut-short run has every label count
        for n_labels in [int(v) for v in args.labels.split(",")]:
            semi = balanced_labels(y_train, n_labels, seed)
            assert (semi >= 0).sum() == n_labels  # nothing else, and no test label, reaches training
            for model in (m for m in models if seed < seeds[m]):
                name = f"{model}-{n_labels}-seed{seed}"
                if model == "m2":
                    x_fit, x_eval, cfg, epochs, kw = x_train, x_test, m2_cfg, args.m2_epochs, \
                        {"likelihood": "bernoulli", "binarize": True}
                else:
                    (x_fit, x_eval), cfg, epochs, kw = m1_features, m1m2_cfg, args.m1m2_epochs, \
                        {"likelihood": "gaussian"}
                fp = fingerprint(name, args.data, args.train_limit, dataclasses.asdict(cfg), epochs, kw,
                                 m1_digest if model == "m1m2" else None)

                def run() -> dict[str, float]:
                    t0 = time.perf_counter()
                    fitted = train_m2(x_fit, semi, cfg, TrainConfig(epochs=epochs, batch_size=128, seed=seed,
                                                                    progress=False), **kw)
                    if model == "m2":
                        save_model(cells / f"{name}.safetensors", fitted, {"fingerprint": fp, "labels": n_labels})
                    return {"error": 100 * error_rate(fitted, x_eval, y_test), "seconds": time.perf_counter() - t0}

                cell = cached_json(cells / f"{name}.json", fp, run)
                seconds[model] += cell["seconds"]
                rows.setdefault((model, n_labels), []).append(cell["error"])
                if model == "m2":
                    m2_files[n_labels] = cells / f"{name}.safetensors"
                print(f"{model} labels={n_labels} seed={seed}: test error {cell['error']:.2f}% "
                      f"({cell['seconds']:.0f} s)", flush=True)
    label_counts = sorted({n for _, n in rows})
    fmt = lambda v: f"{np.mean(v):.2f}" + (f" ± {np.std(v):.2f}" if len(v) > 1 else "")  # noqa: E731
    runs = ([f"M2 {args.m2_epochs} epochs on pixels"] if "m2" in models else []) + (
        [f"M1+M2 {args.m1m2_epochs} epochs on the active latent means of the study's {args.m1_latent}-d VAE"]
        if "m1m2" in models else [])
    lines = ["Test error (%) on MNIST; ours: mean ± std over " +
             ", ".join(f"{seeds[m]} seed(s) of {m.upper().replace('M1M2', 'M1+M2')}" for m in models) + "; " +
             ", ".join(runs) +
             ". Published: Kingma et al. 2014, Table 1.", "",
             "| labels | ours M2 | ours M1+M2 | paper M1+TSVM | paper M2 | paper M1+M2 |", "|---|---|---|---|---|---|"]
    for n in label_counts:
        pub = PUBLISHED.get(n, {})
        lines.append(f"| {n} | {fmt(rows[('m2', n)]) if ('m2', n) in rows else ''} | "
                     f"{fmt(rows[('m1m2', n)]) if ('m1m2', n) in rows else ''} | {pub.get('M1+TSVM', '')} | "
                     f"{pub.get('M2', '')} | {pub.get('M1+M2', '')} |")
    if m2_files:  # does M2's decoder use the class? (10% = ignores it; judge: 3-NN on the training digits)
        from vaelab.semisupervised import conditional_agreement, knn_judge

        judge = knn_judge(x_train, y_train)
        lines += ["", "M2 conditional samples E[x|y=c, z] that a 3-nearest-neighbour classifier of the training "
                  "digits puts in class c (last seed; 10% = the decoder ignores y): " + ", ".join(
                      f"{n} labels {100 * conditional_agreement(load_model(f)[0], judge=judge):.0f}%"
                      for n, f in sorted(m2_files.items()))]
    lines.append("")
    lines.append("Training seconds in all: " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items()))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        write_text(args.results, text)
    if args.figures and m2_files:
        from vaelab import plots
        from vaelab.semisupervised import conditional_figures

        m2, _ = load_model(m2_files[max(m2_files)])
        for file, fig in conditional_figures(m2, x_test, y_test,
                                             tuple(data.image_shape[-2:])).items():
            plots.save_figure(fig, args.figures / file)


if __name__ == "__main__":
    main()
