"""Dense multi-label TAL readers (PDAN/MS-TCT/MLAD JSON + .npy features), collate, synthetic set."""
import json

import numpy as np
import pytest
import torch

from mmreason.data.multilabel import (DataFileError, MultiLabelTAL, SyntheticCooccurrenceTAL, cooccurrence_matrix,
                                      gaussian_heatmap, label_runs, pad_collate, pool_frame_labels, read_class_list,
                                      readable_class_name, segments_to_multihot)


@pytest.fixture()
def crafted(tmp_path):
    """Three videos (two training, one testing); 10 snippets over 5 s -> fps 2, snippet t at t/2 s."""
    annotations = {
        "vid_a": {"subset": "training", "duration": 5.0, "actions": [[1, 1.0, 3.0], [0, 4.0, 10.0], [2, 3.0, 1.0]]},
        "vid_b": {"subset": "training", "duration": 4.0, "actions": []},
        "vid_c": {"subset": "testing", "duration": 3.0, "actions": [[2, 0.0, 1.0]]},
    }
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "vid_a.npy", np.arange(40, dtype=np.float32).reshape(10, 4))
    np.save(feats / "vid_b.npy", np.ones((8, 1, 1, 4), np.float32))          # PDAN/TSU's [T, 1, 1, D]
    np.save(feats / "vid_c.npy", np.zeros((6, 4), np.float32))
    return tmp_path


def test_reader_converts_segments_to_snippet_multihot(crafted):
    ds = MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3)
    assert ds.videos == ["vid_a", "vid_b"]
    item = ds[0]
    assert item["features"].shape == (10, 4) and item["labels"].shape == (10, 3)
    y = item["labels"].numpy()
    # class 1 on 1.0 < t/2 < 3.0 -> snippets 3, 4, 5; class 0 on 4.0 < t/2 -> snippet 9; [2, 3.0, 1.0] skipped
    assert np.flatnonzero(y[:, 1]).tolist() == [3, 4, 5]
    assert np.flatnonzero(y[:, 0]).tolist() == [9]
    assert y[:, 2].sum() == 0
    assert ds[1]["features"].shape == (8, 4) and ds[1]["labels"].sum() == 0
    assert MultiLabelTAL(crafted / "ann.json", crafted / "feats", "testing", 3).videos == ["vid_c"]


def test_reader_options_mlad_style_and_fixed_fps(crafted):
    ds = MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3, skip_videos_without_actions=True)
    assert ds.videos == ["vid_a"]
    with pytest.raises(ValueError, match="'vid_a': class id 0"):     # 1-based ids cannot hold a 0
        MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3, class_index_base=1)
    # MLAD: inclusive bounds and 1-based ids -> JSON class 1 is column 0, snippets 2..6
    labels = segments_to_multihot([[1, 1.0, 3.0]], 10, 5.0, 3, class_index_base=1, inclusive_bounds=True)
    assert np.flatnonzero(labels[:, 0]).tolist() == [2, 3, 4, 5, 6]
    # a fixed feature rate ignores the duration: 1 snippet per time unit -> t in (1, 3) is snippet 2
    fixed = segments_to_multihot([[0, 1.0, 3.0]], 10, 5.0, 1, feature_fps=1.0)
    assert np.flatnonzero(fixed[:, 0]).tolist() == [2]


def test_frame_level_labels_are_pooled_to_snippets(crafted):
    frames = np.zeros((20, 3), np.float32)
    frames[5, 2] = 1                                                   # frame 5 -> snippet 2 of 10
    assert np.flatnonzero(pool_frame_labels(frames, 10)[:, 2]).tolist() == [2]
    labels_root = crafted / "frame_labels"
    labels_root.mkdir()
    np.save(labels_root / "vid_a.npy", frames)
    np.save(labels_root / "vid_b.npy", np.zeros((8, 3), np.float32))
    ds = MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3, labels_root=labels_root)
    assert np.flatnonzero(ds[0]["labels"][:, 2].numpy()).tolist() == [2]


