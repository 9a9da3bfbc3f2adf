"""Tables of the synthetic-anomaly benchmark: the best detector per type and family, the probe, the shifts."""

from __future__ import annotations

from typing import Any

# Detector families by registry-name prefix: VAE scores, corrected likelihoods, latent-space and
# raw-feature estimators, fusions.
FAMILIES = ("vae", "likelihood", "latent", "raw", "fusion")


def best_per_type(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per severity and type: the best detector of each family of :data:`FAMILIES`."""
    out = []
    for s in dict.fromkeys(r["severity"] for r in rows):
        for t in dict.fromkeys(r["type"] for r in rows):
            sub = [r for r in rows if r["severity"] == s and r["type"] == t]
            entry = {"severity": s, "type": t}
            for family in FAMILIES:
                fam = [r for r in sub if r["detector"].startswith(family + "-")]
                if fam:
                    b = max(fam, key=lambda r: r["auroc"])
                    entry[family] = {"detector": b["detector"], "latent_dim": b["latent_dim"], "auroc": b["auroc"]}
            out.append(entry)
    return out


def markdown(rows, probe, shift, types: list[str]) -> str:
    """Best AUROC per type and family, the probe and the shifts, as Markdown tables."""
    lines = ["### Best AUROC per anomaly type, by detector family", "",
             "| severity | type | " + " | ".join(f"{f}-*" for f in FAMILIES) + " |", "|---|---|" + "---|" * len(FAMILIES)]
    for b in best_per_type(rows):
        cell = lambda f: (f"{b[f]['auroc']:.3f} {b[f]['detector']}" + (f" z{b[f]['latent_dim']}"  # noqa: E731
                                                                        if b[f]["latent_dim"] else "")) if f in b else ""
        lines.append(f"| {b['severity']:g} | {b['type']} | " + " | ".join(cell(f) for f in FAMILIES) + " |")
    lines += ["", "### Linear probe: cross-validated accuracy of predicting the type (normal included)", "",
              "| severity | features | accuracy | chance |", "|---|---|---|---|"]
    lines += [f"| {p['severity']:g} | {p['features']} | {p['accuracy']:.3f} | {p['chance']:.3f} |" for p in probe]
    dims = sorted({r["latent_dim"] for r in shift})
    sevs = sorted({r["severity"] for r in shift})
    lines += ["", "### Latent mean shift from the normals (normal-spread units)", "",
              "| type | " + " | ".join(f"z{d} sev {s:g}" for d in dims for s in sevs) + " |",
              "|---|" + "---|" * (len(dims) * len(sevs))]
    for t in types:
        vals = [next(r["shift"] for r in shift if (r["type"], r["latent_dim"], r["severity"]) == (t, d, s))
                for d in dims for s in sevs]
        lines.append(f"| {t} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"
