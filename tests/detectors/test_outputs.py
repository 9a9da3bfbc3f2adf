"""The table `vaelab detect` writes: columns present only when their data is, top features per row."""

import numpy as np

from vaelab.detectors.outputs import score_table, top_features


def test_top_features_lists_the_largest_contributions_first():
    contributions = np.array([[0.1, 3.0, -1.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    assert top_features(contributions, ["a", "b", "c", "d"], 2) == ["b=3;d=2", "a=5;b=0"]


def test_the_table_has_each_optional_column_only_when_given():
    scores, preds = np.array([1.5, -2.0]), np.array([1, -1])
    assert score_table(scores, preds) == "row,score,prediction\n0,1.500000,1\n1,-2.000000,-1\n"
    text = score_table(scores, preds, np.array([0, 1]), np.array([0.5, 0.01]), {1: "a=3"})
    assert text.splitlines() == ["row,label,score,p_value,prediction,explanation", "0,0,1.500000,0.5,1,",
                                 "1,1,-2.000000,0.01,-1,a=3"]


def test_an_explanation_with_a_comma_stays_one_cell():
    import csv
    import io

    text = score_table(np.array([0.0]), np.array([-1]), explanations={0: 'a,b=1;"c"=2'})
    assert list(csv.reader(io.StringIO(text)))[1] == ["0", "0.000000", "-1", 'a,b=1;"c"=2']
