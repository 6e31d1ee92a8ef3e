"""VAD metrics against scikit-learn and hand computations."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mmreason.metrics.anomaly import (anticipation_auc, anticipation_labels, average_precision, expand_snippets,
                                      frame_ap, frame_auc_macro, frame_auc_micro, gaussian_smooth, macro_auc_report,
                                      minmax_normalize, roc_auc, segment_max_pool)


def _random_videos(seed, n_videos=6):
    rng = np.random.default_rng(seed)
    scores, labels = [], []
    for v in range(n_videos):
        t = int(rng.integers(10, 40))
        y = np.zeros(t, dtype=int)
        if v % 3 != 2:  # every third video is all-normal
            a = int(rng.integers(0, t - 3))
            y[a:a + int(rng.integers(2, t - a + 1))] = 1
        s = rng.integers(0, 6, t) + 2.0 * y * rng.random(t)  # integer part forces ties
        scores.append(s)
        labels.append(y)
    return scores, labels


@pytest.mark.parametrize("seed", range(5))
def test_micro_auc_and_ap_equal_sklearn(seed):
    scores, labels = _random_videos(seed)
    s, y = np.concatenate(scores), np.concatenate(labels)
    assert frame_auc_micro(scores, labels) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert frame_ap(scores, labels) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_roc_auc_and_ap_with_heavy_ties():
    s = np.array([1, 1, 1, 0, 0, 2, 2, 1.0])
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert average_precision(s, y) == pytest.approx(average_precision_score(y, s))


@pytest.mark.parametrize("seed", range(3))
def test_macro_auc_skip_policy_is_mean_of_sklearn_per_video(seed):
    scores, labels = _random_videos(seed)
    expected = np.mean([roc_auc_score(y, s) for s, y in zip(scores, labels) if 0 < y.sum() < y.size])
    assert frame_auc_macro(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_macro_auc_single_class_policies():
    scores = [np.array([0.1, 0.9, 0.2]), np.array([0.5, 0.4])]
    labels = [np.array([0, 1, 0]), np.array([0, 0])]
    assert frame_auc_macro(scores, labels, "skip") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="video 1"):
        frame_auc_macro(scores, labels, "error")
    with pytest.raises(ValueError, match="single_class"):
        frame_auc_macro(scores, labels, "pad")


def test_macro_auc_pad_all_hand_case():
    """``pad_all`` (Accurate-Interpretable-VAD's macro_auc): every video gets a normal frame scored 0 and an abnormal
    frame scored the float maximum. Hand counts of (positive > negative) pairs, ties 1/2."""
    mixed = (np.array([0.5, 0.3, 0.9, 0.1]), np.array([0, 1, 1, 0]))
    # unpadded: positives {0.3, 0.9} vs negatives {0.5, 0.1}: 3 of 4 pairs -> 0.75
    # padded: positives {0.3, 0.9, MAX} vs negatives {0, 0.5, 0.1}: 2 + 3 + 3 of 9 pairs -> 8/9
    all_normal = (np.array([0.7, 0.2]), np.array([0, 0]))     # MAX beats {0, 0.7, 0.2} -> 1
    all_abnormal = (np.array([0.4, 0.6]), np.array([1, 1]))   # {0.4, 0.6, MAX} all beat {0} -> 1
    tie = (np.array([0.0, 0.5]), np.array([1, 0]))           # pos {0, MAX} vs neg {0, 0.5}: 0.5 + 0 + 1 + 1 -> 2.5/4
    videos = [mixed, all_normal, all_abnormal, tie]
    s, y = [v[0] for v in videos], [v[1] for v in videos]
    assert frame_auc_macro(s, y, "pad_all") == pytest.approx((8 / 9 + 1 + 1 + 0.625) / 4, abs=1e-12)
    assert frame_auc_macro(s, y, "skip") == pytest.approx((0.75 + 0.0) / 2, abs=1e-12)  # tie video unpadded: 0
    # the peers' own formula: sklearn on [0, s, float max] vs [0, y, 1], averaged over all videos
    import sys
    peers = np.mean([roc_auc_score(np.r_[0, yv, 1], np.r_[0, sv, sys.float_info.max]) for sv, yv in zip(s, y)])
    assert frame_auc_macro(s, y, "pad_all") == pytest.approx(peers, abs=1e-12)
    report = macro_auc_report(s, y, "pad_all")
    assert report == {"auc_macro": pytest.approx(peers), "auc_macro_pad_all": pytest.approx(peers),
                      "auc_macro_skip": pytest.approx(0.375)}
    assert "auc_macro_skip" not in macro_auc_report([all_normal[0]], [all_normal[1]], "pad_all")


def test_metric_input_errors():
    with pytest.raises(ValueError, match="one class"):
        roc_auc([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="length"):
        frame_auc_micro([np.zeros(3)], [np.zeros(4)])
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0.1, 0.2], [0, 2])


def test_anticipation_labels_hand_cases():
    assert anticipation_labels([0, 0, 0, 1, 0], 2).tolist() == [0, 1, 1]
    assert anticipation_labels([1, 0, 0, 0], 1).tolist() == [0, 0, 0]  # the current frame does not count
    assert anticipation_labels([0, 0, 1, 0, 0, 0, 1], 3).tolist() == [1, 1, 0, 1]
    assert anticipation_labels([0, 1], 3).tolist() == []


def test_anticipation_auc_uses_future_window():
    labels = [np.array([0, 0, 0, 1, 1, 0, 0, 0])]
    g = anticipation_labels(labels[0], 2)  # [0, 1, 1, 1, 0, 0]
    scores_full = [np.array([0.0, 0.9, 0.8, 0.7, 0.1, 0.2, 0.5, 0.5])]  # last 2 have no label and are cut
    assert anticipation_auc(scores_full, labels, 2) == pytest.approx(roc_auc_score(g, scores_full[0][:6]))
    assert anticipation_auc([scores_full[0][:6]], labels, 2) == pytest.approx(1.0)


def test_postprocessing_hand_cases():
    assert minmax_normalize([2.0, 4.0, 3.0]).tolist() == [0.0, 1.0, 0.5]
    assert minmax_normalize([3.0, 3.0]).tolist() == [0.0, 0.0]
    assert segment_max_pool([1, 5, 2, 0, 3, 1, 7], 3).tolist() == [5, 5, 5, 3, 3, 3, 7]
    assert segment_max_pool([1, 5, 2], 1).tolist() == [1, 5, 2]
    assert expand_snippets([1, 2], 3).tolist() == [1, 1, 1, 2, 2, 2]
    assert expand_snippets([1, 2], 3, num_frames=8).tolist() == [1, 1, 1, 2, 2, 2, 2, 2]
    assert expand_snippets([1, 2], 3, num_frames=4).tolist() == [1, 1, 1, 2]


def test_gaussian_smoothing():
    x = np.zeros(21)
    x[10] = 1.0
    y = gaussian_smooth(x, 2.0)
    assert y.sum() == pytest.approx(1.0, abs=1e-6) and y.argmax() == 10 and y[10] < 0.25
    assert np.allclose(y, y[::-1])  # symmetric kernel
    assert np.array_equal(gaussian_smooth(x, 0), x)
