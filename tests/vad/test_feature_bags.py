"""Feature bags: 32-segment resampling, list/ground-truth readers on crafted files, MIL pairs, synthetic bags."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmreason.data.feature_bags import (MILBagDataset, SnippetFeatureDataset, attach_frame_labels,
                                        make_gaussian_feature_bags, read_feature_list, read_interval_annotations,
                                        resample_segments)


def test_resample_segments_hand_case():
    feats = np.arange(10, dtype=np.float32)[:, None]  # [T=10, D=1], value = snippet index
    out = resample_segments(feats, 4)  # bounds linspace(0, 10, 5) -> 0, 2, 5, 7, 10
    assert out[:, 0].tolist() == [0.5, 3.0, 5.5, 8.0]  # means of [0,1], [2,3,4], [5,6], [7,8,9]
    short = resample_segments(np.arange(3, dtype=np.float32)[:, None], 4)  # T < S: empty segments copy a snippet
    assert short[:, 0].tolist() == [0.0, 0.0, 1.0, 2.0]  # bounds 0, 0, 1, 2, 3
    assert resample_segments(np.ones((100, 10, 8)), 32).shape == (32, 10, 8)
    with pytest.raises(ValueError, match="no snippets"):
        resample_segments(np.zeros((0, 4)), 32)


def test_ucf_rtfm_layout_with_concatenated_gt(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "feats").mkdir()
    names = ["Abuse028_x264_i3d", "Normal_Videos_003_x264_i3d"]
    lengths = [3, 2]
    for name, t in zip(names, lengths):
        np.save(tmp_path / "feats" / f"{name}.npy", rng.standard_normal((t, 10, 16)).astype(np.float32))
    (tmp_path / "ucf-test.list").write_text("".join(f"feats/{n}.npy\n" for n in names))
    gt = np.r_[np.zeros(16), np.ones(16), np.zeros(16), np.zeros(32)]  # 16 frames per snippet, list order
    np.save(tmp_path / "gt-ucf.npy", gt)
    videos = read_feature_list(tmp_path / "ucf-test.list")
    assert [(v.name, v.label) for v in videos] == [(names[0], 1), (names[1], 0)]
    videos = attach_frame_labels(videos, tmp_path / "gt-ucf.npy")
    item = SnippetFeatureDataset(videos)[0]
    assert item["features"].shape == (10, 3, 16)  # [crops, T, D]
    assert item["frame_labels"].tolist() == [0] * 16 + [1] * 16 + [0] * 16
    np.save(tmp_path / "bad-gt.npy", gt[:-1])
    with pytest.raises(ValueError, match="bad-gt.npy: 79 frame labels"):
        attach_frame_labels(videos, tmp_path / "bad-gt.npy")


def test_xd_per_crop_layout_with_interval_annotations(tmp_path):
    rng = np.random.default_rng(1)
    names = ["Fight__#1-00-10_label_B1-0-0", "Walk__#0-00-05_label_A"]
    lines = []
    for name in names:
        for crop in range(5):
            np.save(tmp_path / f"{name}__{crop}.npy", np.full((4, 8), crop, dtype=np.float32) + rng.random((4, 8)) * 0)
            lines.append(f"{name}__{crop}.npy")
    (tmp_path / "rgbtest.list").write_text("\n".join(reversed(lines)) + "\n")  # crop order must not matter
    (tmp_path / "annotations.txt").write_text(f"{names[0]} 10 20 40 -1\n")
    assert read_interval_annotations(tmp_path / "annotations.txt") == {names[0]: [(10, 20)]}
    videos = attach_frame_labels(read_feature_list(tmp_path / "rgbtest.list"), tmp_path / "annotations.txt")
    by_name = {v.name: v for v in videos}
    assert by_name[names[0]].label == 1 and by_name[names[1]].label == 0
    feats = by_name[names[0]].load()
    assert feats.shape == (4, 5, 8) and feats[0, :, 0].tolist() == [0, 1, 2, 3, 4]  # crops in __k order
    y = by_name[names[0]].frame_labels
    assert y.shape == (64,) and y.sum() == 11 and y[10] == 1 and y[20] == 1 and y[21] == 0
    assert by_name[names[1]].frame_labels.sum() == 0
    # XD-Violence's own gt.npy (XDVioDet make_gt.py) leaves the end frame out: frames 10..19
    xd = attach_frame_labels(read_feature_list(tmp_path / "rgbtest.list"), tmp_path / "annotations.txt", "exclusive")
    y = {v.name: v.frame_labels for v in xd}[names[0]]
    assert y.sum() == 10 and y[19] == 1 and y[20] == 0
    with pytest.raises(ValueError, match="interval_end"):
        attach_frame_labels(videos, tmp_path / "annotations.txt", "open")
    assert by_name[names[0]].num_crops() == 5  # from the .npy headers


def test_readers_name_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.list"):
        read_feature_list(tmp_path / "nope.list")
    (tmp_path / "a.list").write_text("missing.npy\n")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        read_feature_list(tmp_path / "a.list")[0].load()
    (tmp_path / "b.list").write_text("video.mp4\n")
    with pytest.raises(ValueError, match="b.list:1"):
        read_feature_list(tmp_path / "b.list")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "c.list").write_text("junk.npy\n")
    with pytest.raises(ValueError, match="junk.npy"):
        read_feature_list(tmp_path / "c.list")[0].load()


def test_mil_pairs_give_balanced_batches_of_32_segments():
    videos = make_gaussian_feature_bags(5, 3, num_snippets=(20, 70), dim=8, crops=2, seed=0)
    ds = MILBagDataset(videos, num_segments=32, seed=0)
    assert len(ds) == 5
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["normal"].shape == batch["abnormal"].shape == (4, 2, 32, 8)
    assert {a for _, a in ds.pairs} == {0, 1, 2} and {n for n, _ in ds.pairs} == set(range(5))
    with pytest.raises(ValueError, match="normal and abnormal"):
        MILBagDataset(videos[:5])
    per_crop = MILBagDataset(videos, num_segments=32, seed=0, split_crops=True)  # 10 normal, 6 abnormal crop bags
    assert len(per_crop) == 10 and per_crop[0]["normal"].shape == (1, 32, 8)
    n, a = per_crop.pairs[0]
    video, crop = per_crop.normal[n]
    assert torch.equal(per_crop[0]["normal"][0], torch.from_numpy(resample_segments(video.features, 32))[:, crop])


def test_gaussian_bags_are_deterministic_and_labelled():
    a = make_gaussian_feature_bags(2, 3, num_snippets=40, dim=16, anomaly_shift=5.0, seed=3, split="test")
    b = make_gaussian_feature_bags(2, 3, num_snippets=40, dim=16, anomaly_shift=5.0, seed=3, split="test")
    assert all(np.array_equal(x.features, y.features) for x, y in zip(a, b))
    for v in a:
        snippet = v.frame_labels[::16]
        assert v.frame_labels.shape == (640,) and (snippet.sum() > 0) == bool(v.label)
        if v.label:  # the anomalous run is contiguous and shifted away from the normal snippets
            idx = np.flatnonzero(snippet)
            assert idx.tolist() == list(range(idx[0], idx[-1] + 1))
            norms = np.linalg.norm(v.features[:, 0], axis=1)
            assert norms[snippet == 1].mean() > norms[snippet == 0].mean()
    assert torch.is_tensor(SnippetFeatureDataset(a)[0]["features"])
