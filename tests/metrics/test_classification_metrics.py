"""Top-k accuracy, episode accuracy and the few-shot 95% CI on hand cases and against scikit-learn."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import top_k_accuracy_score

from mmreason.metrics import episode_accuracy, label_ranks, mean_and_ci95, summarize_episodes, topk_accuracy


def test_topk_accuracy_hand_case():
    scores = np.array([
        [0.1, 0.5, 0.3, 0.1],  # label 1: rank 0
        [0.4, 0.1, 0.3, 0.2],  # label 2: rank 1
        [0.1, 0.2, 0.3, 0.4],  # label 0: rank 3
    ])
    labels = [1, 2, 0]
    assert label_ranks(scores, labels).tolist() == [0, 1, 3]
    assert topk_accuracy(scores, labels, (1, 2, 3, 4)) == {1: 1 / 3, 2: 2 / 3, 3: 2 / 3, 4: 1.0}
    assert topk_accuracy(scores, labels, 1) == {1: 1 / 3}
    assert topk_accuracy(torch.tensor(scores), torch.tensor(labels), (2,)) == {2: 2 / 3}


def test_topk_accuracy_matches_sklearn_without_ties():
    rng = np.random.default_rng(0)
    scores, labels = rng.standard_normal((500, 20)), rng.integers(0, 20, 500)
    got = topk_accuracy(scores, labels, (1, 5, 10))
    for k in (1, 5, 10):
        assert got[k] == pytest.approx(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(20)))


def test_ties_follow_argmax():
    scores = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    labels = np.array([0, 1])
    assert topk_accuracy(scores, labels, (1, 2)) == {1: 0.5, 2: 1.0}
    assert episode_accuracy(scores, labels) == float(np.mean(scores.argmax(1) == labels))


def test_episode_accuracy():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.1, 0.2]])
    assert episode_accuracy(logits, torch.tensor([0, 1, 2, 2])) == 0.75


def test_mean_and_ci95_hand_case():
    values = [0.5, 0.7, 0.9, 0.7]
    mean, half = mean_and_ci95(values)
    # population std: sqrt((0.04 + 0 + 0.04 + 0) / 4) = sqrt(0.02)
    assert mean == pytest.approx(0.7)
    assert half == pytest.approx(1.96 * math.sqrt(0.02) / 2)
    _, half_sample = mean_and_ci95(values, ddof=1)
    assert half_sample == pytest.approx(1.96 * math.sqrt(0.08 / 3) / 2)
    assert mean_and_ci95(np.array([0.6])) == (0.6, 0.0)
    summary = summarize_episodes(values)
    assert summary["accuracy"] == pytest.approx(70.0) and summary["ci95"] == pytest.approx(100 * half)
    assert summary["episodes"] == 4


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        topk_accuracy(np.ones(3), [0, 1, 2])
    with pytest.raises(ValueError, match="labels"):
        topk_accuracy(np.ones((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="NaN"):
        topk_accuracy(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ValueError, match="no values"):
        mean_and_ci95([])