def test_missing_files_are_named(crafted):
    with pytest.raises(DataFileError, match="nope.json"):
        MultiLabelTAL(crafted / "nope.json", crafted / "feats", "training", 3)
    with pytest.raises(DataFileError, match="no_feats"):
        MultiLabelTAL(crafted / "ann.json", crafted / "no_feats", "training", 3)
    (crafted / "feats" / "vid_b.npy").unlink()
    with pytest.raises(DataFileError, match="vid_b.npy"):
        MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3)
    ds = MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3, missing_features="skip")
    assert ds.videos == ["vid_a"]
    with pytest.raises(DataFileError, match="classes.txt"):
        read_class_list(crafted / "classes.txt")


def test_class_lists_in_the_datasets_formats(tmp_path):
    tsu = tmp_path / "Action_list"
    tsu.write_text("1\tWalk\n0\tEnter\n2\tMake_coffee.Pour_water\n")
    assert read_class_list(tsu) == ["Enter", "Walk", "Make_coffee.Pour_water"]
    thumos = tmp_path / "class_list.txt"
    thumos.write_text("1 BaseballPitch\n2 BasketballDunk\n")
    assert read_class_list(thumos) == ["BaseballPitch", "BasketballDunk"]
    charades = tmp_path / "Charades_v1_classes.txt"                  # Charades: 'c000 <name>', ids from 0
    charades.write_text("c001 Holding some clothes\nc000 Holding a book\nc002 Putting clothes somewhere\n")
    assert read_class_list(charades) == ["Holding a book", "Holding some clothes", "Putting clothes somewhere"]
    plain = tmp_path / "names.txt"
    plain.write_text("Abuse\nArrest\n\n")
    assert read_class_list(plain) == ["Abuse", "Arrest"]
    assert readable_class_name("Make_coffee.Pour_water") == "make coffee pour water"
    assert readable_class_name("BaseballPitch") == "baseball pitch"


def test_pad_collate_pads_and_masks(crafted):
    ds = MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3)
    batch = pad_collate([ds[1], ds[0]])
    assert batch["features"].shape == (2, 10, 4) and batch["labels"].shape == (2, 10, 3)
    assert batch["mask"].sum(1).tolist() == [8.0, 10.0]
    assert torch.all(batch["features"][0, 8:] == 0) and batch["videos"] == ["vid_b", "vid_a"]
    assert batch["heatmap"].shape == (2, 10, 3) and torch.equal(batch["heatmap"][1], ds[0]["heatmap"])


def _mstct_heatmap_reference(actions, num_snippets, num_classes, fps, gamma=0.5, tau=4, k=1.0):
    """MS-TCT's make_dataset heat-map loop as its code runs it: scan the snippets for the one just past the
    midpoint (fr / fps < mid < (fr + 1) / fps -> center fr + 1), radius int(int((end - start) fps) / gamma),
    Gaussian exp(-x^2 / sigma^2) with sigma = diameter / tau, written into the map with a running maximum."""
    hmap = np.zeros((num_snippets, num_classes), np.float32)
    for cls, start, end in actions:
        if end < start:
            continue
        mid = (start + end) / 2
        for fr in range(num_snippets):
            if (fr + 1) / fps > mid and fr / fps < mid:
                center, radius = fr + 1, int(int((end - start) * fps) / gamma)
                diameter = 2 * radius + 1
                x = np.arange(diameter) - radius
                g = np.exp(-(x * x) / (diameter / tau) ** 2)
                g[g < np.finfo(g.dtype).eps * g.max()] = 0
                for offset in range(-radius, radius + 1):
                    if 0 <= center + offset < num_snippets:
                        hmap[center + offset, cls] = max(hmap[center + offset, cls], k * g[offset + radius])
    return hmap


