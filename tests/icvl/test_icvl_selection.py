"""ICVL example selection: joint visual + textual scores match a hand computation, MMR picks as its formula says."""
from __future__ import annotations

import numpy as np
import pytest

from mmreason.methods.icvl.examples import BagOfWordsEmbedder, ExampleBank


def _bank(visual, text, clips=None):
    n = len(visual)
    return ExampleBank([f"k{i}" for i in range(n)], clips or [f"c{i}" for i in range(n)],
                       [[f"obs {i}"] for i in range(n)], [[f"fut {i}"] for i in range(n)],
                       np.asarray(visual, np.float32), np.asarray(text, np.float32))


# Three bank items in 2-d visual / 2-d text spaces; the query is visual (1, 0), text (0, 1).
VISUAL = [[1, 0], [0, 1], [1, 1]]      # cos to query: 1, 0, 1/sqrt(2)
TEXT = [[1, 0], [0, 1], [1, -1]]       # cos to query: 0, 1, -1/sqrt(2)


@pytest.mark.parametrize("lam, expected_order", [(1.0, [0, 2, 1]), (0.0, [1, 0, 2]), (0.7, [0, 1, 2]), (0.9, [0, 2, 1]),
                                                 (0.4, [1, 0, 2])])
def test_joint_scores_match_hand_computation(lam, expected_order):
    bank = _bank(VISUAL, TEXT)
    r = 1 / np.sqrt(2)
    by_hand = np.array([lam * 1 + (1 - lam) * 0, lam * 0 + (1 - lam) * 1, lam * r + (1 - lam) * (-r)])
    np.testing.assert_allclose(bank.scores([1, 0], [0, 1], lam)[0], by_hand, atol=1e-6)
    chosen = bank.select(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 3, visual_weight=lam)[0]
    assert [e.index for e in chosen] == expected_order
    np.testing.assert_allclose([e.score for e in chosen], by_hand[expected_order], atol=1e-5)


def test_selection_scales_and_excludes_the_query_clip():
    # the scores are cosines: scaling the query or bank vectors changes nothing
    bank = _bank(np.array(VISUAL) * [[3], [0.5], [7]], TEXT, clips=["a", "b", "a"])
    chosen = bank.select(np.array([[5.0, 0.0]]), np.array([[0.0, 2.0]]), 3, visual_weight=0.7, exclude_clips=["a"])[0]
    assert [e.index for e in chosen] == [1]           # items 0 and 2 are the query's own clip "a"
    assert chosen[0].score == pytest.approx(0.3, abs=1e-6)


def test_mmr_prefers_a_diverse_second_example():
    # item 1 nearly duplicates item 0; item 2 is less relevant but different
    visual = [[1, 0, 0], [0.98, 0.2, 0], [0.5, 0, 0.87]]
    text = [[1, 0], [1, 0.05], [0.7, 0.7]]
    bank = _bank(visual, text)
    q_v, q_t = np.array([0.9, 0, 0.45]), np.array([1.0, 0.3])
    rel = bank.scores(q_v, q_t, 0.5)[0]                        # [3]
    sim = bank.scores(bank.visual, bank.text, 0.5)             # [3, 3] joint item-item similarity
    plain = [e.index for e in bank.select(q_v, q_t, 2, visual_weight=0.5)[0]]
    assert plain == [0, 1]
    # MMR with mu = 0.5: first pick item 0; then gain_j = 0.5 rel_j - 0.5 sim[j, 0]
    assert rel[0] > rel[1] > rel[2]
    gains = 0.5 * rel - 0.5 * sim[:, 0]
    assert gains[2] > gains[1]                                  # the hand computation favours item 2
    # hand values: cos(v_q, v_0) = 0.9/sqrt(1.0125), cos(t_q, t_0) = 1/sqrt(1.09)
    assert rel[0] == pytest.approx(0.5 * 0.9 / np.sqrt(1.0125) + 0.5 / np.sqrt(1.09), abs=1e-6)
    picked = bank.select(q_v, q_t, 2, visual_weight=0.5, use_mmr=True, mmr_lambda=0.5, mmr_pool=2)[0]
    assert [e.index for e in picked] == [0, 2]
    # a bigger bank (far-away items outside the candidate pool) changes nothing
    far = _bank(visual + [[-1, 0, 0]] * 3, text + [[-1, 0]] * 3)
    assert [e.index for e in far.select(q_v, q_t, 2, visual_weight=0.5, use_mmr=True, mmr_pool=2)[0]] == [0, 2]
    # mu = 1 is plain relevance ranking
    assert [e.index for e in bank.select(q_v, q_t, 2, visual_weight=0.5, use_mmr=True, mmr_lambda=1.0)[0]] == [0, 1]


def test_bag_of_words_embedder_is_deterministic_and_word_based():
    emb = BagOfWordsEmbedder(64)
    a, b, c = emb.embed(["take knife, cut onion", "Cut onion. Take knife!", "wash pan"])
    assert np.dot(a, b) == pytest.approx(1.0)                   # same words, any order or case
    assert np.dot(a, c) < 0.75
    np.testing.assert_array_equal(emb.embed(["take knife"]), BagOfWordsEmbedder(64).embed(["take knife"]))
