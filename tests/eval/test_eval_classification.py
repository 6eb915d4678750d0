"""classification_report and write_confusion against scikit-learn definitions."""

import numpy as np

from glomkit.core.schemes import COARSE
from glomkit.eval.classification import classification_report, ggs_report, report_table, write_confusion


def test_report_perfect_and_binary_auc():
    y = [0, 0, 1, 1]
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    rep = classification_report(y, probs, ["a", "b"])
    assert rep["balanced_accuracy"] == 1.0 and rep["macro_f1"] == 1.0
    assert rep["macro_auc"] == rep["per_class"]["b"]["auc"] == 1.0
    assert rep["confusion"] == [[2, 0], [0, 2]]


def test_report_unbalanced_and_missing_class():
    y = [0, 0, 0, 1]
    probs = np.array([[0.9, 0.1, 0], [0.8, 0.2, 0], [0.2, 0.8, 0], [0.6, 0.4, 0]])  # class 2 absent
    rep = classification_report(y, probs, ["a", "b", "c"])
    assert rep["balanced_accuracy"] == (2 / 3 + 0) / 2
    assert rep["per_class"]["c"]["auc"] is None and rep["per_class"]["c"]["support"] == 0
    assert rep["confusion"][0] == [2, 1, 0] and rep["confusion"][1] == [1, 0, 0]
    report_table(rep)  # renders


def test_ggs_report_ignores_non_glomerular():
    y = [0, 1, 2, 2]  # normal, sclerosed, non_glomerular x2
    probs = np.array([[0.2, 0.1, 0.7], [0.05, 0.15, 0.8], [0.3, 0.3, 0.4], [0.1, 0.8, 0.1]])
    g = ggs_report(y, probs, COARSE)
    assert g["n"] == 2 and g["n_ggs"] == 1
    assert g["balanced_accuracy"] == 1.0 and g["auc"] == 1.0


def test_write_confusion(tmp_path):
    write_confusion(tmp_path / "c.png", tmp_path / "c.csv", [[3, 1], [0, 2]], ["x", "y"])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "c.csv").read_text().splitlines() == ["true\\pred,x,y", "x,3,1", "y,0,2"]
