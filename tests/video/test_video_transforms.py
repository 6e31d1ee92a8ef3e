"""CLIP-style clip transforms: normalisation by hand, geometry on crafted frames, one random choice per clip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmreason.video import read_frames, segment_indices
from mmreason.video.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    VideoTransform,
    center_crop,
    hflip,
    normalize,
    random_resized_crop,
    resize_shorter,
    to_tchw,
)


def test_normalize_matches_hand_computation():
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 0, 128, 255
    out = normalize(to_tchw(frames))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4)
    for c, v in enumerate((0, 128, 255)):
        expected = (v / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]
        torch.testing.assert_close(out[:, c], torch.full((2, 4, 4), expected), rtol=0, atol=1e-6)


def test_resize_shorter_keeps_aspect_and_center_crop_takes_the_middle():
    x = torch.zeros(1, 3, 100, 200, dtype=torch.uint8)
    assert resize_shorter(x, 50).shape == (1, 3, 50, 100)
    x[..., 40:60, 90:110] = 255  # a white square in the middle
    crop = center_crop(x, 20)
    assert crop.shape == (1, 3, 20, 20) and bool((crop == 255).all())


def test_flip_mirrors_and_flip_prob_only_changes_the_flip():
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    x[..., :4] = 255
    assert bool((hflip(x)[..., 4:] == 255).all()) and bool((hflip(x)[..., :4] == 0).all())
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    never = VideoTransform(size=32, train=True, flip_prob=0.0)(frames, rng=5)
    always = VideoTransform(size=32, train=True, flip_prob=1.0)(frames, rng=5)
    torch.testing.assert_close(always, never.flip(-1))  # same crop box, mirrored


def test_one_crop_per_clip_and_seeded():
    frame = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    clip = np.stack([frame] * 4)
    out = random_resized_crop(to_tchw(clip), 24, rng=np.random.default_rng(3))
    assert out.shape == (4, 3, 24, 24)
    assert all(torch.equal(out[0], out[t]) for t in range(4))  # identical frames stay identical
    tr = VideoTransform(size=24, train=True)
    torch.testing.assert_close(tr(clip, rng=11), tr(clip, rng=11))


def test_pipeline_on_real_frames(real_video_paths):
    path = real_video_paths["bikes"]  # 640 x 272
    frames = read_frames(path, segment_indices(250, 8, train=False))
    test = VideoTransform(size=224)(frames)
    assert test.shape == (8, 3, 224, 224) and test.dtype == torch.float32
    # test mode is deterministic: shorter side 272 -> 224, centre 224 crop
    expected = normalize(center_crop(resize_shorter(to_tchw(frames), 224), 224))
    torch.testing.assert_close(test, expected)
    task_adapter = VideoTransform(size=224, train=True, train_crop="random", square_resize=True, resize_to=257)
    assert task_adapter(frames, rng=0).shape == (8, 3, 224, 224)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="uint8"):
        to_tchw(np.zeros((1, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="T, H, W, 3"):
        to_tchw(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="train_crop"):
        VideoTransform(train_crop="five_crop")
