"""Semi-supervised MNIST classification with M2 and M1+M2, beside Kingma et al. (2014), Table 1.

MNIST's 50,000 training digits, of which ``--labels`` (balanced over the classes) keep their
label; test error on the 10,000 test digits. M2 works on the pixels (dynamic binarization);
M1+M2 on the latent means of an M1 VAE: the study's model of ``--m1-latent`` in ``--m1-run``
(trained there first if missing, with configs/seed.toml). Published rows are copied from the
paper's Table 1 (error %, mean ± std over runs) for comparison only.

    python benchmarks/ssl_mnist.py --data ../shared/data/mnist.npz --m1-run runs/seed \
        [--labels 100,600,1000,3000] [--seeds 1] [--m2-epochs 20] [--m1m2-epochs 100] \
        [--cells runs/ssl_mnist] [--results benchmarks/results/ssl_mnist.md] [--figures docs/ssl]

With ``--cells DIR`` every finished (model, labels, seed) run is kept there as a unit of work
(:mod:`vaelab.experiments.units`: its error in ``units/<run>.json`` keyed by a fingerprint of its
settings, the M2 weights as safetensors): an interrupted run goes on
where it stopped, more seeds add to the earlier ones, changed settings redo only their runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from vaelab.config import PRECISIONS, Config, ModelConfig, load_config
from vaelab.data.labels import LABELLED_SHARE
from vaelab.fileio import write_json, write_text

# Kingma, Rezende, Mohamed & Welling (2014), Table 1: test error (%) on MNIST with N labels.
PUBLISHED = {
    100: {"M1+TSVM": "11.82 ± 0.25", "M2": "11.97 ± 1.71", "M1+M2": "3.33 ± 0.14"},
    600: {"M1+TSVM": "5.72 ± 0.05", "M2": "4.94 ± 0.13", "M1+M2": "2.59 ± 0.05"},
    1000: {"M1+TSVM": "4.24 ± 0.07", "M2": "3.60 ± 0.56", "M1+M2": "2.40 ± 0.02"},
    3000: {"M1+TSVM": "3.49 ± 0.04", "M2": "3.92 ± 0.63", "M1+M2": "2.18 ± 0.04"},
}


def alpha_rule(text: str) -> Callable[[int, int], float]:
    """One ``--alpha``: a fixed weight per labelled row; ``paper``, 0.1 x rows / labels (Kingma et al. 2014:
    alpha = 0.1 N on the labelled rows' mean, which their code applies as this weight per labelled row);
    or ``Kxpaper``, K times that."""
    if text == "paper" or text.endswith("xpaper"):
        factor = "1" if text == "paper" else text[:-len("xpaper")]
        try:
            k = float(factor)
        except ValueError:
            k = 0.0
        if k <= 0:
            raise argparse.ArgumentTypeError(f"--alpha: {text!r} needs a positive factor before 'xpaper'")
        return lambda rows, labels: k * 0.1 * rows / labels
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alpha takes a number, 'paper' or 'Kxpaper', not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--alpha must be >= 0, not {value}")
    return lambda rows, labels: value


def alpha_list(text: str) -> list[tuple[str, Callable[[int, int], float]]]:
    """``--alpha``: one weight or a comma-separated list of candidates, each with its text."""
    return [(item, alpha_rule(item)) for item in text.split(",")]


def number_list(flag: str, kind: type, valid: Callable[[float], bool], must: str) -> Callable[[str], list]:
    """The parser of a flag that takes one number or a comma-separated list of candidates: each of
    ``kind`` (float or int) and ``valid``; otherwise a one-line error that the flag ``must`` be ..."""
    def parse(text: str) -> list:
        try:
            values = [kind(item) for item in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes {'whole ' if kind is int else ''}numbers, "
                                             f"not {text!r}") from None
        if not all(valid(v) for v in values):
            raise argparse.ArgumentTypeError(f"{flag} must be {must}, not {text}")
        return values

    return parse


def fractions(flag: str) -> Callable[[str], list[float]]:
    """One number in [0, 1) or a comma-separated list of candidates."""
    return number_list(flag, float, lambda v: 0 <= v < 1, "in [0, 1)")


def counts(flag: str) -> Callable[[str], list[int]]:
    """One positive whole number or a comma-separated list of candidates."""
    return number_list(flag, int, lambda v: v > 0, "positive")


def main(argv: list[str] | None = None) -> None:
    from vaelab.data import load_grey
    from vaelab.evaluation import conditional_agreement, knn_judge
    from vaelab.experiments.semisupervised import classifier_curve, m1_features, m2_figures
    from vaelab.experiments.study import Study
    from vaelab.experiments.executors import add_executor_arguments, executor_from_arguments
    from vaelab.experiments.units import Unit, UnitStore
    from vaelab.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="MNIST .npz or IDX directory")
    parser.add_argument("--m1-run", type=Path, required=True, help="study run directory holding (or to hold) M1")
    parser.add_argument("--m1-latent", type=int, default=200)
    parser.add_argument("--m1-hidden", help="M1's hidden layers, e.g. 600,600 (the paper's); default: the config's")
    parser.add_argument("--m1-config", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "seed.toml")
    parser.add_argument("--m1-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of M1's config, e.g. train.kl_warmup=100 (repeatable)")
    parser.add_argument("--labels", default="100,600,1000,3000")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1 of every model")
    parser.add_argument("--m2-seeds", type=int, help="M2 on pixels costs ~10x M1+M2: fewer seeds for it")
    parser.add_argument("--models", default="m2,m1m2")
    parser.add_argument("--m2-epochs", type=counts("--m2-epochs"), default=[20],
                        help="M2's epochs; a comma-separated list: candidates, see --choose")
    parser.add_argument("--m1m2-epochs", type=counts("--m1m2-epochs"), default=[100],
                        help="M1+M2's epochs; a comma-separated list: candidates, see --choose")
    parser.add_argument("--latent-dim", type=int, default=50, help="M2's z")
    parser.add_argument("--m1-active", type=float, default=0.01,
                        help="M1+M2 keeps the active latent units: variance of the means over training > this")
    parser.add_argument("--m1-inputs", choices=("means", "draws"), default="means",
                        help="M1+M2 trains on M1's latent means, or on a fresh draw from q(z1|x) each step "
                             "(as Kingma et al.'s code does)")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--m1m2-latent-dim", type=int, default=32)
    parser.add_argument("--m1m2-hidden", type=int, default=256)
    parser.add_argument("--labelled-share", type=fractions("--labelled-share"), default=[LABELLED_SHARE],
                        help="the labelled rows are repeated to this share of each epoch; 0: each once, as in "
                             f"Kingma et al.'s code (default {LABELLED_SHARE}); a comma-separated list: "
                             "candidates, see --choose")
    parser.add_argument("--alpha", default=alpha_list("50"), type=alpha_list,
                        help="weight of -log q(y|x) per labelled row: a number, 'paper': 0.1 x training rows / "
                             "labels, the per-row weight of Kingma et al.'s code (alpha = 0.1 N; 50 at 100 labels), "
                             "or 'Kxpaper'; a comma-separated list: candidates, see --choose")
    parser.add_argument("--ema", type=fractions("--ema"), default=[0.0],
                        help="evaluate the moving average of M2's weights with this decay per step (Polyak "
                             "averaging; 0: the last step's weights, default); a comma-separated list: the first "
                             "goes with the --alpha x --labelled-share candidates, and with --choose each further one "
                             "is then tried (seed 0) on the chosen alpha and share, and taken where its validation "
                             "error is lower (ties: the earlier)")
    parser.add_argument("--choose", action="store_true",
                        help="every run also measures its error on the validation digits (MNIST's last 10,000 "
                             "training digits, never trained on); with several candidates (--alpha x "
                             "--labelled-share), seed 0 of each runs first and, per model and label count, the "
                             "one with the lowest validation error (ties: the first in the order given) gets the "
                             "other seeds and the table's row; then each further --ema, then each further "
                             "--m2-epochs / --m1m2-epochs, is tried the same way on the setting chosen so far. "
                             "The test error plays no part in the choice")
    parser.add_argument("--train-limit", type=int, default=0, help="for smoke tests: fewer training rows")
    parser.add_argument("--m1-epochs", type=int, help="for smoke tests: M1 epochs (default: the config's)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="test error every N epochs (a learning curve; read, never used to stop), with "
                             "checkpoints from which a cut-short run goes on")
    parser.add_argument("--progress-only", action="store_true",
                        help="train nothing: the table from the learning curves so far (--eval-every), at the "
                             "last epoch every run of a model has reached")
    parser.add_argument("--curves", type=Path, help="write the learning curves here (JSON)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the training arithmetic (auto: measured per run, train.precision)")
    parser.add_argument("--cells", type=Path, help="keep each finished run here and reuse it")
    parser.add_argument("--results", type=Path)
    parser.add_argument("--figures", type=Path, help="write conditional sample grids of the M2 models here")
    add_executor_arguments(parser)
    args = parser.parse_args(argv)
    settings = [(text, rule, share) for text, rule in args.alpha for share in args.labelled_share]
    epoch_choices = {"m2": args.m2_epochs, "m1m2": args.m1m2_epochs}  # the first: each model's epochs
    # (alpha's text, alpha's rule, share, ema decay, epochs (0: the model's first), the tag of the runs' names)
    candidates = [(*setting, args.ema[0], 0, f"-{i}" if len(settings) > 1 else "")
                  for i, setting in enumerate(settings)]
    choosing = len(candidates) > 1 or len(args.ema) > 1 or any(len(e) > 1 for e in epoch_choices.values())
    if choosing and not args.choose:
        parser.error("several --alpha, --labelled-share, --ema or epoch values are candidates: add --choose")
    if choosing and args.progress_only:
        parser.error("--progress-only reads the learning curves of one setting: give one --alpha, "
                     "--labelled-share, --ema and epoch count")

    seed_cfg = load_config(args.m1_config, [f'data.path="{args.data}"', f"study.latent_dims=[{args.m1_latent}]",
                                            "train.progress=false", "anomaly.protocols=[]", "synthetic.types=[]",
                                            f"data.train_limit={args.train_limit}",
                                            *([f"train.epochs={args.m1_epochs}"] if args.m1_epochs else []),
                                            *([f"model.hidden_dims=[{args.m1_hidden}]"] if args.m1_hidden else []),
                                            *args.m1_set])
    data = load_grey(seed_cfg.data)
    x_train, y_train, x_test, y_test = data.train.x, data.train.y, data.test.x, data.test.y
    models = args.models.split(",")
    m1 = None
    if "m1m2" in models:
        study = Study(seed_cfg, args.m1_run)
        study.models()  # trains M1 if the run does not hold it yet
        m1_file, m1_fingerprint = study.model_files()[args.m1_latent]
        print(f"M1: {m1_features(str(m1_file), x_train, x_test[:1], args.m1_active).n_active} of "
              f"{args.m1_latent} latent units active", flush=True)
        m1 = {"fingerprint": m1_fingerprint, "active": args.m1_active, "file": str(m1_file),
              **({"draws": True} if args.m1_inputs == "draws" else {})}  # means: the fingerprints as before
    rows: dict[tuple[str, int], list[float]] = {}
    seconds: dict[str, float] = {m: 0.0 for m in models}
    m2_files: dict[int, Path] = {}
    store = UnitStore(args.cells or Path(tempfile.mkdtemp(prefix="ssl_mnist-")), say=None,
                      executor=executor_from_arguments(args))
    planned: list[tuple[str, int, int, Unit]] = []
    progress = store.root.resolve() / "progress"  # checkpoints and curves, where every worker on this machine finds them
    m2_cfg = ModelConfig(name="m2", latent_dim=args.latent_dim, hidden_dims=(args.hidden,), n_classes=10)
    m1m2_cfg = ModelConfig(name="m2", latent_dim=args.m1m2_latent_dim, hidden_dims=(args.m1m2_hidden,), n_classes=10)
    seeds = {"m2": args.m2_seeds or args.seeds, "m1m2": args.seeds}

    def plan(model: str, n_labels: int, seed: int,
             candidate: tuple[str, Callable[[int, int], float], float, float, int, str]) -> Unit:
        _, alpha, share, ema, epochs, tag = candidate
        name = f"{model}-{n_labels}-seed{seed}{tag}"
        pixels = model == "m2"
        return Unit(name, "vaelab.experiments.semisupervised:run_classifier",
                    {"config": {"data": dataclasses.asdict(seed_cfg.data)}, "labels": n_labels, "seed": seed,
                     "model": Config(model=dataclasses.replace(
                         m2_cfg if pixels else m1m2_cfg, alpha=alpha(len(x_train), n_labels))).to_dict()["model"],
                     "epochs": epochs or epoch_choices[model][0],
                     "likelihood": "bernoulli" if pixels else "gaussian", "binarize": pixels,
                     **({"labelled_share": share} if share != LABELLED_SHARE else {}),
                     **({"ema": ema} if ema else {}),  # without: the fingerprints as before
                     **({"eval_every": args.eval_every} if args.eval_every else {}),
                     **({"validation": True} if args.choose else {}),
                     "m1": None if pixels else {k: m1[k] for k in ("fingerprint", "active", "draws") if k in m1}},
                    outputs=(f"{name}.safetensors",) if pixels else (),
                    runtime={**({} if pixels else {"m1_file": m1["file"]}),
                             **({"precision": args.precision} if args.precision != "auto" else {}),
                             **({"progress": str(progress)} if args.eval_every else {})})

    label_list = [int(v) for v in args.labels.split(",")]
    chosen = {(model, n): candidates[0] for model in models for n in label_list}
    trials: list[tuple[str, int, tuple, Unit]] = []  # seed 0 of every candidate, when there is a choice
    validation: dict[str, float] = {}  # their validation errors (%), by unit name

    def try_further(variants: Callable[[str, tuple], list[tuple]]) -> None:
        """One step of the rule: seed 0 of each variant of every setting chosen so far, then per model and
        label count the lowest validation error among the setting and its variants (ties: the earlier)."""
        if not any(variants(model, base) for (model, _), base in chosen.items()):
            return
        tried = [(model, n, c, plan(model, n, 0, c)) for (model, n), base in chosen.items()
                 for c in [base, *variants(model, base)]]
        store.run_all([unit for *_, unit in tried])  # the settings chosen before: kept, not retrained
        trials.extend(trial for trial in tried if trial[3].name not in validation)
        validation.update({u.name: store.result(u)["val_error"] for *_, u in tried})
        for key in chosen:  # tried holds each setting before its variants: ties keep the setting
            options = [(c, u) for m, nn, c, u in tried if (m, nn) == key]
            chosen[key] = min(options, key=lambda option: validation[option[1].name])[0]

    if choosing:
        try_further(lambda model, base: candidates[1:])  # every candidate against the first
        # then each further --ema on the chosen alpha and share, then each further epoch count
        try_further(lambda model, base: [(*base[:3], decay, 0, f"{base[5]}-ema{decay:g}") for decay in args.ema[1:]])
        try_further(lambda model, base: [(*base[:4], e, f"{base[5]}-e{e}") for e in epoch_choices[model][1:]])
    for seed in range(max(seeds[m] for m in models)):  # seeds outermost: a cut-short run has every label count
        for n_labels in label_list:
            for model in (m for m in models if seed < seeds[m]):
                planned.append((model, n_labels, seed, plan(model, n_labels, seed, chosen[(model, n_labels)])))
    if not args.progress_only:
        store.run_all([unit for *_, unit in planned])  # on the executor the flags name
    curves = {unit.name: classifier_curve(unit, store.root) for *_, unit in planned}
    if args.progress_only:  # each model's runs at the last epoch all of them have reached
        reached = {m: min((curves[u.name][-1][0] if curves[u.name] else 0) for mm, *_, u in planned if mm == m)
                   for m in models}
        for model, n_labels, seed, unit in planned:
            if reached[model]:
                rows.setdefault((model, n_labels), []).append(dict(curves[unit.name])[reached[model]])
        epochs_shown = {m: f"{reached[m]} epochs (the last that all its runs reached)" for m in models}
    else:
        epochs_shown = {m: f"{e[0]} epochs" if len(e) == 1 else f"{' or '.join(map(str, e))} epochs (chosen below)"
                        for m, e in epoch_choices.items()}
        for model, n_labels, seed, unit in planned:
            error = store.result(unit)["error"]
            seconds[model] += store.record(unit)["seconds"]
            rows.setdefault((model, n_labels), []).append(error)
            if model == "m2":
                m2_files[n_labels] = store.root / unit.outputs[0]
            val_error = store.result(unit).get("val_error")
            print(f"{model} labels={n_labels} seed={seed}: test error {error:.2f}%"
                  + (f", validation {val_error:.2f}%" if val_error is not None else "")
                  + f" ({store.record(unit)['seconds']:.0f} s)", flush=True)
    label_counts = sorted({n for _, n in rows})
    fmt = lambda v: f"{np.mean(v):.2f}" + (f" ± {np.std(v):.2f}" if len(v) > 1 else "")  # noqa: E731
    runs = ([f"M2 {epochs_shown['m2']} on pixels"] if "m2" in models else []) + (
        [f"M1+M2 {epochs_shown['m1m2']} on the active latent "
         f"{'codes (a fresh draw from q(z1|x) each step)' if args.m1_inputs == 'draws' else 'means'} "
         f"of a {args.m1_latent}-d VAE with hidden "
         f"layers {list(seed_cfg.model.hidden_dims)} (M1)"]
        if "m1m2" in models else [])
    m1m2_size = f"M1+M2's M2: latent {args.m1m2_latent_dim}, hidden {args.m1m2_hidden}" if "m1m2" in models else ""
    longer = ", then the epochs" if any(len(epoch_choices[m]) > 1 for m in models) else ""
    if len(candidates) > 1:
        runs.append("alpha and the labelled rows' share chosen per label count on the validation digits"
                    + (", then the weights' averaging" if len(args.ema) > 1 else "") + longer
                    + " (below)" + (f"; {m1m2_size}" if m1m2_size else ""))
    else:
        (_, alpha, share, ema, _, _), = candidates
        alphas = ", ".join(f"{n}: {alpha(len(x_train), n):.3g}" for n in sorted({n for _, n, *_ in planned}))
        runs.append(f"alpha per labelled row ({alphas}), {share_text(share)}"
                    + (f", the weights' averaging chosen on the validation digits among {', '.join(map(weights_text, args.ema))} (below)"
                       if len(args.ema) > 1 else f", {weights_text(ema)}")
                    + (f"{longer} chosen on the validation digits (below)" if longer else "")
                    + (f"; {m1m2_size}" if m1m2_size else ""))
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
        judge = knn_judge(x_train, y_train)
        lines += ["", "M2 conditional samples E[x|y=c, z] that a 3-nearest-neighbour classifier of the training "
                  "digits puts in class c (last seed; 10% = the decoder ignores y): " + ", ".join(
                      f"{n} labels {100 * conditional_agreement(load_model(f)[0], judge=judge):.0f}%"
                      for n, f in sorted(m2_files.items()))]
    lines += choice_lines(trials, chosen, validation, len(x_train))
    lines += curve_lines(planned, curves)
    lines.append("")
    if not args.progress_only:
        lines.append("Training seconds in all: " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items()))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        write_text(args.results, text)
    if args.curves:
        write_json(args.curves, {name: curve for name, curve in curves.items() if curve})
    if args.figures and m2_files:
        from vaelab import plots

        m2, _ = load_model(m2_files[max(m2_files)])
        for file, fig in m2_figures(m2, x_test, y_test, tuple(data.image_shape[-2:])).items():
            plots.save_figure(fig, args.figures / file)


def share_text(share: float) -> str:
    return f"labelled rows repeated to {share:.0%} of each epoch" if share else "each labelled row once an epoch"


def weights_text(ema: float) -> str:
    return f"weights averaged (decay {ema:g} per step)" if ema else "the last step's weights"


def choice_lines(trials: list, chosen: dict, validation: dict[str, float], rows: int) -> list[str]:
    """The choice between candidate settings (``--choose``): each candidate's validation error (seed 0) and
    the one taken, per model and label count."""
    if not trials:
        return []
    lines = ["", "The choice (seed 0 of each candidate; validation error on MNIST's last 10,000 training digits, "
                 "never trained on; the test error plays no part):", "",
             "| model | labels | alpha | alpha per labelled row | labelled rows | weights | epochs | "
             "validation error (%) | chosen |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, n, candidate, unit in sorted(trials, key=lambda trial: (trial[1], trial[0])):  # stable: as tried
        text, alpha, share, ema, _, _ = candidate
        lines.append(f"| {model.upper().replace('M1M2', 'M1+M2')} | {n} | {text} | {alpha(rows, n):.3g} | "
                     f"{share_text(share)} | {weights_text(ema)} | {unit.params['epochs']} | "
                     f"{validation[unit.name]:.2f} | "
                     f"{'yes' if chosen[(model, n)] is candidate else ''} |")
    return lines


def curve_lines(planned: list, curves: dict[str, list[tuple[int, float]]]) -> list[str]:
    """The learning curves as a table: mean test error (%) over seeds at each epoch measured, one column
    per model and label count (where every seed has that epoch)."""
    by_column: dict[tuple[str, int], list[dict[int, float]]] = {}
    for model, n_labels, _, unit in planned:
        by_column.setdefault((model, n_labels), []).append(dict(curves.get(unit.name, [])))
    columns = {c: runs for c, runs in by_column.items() if all(runs)}
    if not columns:
        return []
    epochs = sorted({e for runs in columns.values() for run in runs for e in run})
    lines = ["", "Learning curves: mean test error (%) over seeds, measured every few epochs (never used to stop "
             "or to choose)", "",
             "| epoch | " + " | ".join(f"{m.upper().replace('M1M2', 'M1+M2')} {n}" for m, n in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for e in epochs:
        cells = [f"{np.mean([run[e] for run in runs]):.2f}" if all(e in run for run in runs) else ""
                 for runs in columns.values()]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()
