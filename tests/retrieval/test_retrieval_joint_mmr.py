"""Joint multi-space scoring and MMR re-ranking on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from mmreason.retrieval import cosine_similarity, joint_scores, mmr, mmr_embeddings, top_k_joint


def test_joint_scores_equal_the_hand_computed_weighted_sum():
    # visual: 2-d, text: 3-d; 2 queries, 3 bank items
    vq = np.array([[1.0, 0.0], [0.0, 2.0]])
    vb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    tq = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    tb = np.array([[0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    r2 = 1 / np.sqrt(2)
    cos_v = np.array([[1, 0, r2], [0, 1, r2]])
    cos_t = np.array([[1, 0, r2], [0, r2, 0.5]])
    np.testing.assert_allclose(cosine_similarity(vq, vb), cos_v, atol=1e-12)
    np.testing.assert_allclose(cosine_similarity(tq, tb), cos_t, atol=1e-12)
    spaces = {"visual": (vq, vb), "text": (tq, tb)}
    got = joint_scores(spaces, {"visual": 0.7, "text": 0.3})
    np.testing.assert_allclose(got, 0.7 * cos_v + 0.3 * cos_t, atol=1e-12)
    np.testing.assert_allclose(joint_scores(spaces), 0.5 * cos_v + 0.5 * cos_t, atol=1e-12)  # equal weights

    scores, idx = top_k_joint(spaces, {"visual": 0.7, "text": 0.3}, k=2)
    assert idx.tolist() == [[0, 2], [1, 2]]
    np.testing.assert_allclose(scores[1], [0.7 + 0.3 * r2, 0.7 * r2 + 0.15])


def test_joint_scores_reject_mismatched_inputs():
    a = np.eye(3)
    with pytest.raises(ValueError, match="do not match"):
        joint_scores({"visual": (a, a)}, {"text": 1.0})
    with pytest.raises(ValueError, match="dim"):
        joint_scores({"visual": (np.ones((1, 2)), a)})
    with pytest.raises(ValueError, match="similarity"):
        joint_scores({"visual": (a, a), "text": (a, a[:2])})


def test_mmr_skips_the_near_duplicate():
    # items 0 and 1 are near-duplicates with the top relevance; item 2 is different and less relevant
    rel = np.array([0.90, 0.89, 0.60, 0.30])
    sim = np.array([
        [1.00, 0.99, 0.10, 0.05],
        [0.99, 1.00, 0.12, 0.05],
        [0.10, 0.12, 1.00, 0.30],
        [0.05, 0.05, 0.30, 1.00],
    ])
    assert mmr(rel, sim, k=2, lambda_=0.5) == [0, 2]
    # hand computation of the second step: 0.5*0.89 - 0.5*0.99 = -0.05 < 0.5*0.6 - 0.5*0.1 = 0.25
    assert mmr(rel, sim, k=2, lambda_=1.0) == [0, 1]  # pure relevance keeps the duplicate
    # third step: item 3 gains 0.5*0.3 - 0.5*0.3 = 0 > item 1's 0.5*0.89 - 0.5*0.99 = -0.05
    assert mmr(rel, sim, k=4, lambda_=0.5) == [0, 2, 3, 1]
    assert mmr(rel, sim, k=10, lambda_=0.5)[:2] == [0, 2] and len(mmr(rel, sim, k=10)) == 4


def test_mmr_on_embeddings():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 16))
    items = np.stack([base[0], base[0] + 1e-3 * rng.standard_normal(16), base[1], base[2]])
    query = base[0] + 0.5 * base[1]
    picks = mmr_embeddings(query, items, k=2, lambda_=0.5)
    assert picks[0] in (0, 1) and picks[1] not in (0, 1)
    assert set(mmr_embeddings(query, items, k=2, lambda_=1.0)) == {0, 1}


def test_mmr_rejects_bad_shapes():
    with pytest.raises(ValueError, match="item_item_sim"):
        mmr(np.ones(3), np.eye(2), k=1)
    with pytest.raises(ValueError, match="lambda_"):
        mmr(np.ones(2), np.eye(2), k=1, lambda_=1.5)
