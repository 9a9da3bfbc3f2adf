"""Terminal tables from a run's metrics."""

from vaelab.report import study_table


def test_study_table_has_a_row_per_latent_size_with_its_numbers():
    row = {"epochs": 50, "train_seconds": 8.4, "val_elbo": -135.884, "test_elbo": -135.09, "test_rank": -132.861,
           "rank_score": "iwae"}
    lines = study_table({"study": {"3": row, "200": {**row, "test_rank": -110.8}}}).splitlines()
    assert "test iwae" in lines[0] and len(lines) == 3
    assert lines[1].split() == ["3", "50", "8", "-135.88", "-135.09", "-132.86"]
    assert lines[2].split()[0] == "200" and lines[2].split()[-1] == "-110.80"
