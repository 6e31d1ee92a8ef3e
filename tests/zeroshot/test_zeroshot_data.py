"""Zero-shot split readers and protocols (Open-VCLIP / FROSTER layout) and the synthetic zero-shot task."""
import json

import numpy as np
import pytest

from mmreason.data.zeroshot import (ZeroShotDataConfig, ZeroShotVideoDataset, harmonic_mean, load_splits,
                                    read_class_names, read_video_list, summarize, synthetic_classes)


def test_class_name_files(tmp_path):
    (tmp_path / "i2c.json").write_text(json.dumps({"1": "archery", "0": "abseiling"}))
    (tmp_path / "c2i.json").write_text(json.dumps({"archery": 1, "abseiling": 0}))
    (tmp_path / "names.txt").write_text("abseiling\narchery\n")
    (tmp_path / "classes_label_x.yml").write_text("classes:\n- abseiling\n- archery\ntemplates:\n- a video of {}.\n")
    for name in ("i2c.json", "c2i.json", "names.txt", "classes_label_x.yml"):
        assert read_class_names(tmp_path / name) == ["abseiling", "archery"]
    (tmp_path / "gap.json").write_text(json.dumps({"0": "a", "2": "b"}))
    with pytest.raises(ValueError, match="label ids"):
        read_class_names(tmp_path / "gap.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_class_names(tmp_path / "missing.json")


def test_id_name_csv_class_files(tmp_path):
    """The released B2N ``train_idx2cls.csv``: ``id,name`` lines (a header allowed), any id order, commas kept."""
    (tmp_path / "train_idx2cls.csv").write_text("1,petting animal (not cat)\n0,getting a tattoo\n2,a, b\n")
    assert read_class_names(tmp_path / "train_idx2cls.csv") == ["getting a tattoo", "petting animal (not cat)",
                                                                 "a, b"]
    (tmp_path / "header.csv").write_text("id,name\n0,abseiling\n1,archery\n")
    assert read_class_names(tmp_path / "header.csv") == ["abseiling", "archery"]
    (tmp_path / "bad.csv").write_text("0,abseiling\narchery\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: expected '<id>,<class name>'"):
        read_class_names(tmp_path / "bad.csv")
    (tmp_path / "twice.csv").write_text("0,abseiling\n0,archery\n")
    with pytest.raises(ValueError, match="label id 0 appears twice"):
        read_class_names(tmp_path / "twice.csv")


def test_video_lists(tmp_path):
    (tmp_path / "test.csv").write_text("v_Archery_g01_c01.avi,1\n/abs/x.avi,0\n")
    assert read_video_list(tmp_path / "test.csv", "/data/ucf") == [("/data/ucf/v_Archery_g01_c01.avi", 1),
                                                                   ("/abs/x.avi", 0)]
    (tmp_path / "space.txt").write_text("a.mp4 3\n")
    assert read_video_list(tmp_path / "space.txt") == [("a.mp4", 3)]
    (tmp_path / "bad.csv").write_text("a.mp4,one\n")
    with pytest.raises(ValueError, match=r"bad.csv:1"):
        read_video_list(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="outside the 2 classes"):
        read_video_list(tmp_path / "space.txt", num_classes=2)


def test_protocol_summaries():
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    out = summarize({"split1": 70.0, "split2": 74.0, "split3": 72.0}, "cross_dataset")
    assert out["top1_mean"] == pytest.approx(72.0) and out["top1_std"] == pytest.approx(np.std([70, 74, 72]))
    b2n = summarize({"base": 80.0, "novel": 60.0}, "base_to_novel")
    assert b2n["hm"] == pytest.approx(harmonic_mean(80.0, 60.0))
    with pytest.raises(ValueError, match="base and novel"):
        summarize({"split1": 1.0}, "base_to_novel")


def test_cross_dataset_and_base_to_novel_splits(tmp_path):
    for i in (1, 2, 3):
        (tmp_path / f"k600_split{i}").mkdir()
        (tmp_path / f"k600_split{i}" / "test.csv").write_text(f"a{i}.mp4,0\nb{i}.mp4,1\n")
        (tmp_path / f"k600_split{i}" / "classes.json").write_text(json.dumps([f"new{i}a", f"new{i}b"]))
    cfg = ZeroShotDataConfig(dataset="split_files", test_root="/videos",
                             test_lists=[str(tmp_path / f"k600_split{i}" / "test.csv") for i in (1, 2, 3)],
                             test_classes=[str(tmp_path / f"k600_split{i}" / "classes.json") for i in (1, 2, 3)])
    splits = load_splits(cfg, "test")
    assert [s.name for s in splits] == ["split1", "split2", "split3"]
    assert splits[2].class_names == ["new3a", "new3b"] and splits[2].videos[1] == ("/videos/b3.mp4", 1)
    assert [s.name for s in load_splits(cfg, "val")] == ["split1"]
    b2n = ZeroShotDataConfig(dataset="split_files", protocol="base_to_novel", test_lists=cfg.test_lists[:2],
                             test_classes=cfg.test_classes[:1])
    assert [s.name for s in load_splits(b2n, "test")] == ["base", "novel"]
    with pytest.raises(ValueError, match="train_list"):
        load_splits(cfg, "train")
    with pytest.raises(ValueError, match="test_classes has 2 files for 3"):
        load_splits(ZeroShotDataConfig(dataset="split_files", test_lists=cfg.test_lists,
                                       test_classes=cfg.test_classes[:2]), "test")


def test_synthetic_test_classes_are_unseen_but_their_attributes_are_seen():
    cfg = ZeroShotDataConfig()
    seen, unseen = synthetic_classes(cfg)
    assert len(unseen) == cfg.synthetic_unseen and not {(k.direction, k.colour) for k in seen} & {
        (k.direction, k.colour) for k in unseen}
    assert {k.direction for k in seen} == set(range(cfg.synthetic_directions))
    assert {k.colour for k in seen} == set(range(cfg.synthetic_colours))
    train, = load_splits(cfg, "train")
    test, = load_splits(cfg, "test")
    assert not set(train.class_names) & set(test.class_names)
    assert test.prompt_features.shape == (len(unseen), cfg.synthetic_prompts, cfg.synthetic_embed_dim)
    b2n = load_splits(ZeroShotDataConfig(protocol="base_to_novel"), "test")
    assert [s.name for s in b2n] == ["base", "novel"] and b2n[0].class_names == train.class_names


def test_real_video_clips(tmp_path, real_video_paths):
    path = next(iter(real_video_paths.values()))
    (tmp_path / "list.csv").write_text(f"{path},0\n")
    (tmp_path / "classes.txt").write_text("riding bike\n")
    cfg = ZeroShotDataConfig(dataset="split_files", train_list=str(tmp_path / "list.csv"),
                             train_classes=str(tmp_path / "classes.txt"), test_lists=[str(tmp_path / "list.csv")],
                             test_classes=[str(tmp_path / "classes.txt")], num_frames=4, frame_stride=2,
                             image_size=32, resize_range=(32, 40), test_views=2)
    train = ZeroShotVideoDataset(load_splits(cfg, "train")[0], cfg, train=True)[0]
    test = ZeroShotVideoDataset(load_splits(cfg, "test")[0], cfg, train=False)[0]
    assert train["frames"].shape == (4, 3, 32, 32) and test["frames"].shape == (2, 4, 3, 32, 32)
    assert train["label"] == 0
    (tmp_path / "gone.csv").write_text("nowhere.mp4,0\n")
    gone = ZeroShotDataConfig(dataset="split_files", train_list=str(tmp_path / "gone.csv"),
                              train_classes=str(tmp_path / "classes.txt"))
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        ZeroShotVideoDataset(load_splits(gone, "train")[0], gone, train=True)[0]