def test_gaussian_heatmap_is_mstct_ground_truth():
    # one segment over snippets 2..7 (fps 1): mid 4.5 -> peak at 5; radius int(5 / 0.5) = 10; sigma 21 / 4
    heat = gaussian_heatmap([(0, 2.0, 7.0)], 12, 2)
    expected = np.exp(-((np.arange(12) - 5.0) ** 2) / 5.25 ** 2)
    assert heat[:, 0] == pytest.approx(expected, rel=1e-6) and heat[5, 0] == 1.0 and heat[:, 1].sum() == 0
    # a zero-length segment is a single peak; overlapping peaks of one class keep the maximum
    point = gaussian_heatmap([(1, 3.2, 3.2), (1, 3.4, 3.6)], 8, 2)[:, 1]
    assert point.tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    # equals MS-TCT's own loop on random segments (seconds, fps 2.5) whose midpoints fall between snippets
    rng = np.random.default_rng(0)
    actions = [(int(rng.integers(3)), *sorted(rng.uniform(0, 20, 2))) for _ in range(12)]
    actions = [(c, s, e) for c, s, e in actions if ((s + e) / 2 * 2.5) % 1 > 1e-6]
    ours = gaussian_heatmap([(c, s * 2.5, e * 2.5) for c, s, e in actions], 50, 3)
    assert ours == pytest.approx(_mstct_heatmap_reference(actions, 50, 3, fps=2.5), abs=1e-6)


def test_heatmaps_follow_the_annotation_and_frame_labels(crafted):
    ds = MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3)
    # vid_a, fps 2: [1, 1.0, 3.0] is snippets 2..6 (mid 4, radius int(4 / 0.5) = 8, sigma 17 / 4);
    # [2, 3.0, 1.0] (end before start) is skipped, as MS-TCT's loader does
    heat = ds[0]["heatmap"].numpy()
    assert heat[:, 1] == pytest.approx(np.exp(-((np.arange(10) - 4.0) ** 2) / 4.25 ** 2), rel=1e-6)
    assert heat[:, 2].sum() == 0
    # frame-level labels: each run a..b of positives is the segment (a - 0.5, b + 0.5)
    labels = np.zeros((10, 2), np.float32)
    labels[3:6, 0] = 1
    labels[8, 1] = 1
    assert label_runs(labels) == [(0, 2.5, 5.5), (1, 7.5, 8.5)]
    synthetic = SyntheticCooccurrenceTAL(2, seed=0)[0]
    assert synthetic["heatmap"].max() == 1.0 and (synthetic["heatmap"][synthetic["labels"] == 0] < 1).all()


def test_training_crops(crafted):
    ds = MultiLabelTAL(crafted / "ann.json", crafted / "feats", "training", 3, max_snippets=4)
    torch.manual_seed(0)
    item = ds[0]
    start = int(item["features"][0, 0].item()) // 4          # features are arange: row r starts at 4 r
    assert item["features"].shape == (4, 4)
    assert torch.equal(item["labels"], torch.from_numpy(ds.labels[0][start:start + 4]))
    assert torch.equal(item["heatmap"], torch.from_numpy(ds.heatmaps[0][start:start + 4]))


def test_synthetic_set_is_deterministic_with_built_in_cooccurrence():
    a = SyntheticCooccurrenceTAL(8, seed=3)
    b = SyntheticCooccurrenceTAL(8, seed=3)
    assert all(torch.equal(a[i]["features"], b[i]["features"]) for i in range(8))
    assert not torch.equal(a[0]["features"], SyntheticCooccurrenceTAL(8, seed=4)[0]["features"])
    labels = a.all_labels()
    dependents, anchors = labels[:, 1::2], labels[:, 0::2]
    assert dependents.sum() > 0
    assert np.all(anchors[dependents == 1] == 1)                 # a dependent never occurs without its anchor
    p = cooccurrence_matrix(labels)
    for k in range(4):
        if labels[:, 2 * k + 1].sum():
            assert p[2 * k + 1, 2 * k] == pytest.approx(1.0)       # P(anchor | dependent) = 1
            assert p[2 * k, 2 * k + 1] < 1.0
