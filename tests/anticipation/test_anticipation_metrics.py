"""Anticipation metrics against hand computations and scikit-learn (definitions: specs/anticipation_tal.md §1)."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mmreason.metrics.anticipation import (action_sequences, aued, average_precision, edit_distance,
                                           ego4d_lta_metrics, levenshtein, many_shot_actions, marginal_indexes,
                                           marginalize, rulstm_anticipation_metrics, softmax, topk_accuracy,
                                           topk_recall, verb_set_map, verb_set_scores)


# ------------------------------------------------------------------------------------------------ Ego4D ED

def test_levenshtein_hand_cases():
    assert levenshtein([1, 2, 3], [1, 2, 3]) == 0
    assert levenshtein([1, 2, 3], [1, 9, 3]) == 1          # one substitution
    assert levenshtein([1, 2, 3], [1, 3]) == 1             # one deletion
    assert levenshtein([], [4, 5]) == 2
    # A transposition costs 2 with plain Levenshtein (the official code), not 1 (Damerau).
    assert levenshtein([1, 2, 3, 4], [2, 1, 3, 4]) == 2
    assert levenshtein("kitten", "sitting") == 3


def test_edit_distance_min_over_k_divided_by_z():
    labels = np.array([[1, 2, 3, 4], [5, 5, 5, 5]])
    preds = np.array([
        [[1, 2, 3, 4], [9, 9, 9, 9]],          # sample 0: best candidate exact -> 0
        [[5, 6, 6, 5], [2, 1, 1, 1]],          # sample 1: best = 2 substitutions -> 2/4
    ])                                          # [N=2, K=2, Z=4]
    assert edit_distance(preds, labels) == pytest.approx((0 + 0.5) / 2)


def test_aued_prefixes_and_trapezoid():
    labels = np.array([[1, 2, 3]])
    preds = np.array([[[1, 9, 3]]])             # one candidate, one substitution at position 2
    # ED@1 = 0/1, ED@2 = 1/2, ED@3 = 1/3; AUED = trapz([0, .5, 1/3]) / (Z - 1) = (0.25 + 5/12) / 2
    res = aued(preds, labels)
    assert res["ED@1"] == 0.0
    assert res["ED@2"] == pytest.approx(0.5)
    assert res["ED@3"] == pytest.approx(1 / 3)
    assert res["AUED"] == pytest.approx((0.25 + 5 / 12) / 2)


def test_ego4d_lta_metrics_action_is_pair_encoding():
    num_nouns = 10
    verb_labels = np.array([[1, 2]])
    noun_labels = np.array([[3, 4]])
    verb_preds = np.array([[[1, 2]]])           # verbs right
    noun_preds = np.array([[[3, 7]]])           # second noun wrong
    res = ego4d_lta_metrics(verb_preds, noun_preds, verb_labels, noun_labels, num_nouns)
    assert res["verb_ED"] == 0.0
    assert res["noun_ED"] == pytest.approx(0.5)
    assert res["action_ED"] == pytest.approx(0.5)  # one of two (verb, noun) pairs wrong
    assert action_sequences([[2]], [[7]], num_nouns).tolist() == [[27]]


def test_ed_rejects_wrong_layout():
    with pytest.raises(ValueError, match=r"\[N, K, Z\]"):
        edit_distance(np.zeros((2, 3)), np.zeros((2, 3)))


# ------------------------------------------------------------------------------------------------ mAP

def test_average_precision_matches_sklearn_and_hand_case():
    # Hand case: scores .9 (+), .8 (-), .7 (+) -> precisions at positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    ap = average_precision(np.array([[0.9], [0.8], [0.7]]), np.array([[1], [0], [1]]))
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    rng = np.random.default_rng(0)
    scores = rng.random((50, 6))
    targets = rng.random((50, 6)) < 0.3
    ours = average_precision(scores, targets)
    ref = [average_precision_score(targets[:, c], scores[:, c]) for c in range(6)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_verb_set_map_masks_absent_classes_and_splits_freq_rare():
    targets = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)   # class 3 never present
    scores = np.array([[0.9, 0.1, 0.8, 0.99], [0.2, 0.7, 0.6, 0.99], [0.1, 0.8, 0.3, 0.99]])
    per_class = average_precision(scores, targets)
    res = verb_set_map(scores, targets, many_shot=[0, 3])
    assert res["mAP"] == pytest.approx(per_class[:3].mean())        # class 3 excluded (label mask)
    assert res["mAP_freq"] == pytest.approx(per_class[0])            # many-shot and present: class 0 only
    assert res["mAP_rare"] == pytest.approx(per_class[1:3].mean())


def test_verb_set_scores_from_k_by_z_answers_hand_case():
    # one sample, K = 2 sequences of Z = 3 verbs; -1 is padding
    preds = np.array([[[0, 0, 2], [2, 1, -1]]])
    freq = verb_set_scores(preds, num_verbs=4)                      # counts / (K * Z)
    np.testing.assert_allclose(freq, [[2 / 6, 1 / 6, 2 / 6, 0.0]])
    presence = verb_set_scores(preds, num_verbs=4, how="presence")  # share of sequences with the verb
    np.testing.assert_allclose(presence, [[0.5, 0.5, 1.0, 0.0]])
    # into the EK-55/EGTEA mAP: a sample whose answers name exactly its future verbs ranks them first
    targets = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=bool)
    answers = np.array([[[0, 2, 0]], [[1, 3, 3]]])                 # [N=2, K=1, Z=3]
    assert verb_set_map(verb_set_scores(answers, 4), targets)["mAP"] == pytest.approx(1.0)
    assert verb_set_map(verb_set_scores(answers[::-1], 4), targets)["mAP"] == pytest.approx(0.5)   # swapped answers
    with pytest.raises(ValueError, match=r"\[N, K, Z\]"):
        verb_set_scores(np.zeros((2, 3)), 4)


# ------------------------------------------------------------------------------------------------ RULSTM

def test_topk_accuracy_and_recall_hand_case():
    scores = np.array([[0.1, 0.5, 0.4],     # label 1: top-1 hit
                       [0.6, 0.3, 0.1],     # label 1: top-1 miss, top-2 hit
                       [0.2, 0.3, 0.5],     # label 0: miss even at top-2
                       [0.9, 0.05, 0.05]])  # label 0: hit
    labels = np.array([1, 1, 0, 0])
    assert topk_accuracy(scores, labels, (1, 2)) == pytest.approx([0.5, 0.75])
    # recall@1: class 1 -> 1/2, class 0 -> 1/2 -> mean 0.5; recall@2: class 1 -> 2/2, class 0 -> 1/2 -> 0.75
    assert topk_recall(scores, labels, k=1) == pytest.approx(0.5)
    assert topk_recall(scores, labels, k=2) == pytest.approx(0.75)
    # restricted to class 1 (EK-55 many-shot style); class 2 is requested but absent so it is ignored
    assert topk_recall(scores, labels, k=1, classes=[1, 2]) == pytest.approx(0.5)
    assert topk_recall(scores, labels, k=2, classes=[1]) == pytest.approx(1.0)


def test_recall_differs_from_accuracy_on_imbalanced_classes():
    scores = np.eye(3)[[0, 0, 0, 0, 1]]            # always predicts the majority class 0 except one sample
    labels = np.array([0, 0, 0, 1, 1])
    assert topk_accuracy(scores, labels, (1,))[0] == pytest.approx(4 / 5)
    assert topk_recall(scores, labels, k=1) == pytest.approx((1.0 + 0.5) / 2)


def test_marginalization_sums_action_probabilities():
    # actions: 0=(v0,n0) 1=(v0,n1) 2=(v1,n1); verb 2 has no action -> RULSTM gives it action 0's probability
    action_verbs, action_nouns = np.array([0, 0, 1]), np.array([0, 1, 1])
    probs = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(marginalize(probs, action_verbs), [[0.8, 0.2]])
    np.testing.assert_allclose(marginalize(probs, action_nouns), [[0.5, 0.5]])
    np.testing.assert_allclose(marginalize(probs, action_verbs, num_classes=3), [[0.8, 0.2, 0.5]])
    assert [i.tolist() for i in marginal_indexes(action_verbs, 3)] == [[0, 1], [2], [0]]


def test_many_shot_actions_verb_or_noun():
    av, an = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2])
    assert many_shot_actions(av, an, many_shot_verbs=[1], many_shot_nouns=[0]).tolist() == [0, 2]


def test_rulstm_report_marginalizes_and_indexes_times():
    rng = np.random.default_rng(1)
    av, an = np.repeat(np.arange(4), 2), np.tile(np.arange(2), 4)      # 8 actions = 4 verbs x 2 nouns
    scores = rng.standard_normal((6, 8, 8))
    labels = np.array([0, 1, 2, 3, 5, 7])
    scores[0, 0] = np.arange(8)                             # sample 0 at 2.0 s: its label (action 0) ranks last
    res = rulstm_anticipation_metrics(scores, labels, av, an)
    t = 4                                                   # tau_a = 1 s
    verb_scores = marginalize(softmax(scores[:, t]), av)
    assert res["verb_top1@1.0s"] == pytest.approx(100 * topk_accuracy(verb_scores, av[labels], (1,))[0])
    assert res["action_top1@1.0s"] == pytest.approx(100 * topk_accuracy(scores[:, t], labels, (1,))[0])
    # 8 actions, so top-5 can miss: sample 0 misses at 2.0 s
    top5 = [labels[i] in np.argsort(-scores[i, 0])[:5] for i in range(6)]
    assert not top5[0]
    assert res["action_top5@2.0s"] == pytest.approx(100 * np.mean(top5)) and res["action_top5@2.0s"] < 100
    # many-shot restriction changes the recall
    restricted = rulstm_anticipation_metrics(scores, labels, av, an, recall_classes={"action": [0]})
    assert restricted["action_mt5r@1.0s"] == pytest.approx(
        100 * topk_recall(scores[:, t], labels, 5, [0]))
