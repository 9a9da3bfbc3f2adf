"""`vaelab run` end to end on a tiny config, stage skipping, the report and the ranking."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from vaelab import ranking
from vaelab.cli import main


TINY_STUDY = ["--set", "train.progress=false", "--set", "train.epochs=1", "--set", "data.train_limit=600",
              "--set", "anomaly.classes=[1,7]", "--set", "anomaly.loco_epochs=1",
              "--set", "synthetic.types=[\"noise\",\"occlusion\"]", "--set", "synthetic.tsne_normals=100",
              "--set", "semisupervised.epochs=1", "--set", "semisupervised.latent_dim=2",
              "--set", "semisupervised.anomaly_labels=[0,5]",
              "--set", "model.hidden_dims=[32]", "--set", "study.latent_dims=[2,3]",
              "--set", "study.tsne_points=150", "--set", "score.iwae_samples=8",
              "--set", "study.n_prior_samples=16"]


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    assert main(["run", "--out", str(out), *TINY_STUDY]) == 0
    return out


def test_report_is_rebuilt_from_the_run_directory_alone(study_run, capsys):
    before = (study_run / "report.html").read_text()
    (study_run / "report.html").unlink()
    assert main(["report", str(study_run)]) == 0
    assert (study_run / "report.html").read_text() == before
    assert main(["report", str(study_run / "models")]) == 2
    assert "no metrics.json" in capsys.readouterr().err


