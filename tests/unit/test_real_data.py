"""Learning smoke tests on the real data sets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import read_text_rows, shared_file

from optim import OnlineLogisticRegression


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels > 0.5
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_adagrad_one_pass_on_a9a_beats_0_345() -> None:
    X, y = read_text_rows(shared_file("a9a", "a9a"))
    X_test, y_test = read_text_rows(shared_file("a9a", "a9a.t"))
    model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.1}, dim=X.shape[1])
    result = model.learn(X, y)
    assert result.log_loss < 0.345
    assert model.metrics.to_dict()["overall"]["log_loss"] == pytest.approx(result.log_loss)
    X_test.resize((X_test.shape[0], X.shape[1]))
    assert auc(model.decision_function(X_test), y_test) > 0.89


@pytest.mark.parametrize("optimizer", ["adagrad", "ftrl", "adam", "rmsprop", "nadam"])
def test_agaricus_is_learned(optimizer: str) -> None:
    X, y = read_text_rows(shared_file("agaricus", "agaricus.txt.train"))
    X_test, y_test = read_text_rows(shared_file("agaricus", "agaricus.txt.test"))
    dim = max(X.shape[1], X_test.shape[1])
    X.resize((X.shape[0], dim))
    X_test.resize((X_test.shape[0], dim))
    model = OnlineLogisticRegression({"name": optimizer}, dim=dim)
    for _ in range(3):
        model.partial_fit(X, y)
    assert auc(model.decision_function(X_test), y_test) > 0.99


def test_rcv1_vw_text_is_learned() -> None:
    X, y = read_text_rows(shared_file("rcv1", "rcv1_small.dat"), vw=True)
    X_test, y_test = read_text_rows(shared_file("rcv1", "rcv1_small_test.data"), vw=True)
    dim = max(X.shape[1], X_test.shape[1])
    X.resize((X.shape[0], dim))
    X_test.resize((X_test.shape[0], dim))
    model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.5}, dim=dim)
    first = model.learn(X, y).log_loss
    assert first < np.log(2)
    assert auc(model.decision_function(X_test), y_test) > 0.9
