"""Training a model into a directory: refuse, resume or continue an existing run."""

import json

import pytest

from tests.conftest import tiny_config
from vaelab.errors import VaelabError
from vaelab.experiments.training_run import CHECKPOINT_FILE, MODEL_FILE, train_model
from vaelab.models import load_model


def test_continue_resumes_the_same_model_and_starts_afresh_for_another(tmp_path):
    out = tmp_path / "m"
    first = train_model(tiny_config(), out)
    first_history = json.loads((out / "history.json").read_text())
    with pytest.raises(VaelabError, match="already holds a trained run"):
        train_model(tiny_config(), out)
    longer = train_model(tiny_config(train={"epochs": 3}), out, existing="continue")
    assert longer.meta["metrics"]["epochs"] == 3
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]  # resumed: the first two epochs were kept
    assert history[:2] == first_history
    other = train_model(tiny_config(train={"lr": 3e-3}), out, existing="continue")
    assert other.meta["metrics"]["epochs"] == 2  # another model: trained afresh
    assert first.meta["train"]["lr"] != other.meta["train"]["lr"]
    assert load_model(out / MODEL_FILE)[1]["train"]["lr"] == 3e-3 and (out / CHECKPOINT_FILE).exists()


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(VaelabError, match="no checkpoint"):
        train_model(tiny_config(), tmp_path / "none", existing="resume")


def test_a_second_training_into_a_busy_directory_is_refused(tmp_path):
    """While another process trains into a directory (its lock held), training there is refused with one
    line and leaves the directory as it was (flock locks belong to an open file, so holding one here
    stands for another process)."""
    from vaelab.fileio import locked

    out = tmp_path / "run"
    out.mkdir()
    with locked(out) as mine:
        assert mine
        with pytest.raises(VaelabError, match="another vaelab process is training into this directory"):
            train_model(tiny_config(), out)
    assert list(out.iterdir()) == []
