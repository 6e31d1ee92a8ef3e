"""Few-shot data: split readers, episodic sampling, TSN clips from real videos and frame folders, synthetic task."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mmreason.data.fewshot import (EpisodeDataset, EpisodicSampler, FewShotDataConfig, build_episode_dataset,
                                   collate_episode, read_split_file, synthetic_split, synthetic_video)


def test_read_class_video_split(tmp_path):
    f = tmp_path / "trainlist01.txt"
    f.write_text("Pouring something into something/100386\nbrush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0\n"
                 "Pouring something into something/2002\n\n")
    classes = read_split_file(f, root="/data/frames")
    assert list(classes) == ["Pouring something into something", "brush_hair"]
    assert [r.path for r in classes["Pouring something into something"]] == [
        "/data/frames/Pouring something into something/100386", "/data/frames/Pouring something into something/2002"]
    videos = read_split_file(f, root="/v", media="video", video_ext=".webm")
    assert videos["brush_hair"][0].path == "/v/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.webm"


def test_read_task_adapter_pp_split(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("hmdb/brush_hair/vid_a 120 0\nhmdb/brush_hair/vid_b 98 0\n/abs/hmdb/cartwheel/vid_c 64 1\n")
    classes = read_split_file(f, root="/root")
    assert {c: [(r.path, r.num_frames) for r in v] for c, v in classes.items()} == {
        "brush_hair": [("/root/hmdb/brush_hair/vid_a", 120), ("/root/hmdb/brush_hair/vid_b", 98)],
        "cartwheel": [("/abs/hmdb/cartwheel/vid_c", 64)]}


def test_split_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_split_file(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("a/b 10 0\nc/d ten 1\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_split_file(bad)
    odd = tmp_path / "odd.txt"
    odd.write_text("just_a_name\n")
    with pytest.raises(ValueError, match="odd.txt"):
        read_split_file(odd)


def test_episodic_sampler_draws_distinct_classes_and_videos():
    sampler = EpisodicSampler([6, 7, 8, 9, 10, 11, 12], n_way=5, k_shot=2, n_query=3, seed=3)
    seen = set()
    for i in range(50):
        ep = sampler.episode(i)
        assert len(set(ep.classes)) == 5
        for c, s, q in zip(ep.classes, ep.support, ep.query):
            assert len(s) == 2 and len(q) == 3 and len(set(s) | set(q)) == 5
            assert max(s + q) < sampler.videos_per_class[c]
        seen.add(tuple(ep.classes))
        assert sampler.episode(i) == ep  # a pure function of (seed, index)
    assert len(seen) > 20
    with pytest.raises(ValueError, match="class 'tiny' has 2 videos"):
        EpisodicSampler([5, 2], 2, 1, 2, class_names=["big", "tiny"])
    with pytest.raises(ValueError, match="5-way"):
        EpisodicSampler([5, 5], 5, 1, 1)


def test_episode_dataset_layout():
    load = lambda c, v, rng, train: torch.full((2, 3, 4, 4), float(c * 100 + v))  # noqa: E731
    ds = EpisodeDataset(["a", "b", "c", "d"], [5, 5, 5, 5], load, n_way=3, k_shot=2, n_query=1, num_episodes=4,
                        seed=0, train=True)
    ep = collate_episode([ds[1]])
    assert ep["support"].shape == (6, 2, 3, 4, 4) and ep["query"].shape == (3, 2, 3, 4, 4)
    assert ep["support_labels"].tolist() == [0, 0, 1, 1, 2, 2] and ep["query_labels"].tolist() == [0, 1, 2]
    # class-major order: support/query video n*K.. belong to episode class n
    names = ["a", "b", "c", "d"]
    for i, name in enumerate(ep["class_names"]):
        c = names.index(name)
        assert (ep["support"][2 * i, 0, 0, 0, 0] // 100) == c and (ep["query"][i, 0, 0, 0, 0] // 100) == c
    with pytest.raises(ValueError, match="batch_size=1"):
        collate_episode([ds[0], ds[1]])


def test_synthetic_splits_are_class_disjoint_and_deterministic():
    cfg = FewShotDataConfig(synthetic_vary="both", synthetic_directions=8, synthetic_colours=6)
    parts = {s: {c.name for c in synthetic_split(cfg, s)[0]} for s in ("train", "val", "test")}
    assert sum(map(len, parts.values())) == 48
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"]) and not (parts["val"] & parts["test"])
    a = build_episode_dataset(cfg, "test", 3)[2]
    b = build_episode_dataset(cfg, "test", 3)[2]
    assert torch.equal(a["query"], b["query"]) and a["class_names"] == b["class_names"]


def test_synthetic_directions_are_motion_only():
    """Opposite directions, same colour: each frame of one is (nearly) a frame of the other, in reverse order."""
    cfg = FewShotDataConfig(synthetic_vary="direction", synthetic_directions=2)
    from mmreason.data.fewshot import synthetic_classes

    right, left = synthetic_classes(cfg)
    assert right.colour == left.colour
    clip_r = synthetic_video(right, np.random.default_rng(0), 8, 32)
    clip_l = synthetic_video(left, np.random.default_rng(0), 8, 32)
    square_r = (clip_r.amax(1) > 1.0).float()  # [T, H, W] masks of the square (noise std 0.15)
    square_l = (clip_l.amax(1) > 1.0).float()
    col_r = [(m.sum(0) > 0).nonzero().float().mean() for m in square_r]
    col_l = [(m.sum(0) > 0).nonzero().float().mean() for m in square_l]
    assert col_r[-1] > col_r[0] + 10 and col_l[-1] < col_l[0] - 10  # moves right vs left
    torch.testing.assert_close(square_r.sum(), square_l.sum())  # the same square


def test_real_video_clips_through_split_file(tmp_path, real_video_paths):
    root = tmp_path / "videos"
    for cls, stems in {"animation": ["bigbuckbunny"], "street": ["bikes"],
                       "phone": ["carphone_pristine", "carphone_distorted"]}.items():
        (root / cls).mkdir(parents=True)
        for stem in stems:
            (root / cls / f"{stem}.mp4").symlink_to(real_video_paths[stem])
    split = tmp_path / "split.txt"
    split.write_text("phone/carphone_pristine\nphone/carphone_distorted\n")
    cfg = FewShotDataConfig(dataset="split_files", root=str(root), train_split=str(split), test_split=str(split),
                            media="video", n_way=1, k_shot=1, n_query=1, num_frames=4, image_size=64, resize_size=72)
    test_ep = build_episode_dataset(cfg, "test", 2)[0]
    assert test_ep["support"].shape == (1, 4, 3, 64, 64) and test_ep["support"].dtype == torch.float32
    assert -3 < float(test_ep["support"].mean()) < 3 and float(test_ep["support"].std()) > 0.1
    # test clips are deterministic (centre frames, centre crop); training clips are augmented per episode
    again = build_episode_dataset(cfg, "test", 2)[0]
    assert torch.equal(test_ep["support"], again["support"])
    train = build_episode_dataset(cfg, "train", 4)
    assert not torch.equal(train[0]["support"], train[1]["support"]) or not torch.equal(train[0]["query"], train[1]["query"])
    bad = tmp_path / "bad_split.txt"
    bad.write_text("phone/missing_clip\nphone/carphone_pristine\n")
    with pytest.raises(Exception, match="missing_clip"):
        build_episode_dataset(dataclasses.replace(cfg, test_split=str(bad)), "test", 2)[0]


def test_frame_folder_clips_with_task_adapter_pp_split(tmp_path, real_video_paths):
    from PIL import Image

    from mmreason.video import read_frames

    frames = read_frames(real_video_paths["bikes"], list(range(0, 40, 4)))  # 10 real frames
    paths = []
    for v in range(2):
        folder = tmp_path / "frames" / "riding" / f"clip{v}"
        folder.mkdir(parents=True)
        for i, f in enumerate(frames):
            Image.fromarray(f[:64, :96]).save(folder / f"img_{i + 1:05d}.jpg")
        paths.append(f"frames/riding/clip{v} {len(frames)} 0")
    split = tmp_path / "train.txt"
    split.write_text("\n".join(paths) + "\n")
    cfg = FewShotDataConfig(dataset="split_files", root=str(tmp_path), train_split=str(split), n_way=1, k_shot=1,
                            n_query=1, num_frames=4, image_size=32, resize_size=40)
    ep = build_episode_dataset(cfg, "train", 1)[0]
    assert ep["class_names"] == ["riding"] and ep["query"].shape == (1, 4, 3, 32, 32)


def test_benchmark_class_counts_are_checked(tmp_path):
    split = tmp_path / "train.txt"
    split.write_text("".join(f"class{c}/v{v}\n" for c in range(30) for v in range(3)))
    cfg = FewShotDataConfig(dataset="split_files", benchmark="hmdb51", train_split=str(split))
    with pytest.raises(ValueError, match="hmdb51 train split should have 31 classes"):
        build_episode_dataset(cfg, "train", 1)
    with pytest.raises(ValueError, match="data.val_split is empty"):
        build_episode_dataset(cfg, "val", 1)


def test_overlapping_split_classes_warn(tmp_path):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("".join(f"c{c}/v{v}\n" for c in range(3) for v in range(2)))
    test.write_text("".join(f"c{c}/v{v}\n" for c in range(2, 5) for v in range(2)))
    cfg = FewShotDataConfig(dataset="split_files", train_split=str(train), test_split=str(test), n_way=2)
    with pytest.warns(UserWarning, match="'train' and 'test' share 1 classes"):
        build_episode_dataset(cfg, "train", 1)
