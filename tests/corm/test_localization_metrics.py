"""Per-frame mAP (Superevent/PDAN/MS-TCT APMeter) and MLAD's action-conditional metrics."""
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from mmreason.metrics.localization import (APMeter, conditional_masks, conditional_matrices, conditional_metrics,
                                           frame_average_precision, frame_map, sampled_25, sklearn_average_precision)


def _random_case(seed, n=300, c=6):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.2).astype(np.float32)
    labels[:, -1] = 0                                   # one class without positives -> AP 0
    scores = np.clip(labels * 0.3 + rng.random((n, c)), 0, None)   # continuous: no ties
    return scores, labels


@pytest.mark.parametrize("seed", [0, 1])
def test_ap_meter_equals_sklearn_on_classes_with_positives(seed):
    scores, labels = _random_case(seed)
    ap = frame_average_precision(scores, labels)
    for k in range(labels.shape[1] - 1):
        assert ap[k] == pytest.approx(average_precision_score(labels[:, k], scores[:, k]), abs=1e-12)
    assert ap[-1] == 0.0


def test_frame_map_reproduces_the_nonzero_class_mean():
    scores, labels = _random_case(3)
    ap = frame_average_precision(scores, labels)
    expected_nonzero = 100 * ap.sum() / np.count_nonzero(ap)          # PDAN/MS-TCT train.py
    assert frame_map(scores, labels) == pytest.approx(expected_nonzero)
    assert frame_map(scores, labels, nonzero_mean=False) == pytest.approx(100 * ap.mean())
    assert frame_map(scores, labels) > frame_map(scores, labels, nonzero_mean=False)


