"""One self-contained HTML report per run, built from metrics.json and figures/ alone."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError
from vaelab.evaluation import ANOMALY_GROUPS
from vaelab.experiments.anomaly_tables import RAW, latent_label
from vaelab.experiments.synthetic_tables import FAMILIES
from vaelab.fileio import write_text

SECTION_ORDER = ("Training", "Decoder samples", "Likelihood ranking", "Latent space", "Anomaly detection",
                 "Synthetic anomalies", "Semi-supervised")
SECTION_TEXT = {
    "Training": "One VAE per latent size, trained with the single-sample ELBO (Adam).",
    "Decoder samples": "What each model generates: decoder means for codes drawn from the prior.",
    "Likelihood ranking": "Test points ranked by their likelihood under each model, over the whole "
                          "test set (global) and within each class (conditional).",
    "Latent space": "Where the encoder puts the test points, next to a map of the raw data.",
    "Anomaly detection": "Each class in turn as the anomaly (leave-one-class-out) or as the only normal class "
                         "(one-vs-rest); AUROC of finding the anomalies in the test set. One VAE per class and "
                         "latent size gives the likelihood scores (vae-*) and the latent codes (latent-*); raw-* "
                         "use the pixels; fusion-* combine log p(x) with a second score.",
    "Synthetic anomalies": "Anomalies of known types injected into test images, scored with the study's models "
                           "and the raw-pixel baselines: which detector sees which type, and what the latent "
                           "codes say about the type.",
    "Semi-supervised": "M2 (Kingma et al. 2014): a classifier q(y|x) and a conditional VAE trained on a few "
                       "labelled and many unlabelled rows; and the semi-supervised anomaly detector as "
                       "labelled anomalies are added (Deep SAD protocol).",
}
STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}h1{margin-bottom:0}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f3f3f3}
figure{margin:1.5em 0}figcaption{font-size:.9em;color:#444;max-width:900px}img{max-width:100%}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.85em}.muted{color:#666;font-size:.9em}"""


def _img(run_dir: Path, file: str) -> str:
    path = run_dir / file
    if not path.exists():
        raise VaelabError(f"figure {file} listed in metrics.json is missing", run_dir)
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(file)}" src="data:image/png;base64,{data}">'


def _summary_table(study: dict[str, Any]) -> str:
    first = next(iter(study.values()))
    rank = html.escape(f"test {first['rank_score']} (K={first['rank_samples']})")
    head = ("<tr><th>latent size</th><th>epochs</th><th>train time (s)</th><th>val ELBO</th>"
            f"<th>test ELBO</th><th>{rank}</th></tr>")
    rows = "".join(f"<tr><td>{d}</td><td>{m['epochs']}</td><td>{m['train_seconds']:.0f}</td>"
                   f"<td>{m['val_elbo']:.2f}</td><td>{m['test_elbo']:.2f}</td><td>{m['test_rank']:.2f}</td></tr>"
                   for d, m in study.items())
    return f"<table>{head}{rows}</table>"


def _anomaly_table(anomaly: dict[str, Any]) -> str:
    """Mean AUROC over classes: one table per protocol, detectors by latent size."""
    out = []
    for protocol in dict.fromkeys(r["protocol"] for r in anomaly["summary"]):
        rows = [r for r in anomaly["summary"] if r["protocol"] == protocol]
        dims = sorted({r["latent_dim"] for r in rows})
        cells: dict[str, dict[int, float]] = {}
        for r in rows:
            cells.setdefault(r["detector"], {})[r["latent_dim"]] = r["mean_auroc"]
        head = "".join(f"<th>{'raw' if d == RAW else f'latent {latent_label(d)}'}</th>" for d in dims)
        body = "".join(f"<tr><td style='text-align:left'>{html.escape(det)}</td>"
                       + "".join(f"<td>{v[d]:.3f}</td>" if d in v else "<td></td>" for d in dims) + "</tr>"
                       for det, v in cells.items())
        out.append(f"<p>{html.escape(protocol)}: mean AUROC over classes {anomaly['classes']}</p>"
                   f"<table><tr><th>detector</th>{head}</tr>{body}</table>")
    return "".join(out)


def _synthetic_tables(synthetic: dict[str, Any]) -> str:
    """Best AUROC per type and detector family; the linear probe's accuracy."""
    def cell(b: dict[str, Any], family: str) -> str:
        if family not in b:
            return "<td></td>"
        f = b[family]
        size = f" z{f['latent_dim']}" if f["latent_dim"] else ""
        return f"<td>{f['auroc']:.3f} <span class='muted'>{html.escape(f['detector'])}{size}</span></td>"

    families = FAMILIES
    head = "<tr><th>severity</th><th>type</th>" + "".join(f"<th>best {f}-*</th>" for f in families) + "</tr>"
    body = "".join(f"<tr><td>{b['severity']:g}</td><td style='text-align:left'>{html.escape(b['type'])}</td>"
                   + "".join(cell(b, f) for f in families) + "</tr>" for b in synthetic["best"])
    probe = "".join(f"<tr><td>{p['severity']:g}</td><td style='text-align:left'>{html.escape(p['features'])}</td>"
                    f"<td>{p['accuracy']:.3f}</td><td>{p['chance']:.3f}</td></tr>" for p in synthetic["probe"])
    return (f"<p>Best AUROC per anomaly type, by detector family</p><table>{head}{body}</table>"
            "<p>Linear probe: cross-validated accuracy of predicting the anomaly type (normal included) from "
            "the features</p><table><tr><th>severity</th><th>features</th><th>accuracy</th><th>chance</th></tr>"
            f"{probe}</table>")


