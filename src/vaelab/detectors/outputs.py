"""What `vaelab detect` writes per row: the score table with p-values and explanations, as CSV text."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def top_features(contributions: np.ndarray, names: Sequence[str], k: int) -> list[str]:
    """For each row, its ``k`` largest contributions as ``name=value`` joined by ``;``, largest first."""
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    return [";".join(f"{names[j]}={row[j]:.4g}" for j in idx) for row, idx in zip(contributions, order)]


def _csv_cell(text: str) -> str:
    """``text`` as one CSV cell (quoted where it holds a comma, a quote or a line break)."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def score_table(scores: np.ndarray, predictions: np.ndarray, labels: np.ndarray | None = None,
                pvalues: np.ndarray | None = None, explanations: dict[int, str] | None = None) -> str:
    """CSV text: row, [label], score, [p_value], prediction, [explanation (rows in ``explanations``)]."""
    header = ["row", *(["label"] if labels is not None else []), "score", *(["p_value"] if pvalues is not None else []),
              "prediction", *(["explanation"] if explanations is not None else [])]
    lines = [",".join(header)]
    for i, (s, p) in enumerate(zip(scores, predictions)):
        cells = [str(i), *([str(int(labels[i]))] if labels is not None else []), f"{s:.6f}",
                 *([f"{pvalues[i]:.6g}"] if pvalues is not None else []), str(int(p)),
                 *([_csv_cell(explanations.get(i, ""))] if explanations is not None else [])]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"
