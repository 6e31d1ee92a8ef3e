"""Shared VAD fixtures: a crafted ShanghaiTech frame tree with an object-track cache (the object-centric path)."""
import numpy as np
import pytest


@pytest.fixture
def sht_object_tree(tmp_path):
    """``(root, track_cache)``: ShanghaiTech-layout frame folders (train 01_001, 02_001; test 01_0014 with frames
    5-9 abnormal, 02_0002 with frames 0-2 abnormal; 10 random 64x48 frames each) and a track cache of 32 px crops
    filled from detections that carry an external tracker's ids: track 7 drifts right over all 10 frames, track 9
    sits still in frames 0-5."""
    from PIL import Image

    from mmreason.data.vad import TrackCache, fill_track_cache, list_frame_folder_videos

    rng = np.random.default_rng(0)
    root = tmp_path / "sht"
    names = {"training": ["01_001", "02_001"], "testing": ["01_0014", "02_0002"]}
    for split, videos in names.items():
        for name in videos:
            (root / split / "frames" / name).mkdir(parents=True)
            for t in range(10):
                Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
                    root / split / "frames" / name / f"{t:03d}.jpg")
    (root / "testing/test_frame_mask").mkdir()
    np.save(root / "testing/test_frame_mask/01_0014.npy", np.r_[np.zeros(5), np.ones(5)].astype(int))
    np.save(root / "testing/test_frame_mask/02_0002.npy", np.r_[np.ones(3), np.zeros(7)].astype(int))
    for split in ("train", "test"):
        videos = list_frame_folder_videos(root, "shanghaitech", split)
        dets = {v.name: np.array([[t, 2 + t, 4, 22 + t, 28, 0.9, 7] for t in range(10)]
                                 + [[t, 40, 20, 60, 44, 0.8, 9] for t in range(6)], float) for v in videos}
        fill_track_cache(TrackCache(tmp_path / "tracks" / split), videos, dets, crop_size=32)
    return root, tmp_path / "tracks"
