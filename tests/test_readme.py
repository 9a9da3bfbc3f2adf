"""The README's Python quickstart runs as written (on a small array and a DataFrame)."""

import re
from pathlib import Path

import numpy as np
import pandas as pd

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_python_quickstart_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text.split("## Python quickstart\n", 1)[1].splitlines()
    block = []
    for line in section:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    code = "\n".join(block)
    assert "make_detector" in code and "score_samples" in code
    code = re.sub(r"epochs=\d+", "epochs=2", code)
    rng = np.random.default_rng(0)
    monkeypatch.chdir(tmp_path)
    for X_train in (rng.normal(size=(200, 4)), pd.DataFrame(rng.normal(size=(200, 4)), columns=list("abcd"))):
        scope = {"X_train": X_train, "X_test": np.vstack([rng.normal(size=(20, 4)), rng.normal(size=(5, 4)) * 6])}
        exec(code, scope)  # noqa: S102 - the project's own README
        assert scope["scores"].shape == (25,) and set(scope["labels"]) <= {1, -1}
        assert scope["p_values"].shape == (25,) and scope["why"].shape == (25, 4)
        assert (tmp_path / "detector.safetensors").exists()