def test_ap_meter_hand_computed_and_masked_batches():
    # class 0: scores .9(+) .8(-) .7(+) .1(-): prec@1 = 1, prec@3 = 2/3 -> AP = (1 + 2/3) / 2
    scores = np.array([[0.9], [0.8], [0.7], [0.1]])
    labels = np.array([[1], [0], [1], [0]])
    assert frame_average_precision(scores, labels)[0] == pytest.approx((1 + 2 / 3) / 2)
    meter = APMeter()
    # the same frames split over a padded [B=2, T=3, C=1] batch; padded frames must not count
    batch_scores = torch.tensor([[[0.9], [0.8], [0.99]], [[0.7], [0.1], [0.95]]])
    batch_labels = torch.tensor([[[1.0], [0.0], [0.0]], [[1.0], [0.0], [0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    meter.add(batch_scores, batch_labels, mask)
    assert meter.value()[0] == pytest.approx((1 + 2 / 3) / 2)
    assert meter.map() == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_sklearn_average_precision_handles_ties_like_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(int)
    s = np.round(rng.random(200), 1)                    # many ties
    assert sklearn_average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def _hand_case():
    labels = np.array([[1, 1], [1, 0], [0, 1], [1, 1]])
    scores = np.array([[0.9, 0.6], [0.4, 0.7], [0.2, 0.3], [0.8, 0.2]])
    return [scores], [labels]


def test_conditional_metrics_t0_hand_computed():
    # (i=0 | j=1): frames {0,2,3}: c0 labels 1,0,1 scored .9,.2,.8 -> P = R = 1, AP = 1
    # (i=1 | j=0): frames {0,1,3}: c1 labels 1,0,1 scored .6,.7,.2 -> P = R = 1/2, AP = .5*.5 + .5*(2/3)
    out = conditional_metrics(*_hand_case(), t=0)
    assert out["pairs"] == 2
    assert out["precision"] == pytest.approx(75.0)
    assert out["recall"] == pytest.approx(75.0)
    assert out["f1"] == pytest.approx(75.0, abs=1e-6)
    assert out["mAP"] == pytest.approx(100 * (1 + 0.25 + 1 / 3) / 2)


def test_conditional_metrics_t2_hand_computed():
    scores, labels = _hand_case()
    # c0 occurs in frame 1 but not in frame 2 -> frame 2 conditions on c0; likewise frame 1 on c1
    assert conditional_masks(labels, 2).tolist() == [[0, 0], [0, 1], [1, 0], [0, 0]]
    out = conditional_metrics(scores, labels, t=2)
    # each pair: one positive scored below 0.5 -> P = R = 0 (nothing predicted counts as 0), AP = 1
    assert (out["precision"], out["recall"], out["f1"], out["mAP"]) == pytest.approx((0, 0, 0, 100))


def _mlad_reference(scores, labels, t, thresh=0.5, matrices=False):
    """MLAD's algorithm written with scikit-learn's own metrics (the reference implementation's calls);
    ``matrices=True``: its avg=False output, [C, C] precision / recall / AP with -1 where a pair does not count."""
    y_pred, y_gt = np.concatenate(scores), np.concatenate(labels).astype(np.uint8)
    if t == 0:
        cond = y_gt
    else:
        cond = []
        for v in labels:
            csum = np.cumsum(v, 0)
            rolled = np.roll(csum, t, 0)
            rolled[:t] = 0
            cond.append(np.clip(np.clip(csum - rolled, 0, 1) - v, 0, 1))
        cond = np.concatenate(cond)
    n_classes = y_gt.shape[1]
    prec, rec, aps = [], [], []
    mats = np.full((3, n_classes, n_classes), -1.0)
    for j in range(n_classes):
        rows = cond[:, j] == 1
        if not rows.any():     # MLAD's code raises here (scikit-learn on an empty subset); nothing counts
            continue
        p, r, _, n = precision_recall_fscore_support(y_gt[rows], (y_pred[rows] >= thresh).astype(np.uint8),
                                                     average=None, zero_division=0)
        with np.errstate(all="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ap = average_precision_score(y_gt[rows], y_pred[rows], average=None)
        for i in range(n_classes):
            if i != j and n[i] > 0:
                prec.append(p[i]); rec.append(r[i]); aps.append(0 if np.isnan(ap[i]) else ap[i])
                mats[:, i, j] = prec[-1], rec[-1], aps[-1]
    if matrices:
        return mats
    P, R = np.mean(prec), np.mean(rec)
    return 100 * P, 100 * R, 100 * 2 * P * R / (P + R + 1e-9), 100 * np.mean(aps)


@pytest.mark.parametrize("t", [0, 20, 40])
def test_conditional_metrics_match_sklearn_reference(t):
    rng = np.random.default_rng(t)
    labels = [(rng.random((length, 5)) < 0.3).astype(np.int64) for length in (80, 120, 50)]
    scores = [np.clip(0.4 * y + 0.7 * rng.random(y.shape), 0, 1) for y in labels]
    out = conditional_metrics(scores, labels, t=t)
    ref = _mlad_reference(scores, labels, t)
    assert (out["precision"], out["recall"], out["f1"], out["mAP"]) == pytest.approx(ref, abs=1e-9)


def test_conditional_matrices_match_mlad_per_pair():
    rng = np.random.default_rng(7)
    labels = [(rng.random((length, 4)) < 0.3).astype(np.int64) for length in (60, 90)]
    labels[0][:, 3] = 0
    labels[1][:, 3] = 0                                  # class 3 never occurs: its row and column do not count
    scores = [np.clip(0.4 * y + 0.7 * rng.random(y.shape), 0, 1) for y in labels]
    for t in (0, 20):
        m = conditional_matrices(scores, labels, t=t)
        ref = _mlad_reference(scores, labels, t, matrices=True)
        for k, name in enumerate(("precision", "recall", "ap")):
            assert np.array_equal(np.isnan(m[name]), ref[k] == -1)
            assert m[name][ref[k] != -1] == pytest.approx(ref[k][ref[k] != -1], abs=1e-12)
        assert np.isnan(m["precision"][3]).all() and np.isnan(m["precision"][:, 3]).all()
    # support: positives of c_i among the frames labelled c_j (t = 0), hand-counted on the concatenation
    y = np.concatenate(labels)
    assert conditional_matrices(scores, labels)["support"][0, 1] == np.sum((y[:, 0] == 1) & (y[:, 1] == 1))


def test_sampled_25_picks_frames_as_mstct():
    scores = np.arange(60, dtype=float)[:, None].repeat(2, 1)
    picked, labels = sampled_25(scores, np.zeros((60, 2)))
    assert picked[:, 0].tolist() == list(range(1, 50, 2))          # step int(60 / 25) = 2 from frame 1
    assert sampled_25(scores[:26], scores[:26])[0][:, 0].tolist() == list(range(1, 26))   # step 1
    assert sampled_25(scores[:25], scores[:25]) is None                                   # too short: left out


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="binary"):
        frame_average_precision(np.zeros((3, 2)), np.full((3, 2), 2))
    with pytest.raises(ValueError, match="shape|must both"):
        frame_average_precision(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="empty"):
        APMeter().value()