def _semisupervised_table(semi: dict[str, Any]) -> str:
    curve = semi["curve"]
    head = "".join(f"<th>{n}</th>" for n in curve["counts"])
    rows = "".join(f"<tr><td>{label}</td>" + "".join(f"<td>{v:.3f}</td>" for v in curve["m2" + key])
                   + f"<td>{curve['unsupervised' + key]:.3f}</td></tr>"
                   for key, label in ANOMALY_GROUPS.items() if "m2" + key in curve)
    agreement = (f" Conditional samples of class c that a 3-nearest-neighbour classifier of the training "
                 f"digits also calls c: {100 * semi['agreement']:.0f}% (10% would mean the decoder ignores "
                 f"the class).") if "agreement" in semi else ""
    return (f"<p>M2 with {semi['labels']} labels: test error {100 * semi['error_rate']:.2f}%.{agreement}</p>"
            f"<p>Test AUROC of the SemiSupervisedDetector, class {semi['normal_class']} normal, by number of "
            "labelled anomalies; last column: the unsupervised vae-iwae detector</p>"
            f"<table><tr><th>test anomalies</th>{head}<th>vae-iwae</th></tr>{rows}</table>")


def build_report(run_dir: str | Path) -> str:
    """The report's HTML for ``run_dir`` (figures embedded, so it opens offline)."""
    run_dir = Path(run_dir)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except FileNotFoundError:
        raise VaelabError("no metrics.json: not a finished run directory", run_dir) from None
    except json.JSONDecodeError as exc:
        raise VaelabError(f"metrics.json is not valid JSON ({exc})", run_dir) from None
    except UnicodeDecodeError:
        raise VaelabError("metrics.json is not UTF-8 text", run_dir) from None
    except NotADirectoryError:
        raise VaelabError("not a run directory", run_dir) from None
    if not isinstance(metrics, dict):
        raise VaelabError("metrics.json is not a JSON object: not a vaelab run's metrics", run_dir)
    config = (run_dir / "config.toml").read_text() if (run_dir / "config.toml").exists() else ""
    run, data = metrics.get("run", {}), metrics.get("data", {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>vaelab report: {html.escape(run_dir.name)}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>vaelab report: {html.escape(run_dir.name)}</h1>",
             f"<p class='muted'>data {html.escape(str(data.get('name')))} ({data.get('n_train')} train / "
             f"{data.get('n_val')} validation / {data.get('n_test')} test rows, from "
             f"{html.escape(str(data.get('source')))}); finished {html.escape(str(run.get('finished')))}</p>",
             "<h2>Summary</h2>",
             "<p>Per latent size: validation and test ELBO and the test log-likelihood, all in nats per "
             "data point (higher is better).</p>",
             _summary_table(metrics["study"])]
    figures = metrics.get("figures", [])
    for section in SECTION_ORDER:
        items = sorted((f for f in figures if f["section"] == section), key=lambda f: (f["order"], f["file"]))
        if not items:
            continue
        parts.append(f"<h2>{section}</h2><p>{SECTION_TEXT[section]}</p>")
        if section == "Anomaly detection" and "anomaly" in metrics:
            parts.append(_anomaly_table(metrics["anomaly"]))
        if section == "Synthetic anomalies" and "synthetic" in metrics:
            parts.append(_synthetic_tables(metrics["synthetic"]))
        if section == "Semi-supervised" and "semisupervised" in metrics:
            parts.append(_semisupervised_table(metrics["semisupervised"]))
        for f in items:
            parts.append(f"<figure>{_img(run_dir, f['file'])}<figcaption>{html.escape(f['caption'])}"
                         f"</figcaption></figure>")
    stage_rows = "".join(f"<tr><td style='text-align:left'>{html.escape(k)}</td><td>{v:.1f}</td></tr>"
                         for k, v in run.get("stage_seconds", {}).items())
    total = sum(run.get("stage_seconds", {}).values())
    stage_rows += f"<tr><th style='text-align:left'>all stages</th><th>{total:.1f}</th></tr>"
    versions = ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items())
    parts += ["<h2>Run</h2>",
              f"<p>machine: {html.escape(str(run.get('machine')))}; device {html.escape(str(run.get('device')))}, "
              f"{run.get('torch_threads')} torch threads; {html.escape(versions)}</p>",
              f"<table><tr><th>stage</th><th>seconds</th></tr>{stage_rows}</table>",
              "<h2>Config</h2>", f"<pre>{html.escape(config)}</pre>", "</body></html>"]
    return "\n".join(parts)


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` into ``run_dir`` (atomically) and return its path."""
    run_dir = Path(run_dir)
    text = build_report(run_dir)
    write_text(run_dir / "report.html", text)
    return run_dir / "report.html"
