"""Plain-text tables for the terminal, built from a run's metrics."""

from __future__ import annotations

from typing import Any


def study_table(metrics: dict[str, Any]) -> str:
    """Plain-text table of a study's per-latent results."""
    rows = metrics["study"]
    any_row = next(iter(rows.values()))
    rank = f"test {any_row['rank_score']}"
    lines = [f"{'latent':>6} {'epochs':>6} {'train s':>8} {'val ELBO':>9} {'test ELBO':>10} {rank:>14}"]
    for d, m in rows.items():
        lines.append(f"{d:>6} {m['epochs']:>6} {m['train_seconds']:>8.0f} {m['val_elbo']:>9.2f} "
                     f"{m['test_elbo']:>10.2f} {m['test_rank']:>14.2f}")
    return "\n".join(lines)
