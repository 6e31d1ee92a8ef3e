"""Frame-folder VAD datasets, the track/crop cache, the IoU tracker and the synthetic moving squares."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmreason.data.vad import (LAYOUTS, ObjectClipDataset, TrackCache, VadClipDataset, crop_box, iou_track, list_frame_folder_videos, make_moving_square_videos, read_detections)

ROOT = Path(__file__).resolve().parents[2]


def _write_video(folder: Path, num_frames: int, size=(24, 32), seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for t in range(num_frames):
        img = rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{t}.png")  # unpadded names: natural sort must order 2 < 10


def _make_tree(root: Path, layout: str, train: list[str], test: dict[str, np.ndarray]):
    for i, name in enumerate(train):
        _write_video(root / "training/frames" / name, 3, seed=i)
    for i, (name, labels) in enumerate(test.items()):
        _write_video(root / "testing/frames" / name, labels.size, seed=10 + i)
        (root / "testing/test_frame_mask").mkdir(parents=True, exist_ok=True)
        np.save(root / "testing/test_frame_mask" / f"{name}.npy", labels)


def test_shanghaitech_and_nwpu_layouts(tmp_path):
    _make_tree(tmp_path / "sht", "shanghaitech", ["01_001", "13_002"], {"03_0031": np.array([0] * 9 + [1] * 3)})
    train = list_frame_folder_videos(tmp_path / "sht", "shanghaitech", "train")
    assert [(v.name, v.scene, v.labels) for v in train] == [("01_001", 0, None), ("13_002", 12, None)]
    (test,) = list_frame_folder_videos(tmp_path / "sht", "shanghaitech", "test")
    assert test.scene == 2 and test.num_frames == 12 and test.labels.tolist() == [0] * 9 + [1] * 3
    assert [p.name for p in test.frame_paths[:3]] == ["0.png", "1.png", "2.png"] and test.frame_paths[10].name == "10.png"
    frames = test.load([0, 11], size=16)
    assert frames.shape == (2, 3, 16, 16) and frames.dtype == np.float32 and 0 <= frames.min() <= frames.max() <= 1
    full = test.load([1])
    assert np.allclose(full[0].transpose(1, 2, 0) * 255, np.asarray(Image.open(test.frame_paths[1])), atol=1e-3)

    _make_tree(tmp_path / "nwpu", "nwpu_campus", ["D001_01"], {"D043_03": np.zeros(4, int)})
    assert list_frame_folder_videos(tmp_path / "nwpu", "nwpu_campus", "test")[0].scene == 42
    assert LAYOUTS["nwpu_campus"].num_scenes == 43 and LAYOUTS["shanghaitech"].num_scenes == 13


def test_avenue_mat_labels(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "avenue"
    _write_video(root / "testing/frames/01", 10)
    _write_video(root / "testing/frames/02", 5, seed=1)
    gt = np.empty(2, dtype=object)
    gt[0] = np.array([[2, 8], [3, 9]])  # intervals 2-3 and 8-9 (1-based, inclusive)
    gt[1] = np.array([[5], [5]])
    savemat(root / "avenue.mat", {"gt": gt.reshape(1, 2)})
    v1, v2 = list_frame_folder_videos(root, "avenue", "test")
    assert v1.labels.tolist() == [0, 1, 1, 0, 0, 0, 0, 1, 1, 0]
    assert v2.labels.tolist() == [0, 0, 0, 0, 1] and v1.scene == v2.scene == 0


def test_errors_name_the_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="training/frames"):
        list_frame_folder_videos(tmp_path, "shanghaitech", "train")
    _write_video(tmp_path / "testing/frames/01_0014", 3)
    with pytest.raises(FileNotFoundError, match="01_0014.npy"):
        list_frame_folder_videos(tmp_path, "shanghaitech", "test")
    (tmp_path / "testing/test_frame_mask").mkdir()
    np.save(tmp_path / "testing/test_frame_mask/01_0014.npy", np.zeros(5))
    with pytest.raises(ValueError, match="5 frame labels but 3 frames"):
        list_frame_folder_videos(tmp_path, "shanghaitech", "test")
    with pytest.raises(KeyError, match="did you mean 'avenue'"):
        list_frame_folder_videos(tmp_path, "avenu", "test")
    _write_video(tmp_path / "bad/training/frames/camera1", 1)
    with pytest.raises(ValueError, match="camera1"):
        list_frame_folder_videos(tmp_path / "bad", "nwpu_campus", "train")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk/0.jpg").write_bytes(b"not an image")
    from mmreason.data.vad import read_image
    with pytest.raises(ValueError, match="0.jpg"):
        read_image(tmp_path / "junk/0.jpg")


def test_clip_dataset_windows():
    videos = make_moving_square_videos(2, num_frames=10, split="test", seed=3)
    ds = VadClipDataset(videos, clip_len=4, stride=3)
    assert len(ds) == 2 * 3  # starts 0, 3, 6
    item = ds[4]
    assert item["clip"].shape == (4, 3, 32, 32) and int(item["video"]) == 1 and int(item["start"]) == 3
    assert item["labels"].tolist() == videos[1].labels[3:7].tolist()


def test_iou_tracker_links_overlapping_boxes():
    frames = np.array([0, 0, 1, 1, 2, 4, 4])
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [52, 51, 62, 61], [1, 0, 11, 10],
                      [2, 1, 12, 11], [3, 1, 13, 11], [90, 90, 99, 99]], float)
    ids = iou_track(frames, boxes, iou_threshold=0.3, max_gap=1)
    assert ids[0] == ids[3] == ids[4]          # the left object
    assert ids[1] == ids[2] != ids[0]          # the right object
    assert ids[5] not in ids[:5]               # a 2-frame gap > max_gap starts a new track
    assert len(set(ids)) == 4
    assert iou_track(frames, boxes, max_gap=2)[5] == ids[0]


def test_crop_box_centres_and_pads():
    frame = np.zeros((3, 20, 20), np.uint8)
    frame[:, 5:10, 5:10] = 200
    crop = crop_box(frame, [5, 5, 10, 10], size=5)
    assert crop.shape == (3, 5, 5) and crop.dtype == np.uint8 and (crop == 200).all()
    edge = crop_box(frame.astype(np.float32) / 255, [-4, -4, 4, 4], size=8)  # half outside: zero padded
    assert edge[:, :4, :4].max() == 0 and edge.dtype == np.float32


def test_track_cache_roundtrip_and_object_clips(tmp_path):
    cache = TrackCache(tmp_path / "cache")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (5, 3, 8, 8), dtype=np.uint8)
    cache.write("vid", frame=[0, 1, 2, 0, 1], track_id=[7, 7, 7, 9, 9], box=rng.random((5, 4)) * 10, crops=crops)
    tr = cache.read("vid")
    assert len(tr) == 5 and np.array_equal(tr.crops, crops) and tr.tracks()[7].tolist() == [0, 1, 2]
    assert cache.videos() == ["vid"] and "vid" in cache and "other" not in cache
    with pytest.raises(FileNotFoundError, match="other"):
        cache.read("other")
    with pytest.raises(ValueError, match="crop"):
        cache.write("v2", [0], [0], [[0, 0, 1, 1]], np.zeros((1, 3, 4, 4), np.uint8))

    video = make_moving_square_videos(1, num_frames=3, seed=0)[0]
    video.name = "vid"
    ds = ObjectClipDataset(cache, [video], clip_len=3)
    assert len(ds) == 2  # one window per track; track 9 (2 detections) is padded with its last crop
    by_track = {int(ds[i]["track"]): ds[i] for i in range(2)}
    assert by_track[7]["frames"].tolist() == [0, 1, 2]
    assert by_track[9]["frames"].tolist() == [0, 1, 1]
    assert np.allclose(by_track[9]["clip"][2].numpy(), crops[4] / 255.0)


def test_fill_track_cache_script(tmp_path):
    root = tmp_path / "sht"
    _make_tree(root, "shanghaitech", [], {"01_0014": np.zeros(4, int)})
    det = tmp_path / "dets.csv"
    det.write_text("video,frame,x1,y1,x2,y2,score\n01_0014,0,2,2,12,12,0.9\n01_0014,1,3,2,13,12,0.8\n"
                   "01_0014,1,20,10,30,20,0.7\n01_0014,3,20,10,30,20,0.1\n")
    out = tmp_path / "cache"
    cmd = [sys.executable, str(ROOT / "scripts/fill_track_cache.py"), "--detections", str(det), "--root", str(root),
           "--layout", "shanghaitech", "--out", str(out), "--crop-size", "16", "--min-score", "0.5"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"videos_written": 1, "tracks": 2, "out": str(out)}
    tr = TrackCache(out).read("01_0014")
    assert tr.frame.tolist() == [0, 1, 1] and tr.crops.shape == (3, 3, 16, 16)
    assert tr.track_id[0] == tr.track_id[1] != tr.track_id[2]
    video = list_frame_folder_videos(root, "shanghaitech", "test")[0]
    expected = crop_box((video.load([0])[0] * 255).round().astype(np.uint8), [2, 2, 12, 12], 16)
    assert np.array_equal(tr.crops[0], expected)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"video": "01_0014", "frame": 0}]))
    with pytest.raises(ValueError, match="bad.json"):
        read_detections(bad)
    res = subprocess.run(cmd[:3] + [str(tmp_path / "missing.csv")] + cmd[4:], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "missing.csv" in res.stderr


def test_synthetic_squares_deterministic_and_scene_dependent():
    a = make_moving_square_videos(4, num_frames=12, split="test", seed=5, abnormal_fraction=1.0)
    b = make_moving_square_videos(4, num_frames=12, split="test", seed=5, abnormal_fraction=1.0)
    assert all(np.array_equal(x.frames, y.frames) and np.array_equal(x.labels, y.labels) for x, y in zip(a, b))
    assert not np.array_equal(a[0].frames, make_moving_square_videos(4, 12, split="test", seed=6)[0].frames)
    assert [v.scene for v in a] == [0, 1, 0, 1] and all(v.labels.sum() > 0 for v in a)

    def direction(video, t):  # +1 if the square's mass moved right between t and t+1
        def centre(f):
            mask = np.abs(f - f.mean(axis=(1, 2), keepdims=True)).sum(0) > 0.5
            cols = np.flatnonzero(mask.any(0))
            return np.angle(np.exp(2j * np.pi * cols / 32).mean())  # circular mean (squares wrap around)
        d = np.angle(np.exp(1j * (centre(video.frames[t + 1]) - centre(video.frames[t]))))
        return int(np.sign(d))

    train = make_moving_square_videos(2, num_frames=6, split="train", seed=1)
    assert train[0].labels is None
    assert direction(train[0], 2) == 1 and direction(train[1], 2) == -1  # normal: right in scene 0, left in 1
    for v in a:
        t = int(np.flatnonzero(v.labels)[1])  # inside the abnormal interval the direction is the other scene's
        assert direction(v, t) == (-1 if v.scene == 0 else 1)


def test_external_track_ids_are_kept(tmp_path):
    """Detections that carry the tracker's own ids (ByteTrack in ADSM) keep them; the IoU tracker would have linked
    these boxes differently (the two far-apart boxes of id 5 are one track, the overlapping 5 / 6 are two)."""
    from mmreason.data.vad import fill_track_cache

    root = tmp_path / "sht"
    _make_tree(root, "shanghaitech", [], {"01_0014": np.zeros(3, int)})
    det = tmp_path / "dets.csv"
    det.write_text("video,frame,x1,y1,x2,y2,score,track_id\n01_0014,0,0,0,10,10,0.9,5\n01_0014,1,20,10,30,20,0.9,5\n"
                   "01_0014,1,1,0,11,10,0.9,6\n01_0014,2,2,0,12,10,0.9,6\n")
    detections = read_detections(det)
    assert detections["01_0014"][:, 6].tolist() == [5, 5, 6, 6]
    videos = list_frame_folder_videos(root, "shanghaitech", "test")
    fill_track_cache(TrackCache(tmp_path / "ext"), videos, detections, crop_size=8)
    tr = TrackCache(tmp_path / "ext").read("01_0014")
    assert {k: tr.frame[v].tolist() for k, v in tr.tracks().items()} == {5: [0, 1], 6: [1, 2]}
    fill_track_cache(TrackCache(tmp_path / "iou"), videos, {"01_0014": detections["01_0014"][:, :6]}, crop_size=8)
    iou = TrackCache(tmp_path / "iou").read("01_0014")
    assert sorted(iou.frame[v].tolist() for v in iou.tracks().values()) == [[0, 1, 2], [1]]

    det.write_text("video,frame,x1,y1,x2,y2,track_id\n01_0014,0,0,0,10,10,5\n01_0014,1,0,0,10,10,\n")
    with pytest.raises(ValueError, match="track_id on 1 of 2 rows"):
        read_detections(det)
    bad = {"01_0014": np.array([[0, 0, 0, 10, 10, 1, 3], [0, 5, 5, 15, 15, 1, 3]], float)}
    with pytest.raises(ValueError, match="twice in one frame"):
        fill_track_cache(TrackCache(tmp_path / "bad"), videos, bad, crop_size=8)
