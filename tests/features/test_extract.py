"""Feature extraction on the packaged real clips: the files are exactly what the ICVL and RULSTM loaders read, the
numbers are the encoder applied to the right frames, a killed run resumes without recomputing, bad inputs fail with
one error naming them before any frame is encoded."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from mmreason.features import (EncoderError, ExtractionInputError, PixelFrameEncoder, RandomWeightsWarning,
                               extract_features, load_encoder, parse_encoder_spec, read_manifest)
from mmreason.video import read_frames_at

TINY = "openclip:mmr-tiny-32"


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    yield


@pytest.fixture
def videos(tmp_path, real_video_paths):
    """Two real clips under clip uids: clipA = bikes (10 s, 25 fps), clipB = carphone (4 s, 29.97 fps)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(real_video_paths["bikes"], folder / "clipA.mp4")
    shutil.copy(real_video_paths["carphone_pristine"], folder / "clipB.mp4")
    return folder


def write_lta(path, clips: dict) -> str:
    """An Ego4D fho_lta_*.json: ``clips = {uid: [(action_idx, start_s, end_s), ...]}``."""
    records = [{"clip_uid": uid, "action_idx": i, "verb_label": i % 3, "noun_label": i % 4,
                "action_clip_start_sec": s, "action_clip_end_sec": e}
               for uid, actions in clips.items() for i, s, e in actions]
    path.write_text(json.dumps({"clips": records}))
    return str(path)


def even_actions(n: int, duration: float, skip=()) -> list:
    return [(i, i * duration / n, (i + 1) * duration / n) for i in range(n) if i not in skip]


class CountingEncoder(PixelFrameEncoder):
    """The pixels test encoder, counting frames; raises KeyboardInterrupt (a kill) on call ``fail_on``."""

    def __init__(self, dim=32, fail_on=None):
        super().__init__(dim)
        self.frames, self.fail_on = 0, fail_on

    def encode(self, frames):
        if self.fail_on is not None and self.calls == self.fail_on:
            raise KeyboardInterrupt("killed")
        self.frames += len(frames)
        return super().encode(frames)


def test_ego4d_lta_rows_are_the_encoder_on_each_actions_frames(videos, tmp_path):
    from mmreason.methods.icvl.data import read_segment_features

    ann = write_lta(tmp_path / "fho_lta_train.json", {"clipA": even_actions(12, 10.0),
                                                      "clipB": even_actions(6, 4.0, skip={3})})
    with pytest.warns(RandomWeightsWarning, match="randomly initialised"):
        summary = extract_features("ego4d_lta", [ann], tmp_path / "feats", TINY, videos=videos, batch_size=16,
                                   progress=False)
    assert summary["written"] == 2 and summary["frames_encoded"] == (12 + 5) * 4 and summary["dim"] == 32
    a, b = np.load(tmp_path / "feats" / "clipA.npy"), np.load(tmp_path / "feats" / "clipB.npy")
    assert a.shape == (12, 4, 32) and b.shape == (6, 4, 32) and a.dtype == np.float32
    assert not b[3].any() and b[2].any() and b[4].any()          # action_idx 3 is not annotated: a zero row
    # action 5 of clipA spans [5/12 * 10, 6/12 * 10] s: its 4 frames sit at the centres of 4 equal parts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        encoder = load_encoder(TINY)
    start, end = 5 * 10 / 12, 6 * 10 / 12
    times = start + (np.arange(4) + 0.5) / 4 * (end - start)
    np.testing.assert_allclose(a[5], encoder(read_frames_at(videos / "clipA.mp4", times)), rtol=1e-5, atol=1e-5)
    assert np.abs(a[0] - a[11]).max() > 1e-2                     # different scenes, different features
    # the ICVL loader reads them (frames averaged), and the folder says which encoder made them
    rows = read_segment_features(tmp_path / "feats", "clipA", [0, 5, 7], dim=32)
    np.testing.assert_allclose(rows[1], a[5].mean(axis=0), rtol=1e-6)
    manifest = read_manifest(tmp_path / "feats")
    assert manifest["encoder"] == TINY and manifest["dim"] == 32 and manifest["frames_per_segment"] == 4


def test_egotopo_rows_follow_the_split_readers_segment_order(videos, tmp_path):
    """EK-55 / EGTEA for ICVL: row = the segment's position in EGO-TOPO's (start, end) order, frames at fps."""
    from mmreason.data.anticipation import read_egotopo_split

    split = tmp_path / "train_S1.csv"                               # unsorted on purpose; frame numbers at 30 fps
    split.write_text("P01/clipB\t60\t90\t1\t2\nP01/clipB\t0\t30\t0\t1\nP01/clipB\t30\t45\t2\t0\n")
    extract_features("egotopo_lta", [split], tmp_path / "feats", "pixels:32", videos=videos, fps=30, progress=False)
    feats = np.load(tmp_path / "feats" / "clipB.npy")
    segments = read_egotopo_split(split)["clipB"]
    assert feats.shape == (3, 4, 32) and [g.start_frame for g in segments] == [0, 30, 60]
    for g in segments:
        times = (g.start_frame + (np.arange(4) + 0.5) / 4 * (g.end_frame - g.start_frame)) / 30
        np.testing.assert_allclose(feats[g.action_idx], PixelFrameEncoder(32)(read_frames_at(videos / "clipB.mp4", times)),
                                   rtol=1e-6)


def test_a_killed_run_resumes_without_recomputing_finished_clips(videos, tmp_path):
    ann = write_lta(tmp_path / "fho_lta_train.json", {"clipA": even_actions(12, 10.0), "clipB": even_actions(6, 4.0)})
    out = tmp_path / "feats"
    killer = CountingEncoder(fail_on=7)                            # clipA = 48 frames = 6 calls of 8; dies in clipB
    with pytest.raises(KeyboardInterrupt):
        extract_features("ego4d_lta", [ann], out, killer, videos=videos, batch_size=8, progress=False)
    assert (out / "clipA.npy").is_file() and not (out / "clipB.npy").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no half-written file left behind
    again = CountingEncoder()
    summary = extract_features("ego4d_lta", [ann], out, again, videos=videos, batch_size=8, progress=False)
    assert (summary["done_before"], summary["written"], again.frames) == (1, 1, 6 * 4)   # clipB only
    fresh = CountingEncoder()
    extract_features("ego4d_lta", [ann], tmp_path / "fresh", fresh, videos=videos, batch_size=8, progress=False)
    for clip in ("clipA", "clipB"):
        np.testing.assert_array_equal(np.load(out / f"{clip}.npy"), np.load(tmp_path / "fresh" / f"{clip}.npy"))
    done = CountingEncoder()
    assert extract_features("ego4d_lta", [ann], out, done, videos=videos, progress=False)["written"] == 0
    assert done.calls == 0
    # the same folder with another encoder would mix two feature spaces: refused, naming the change
    with pytest.raises(ExtractionInputError, match=r"encoder: 'pixels:32' -> 'pixels:16'"):
        extract_features("ego4d_lta", [ann], out, PixelFrameEncoder(16), videos=videos, progress=False)


def test_bad_inputs_fail_in_one_error_before_any_frame_is_encoded(videos, tmp_path):
    enc = CountingEncoder()
    bad = write_lta(tmp_path / "bad.json", {
        "clipA": even_actions(12, 10.0),
        "clipB": even_actions(130, 4.0),                          # carphone has 120 frames: fewer than 130 segments
        "clipC": even_actions(3, 3.0),                            # no such video
        "clipA2": [(0, 1.0, 2.0)]})
    shutil.copy(videos / "clipA.mp4", videos / "clipA2.mp4")
    late = write_lta(tmp_path / "late.json", {"clipB": [(0, 1.0, 2.0), (1, 50.0, 60.0)]})
    with pytest.raises(ExtractionInputError) as e:
        extract_features("ego4d_lta", [bad], tmp_path / "o1", enc, videos=videos, progress=False)
    msg = str(e.value)
    assert "2 of 4 inputs cannot be extracted" in msg
    assert "clipB.mp4: 120 frames, fewer than the 130 annotated segments of clip 'clipB'" in msg
    assert "clipC.mp4: video file of 'clipC' not found" in msg
    with pytest.raises(ExtractionInputError, match=r"clipB.mp4: clip 'clipB' action_idx 1 needs a frame at 5\d\.\d\d s"):
        extract_features("ego4d_lta", [late], tmp_path / "o2", enc, videos=videos, progress=False)
    assert enc.calls == 0 and not (tmp_path / "o1" / "clipA.npy").exists()
    with pytest.raises(ExtractionInputError, match="did you mean 'ego4d_lta'"):
        extract_features("ego4d_lt", [bad], tmp_path / "o3", enc, videos=videos)
    with pytest.raises(ExtractionInputError, match="exactly one input"):
        extract_features("ego4d_lta", [bad], tmp_path / "o3", enc, videos=videos, frames=videos)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        extract_features("ego4d_lta", [tmp_path / "nowhere.json"], tmp_path / "o3", enc, videos=videos)


def test_rulstm_lmdb_and_npy_stores_hold_the_frames_the_rulstm_loader_reads(videos, tmp_path):
    import lmdb

    from mmreason.data.anticipation import RulstmFeatureDataset, open_features, rulstm_past_frames

    shutil.copy(videos / "clipB.mp4", videos / "clipC.mp4")
    csv = tmp_path / "training.csv"
    csv.write_text("0,clipB,108,115,1,2,3\n1,clipB,118,119,0,1,2\n2,clipC,110,118,2,0,4\n")
    lm, npy = CountingEncoder(), CountingEncoder()
    extract_features("rulstm", [csv], tmp_path / "rgb_lmdb", lm, videos=videos, store="lmdb", progress=False)
    extract_features("rulstm", [csv], tmp_path / "rgb_npy", npy, videos=videos, store="npy", progress=False)
    needed = {(v, int(f)) for v, s in (("clipB", 108), ("clipB", 118), ("clipC", 110))
              for f in rulstm_past_frames(s)}
    assert npy.frames == 120 + 120                                  # npy: dense, every frame at 30 fps
    assert lm.frames == len(needed) < npy.frames                    # LMDB: only the frames the sampler reads
    env = lmdb.open(str(tmp_path / "rgb_lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()["entries"] == len(needed)
    env.close()
    stores = {"lmdb": open_features(tmp_path / "rgb_lmdb", "lmdb"), "npy": open_features(tmp_path / "rgb_npy", "npy")}
    data = {name: RulstmFeatureDataset(csv, {"rgb": store}) for name, store in stores.items()}
    for i in range(3):
        a, b = data["lmdb"][i]["features"]["rgb"], data["npy"][i]["features"]["rgb"]
        assert a.shape == (14, 32)
        np.testing.assert_array_equal(a, b)
    # frame f (1-based, 30 fps) is the video frame shown at (f - 1) / 30 s
    frames = rulstm_past_frames(108)
    expected = PixelFrameEncoder(32)(read_frames_at(videos / "clipB.mp4", (frames - 1) / 30.0))
    np.testing.assert_allclose(data["lmdb"][0]["features"]["rgb"], expected, rtol=1e-6)
    # another split CSV later: only its new frames are encoded into the same LMDB
    more = tmp_path / "validation.csv"
    more.write_text("3,clipB,113,116,1,1,1\n")
    extra = CountingEncoder()
    extract_features("rulstm", [csv, more], tmp_path / "rgb_lmdb", extra, videos=videos, store="lmdb", progress=False)
    new_frames = {int(f) for f in rulstm_past_frames(113)} - {f for v, f in needed if v == "clipB"}
    assert extra.frames == len(new_frames) > 0


def test_frame_folders_give_the_features_of_the_video(real_video_paths, tmp_path):
    from PIL import Image

    from mmreason.video import probe, read_all_frames

    video = real_video_paths["carphone_pristine"]                   # 120 frames at 30000/1001 fps
    fps = probe(video).fps
    (tmp_path / "videos").mkdir()
    shutil.copy(video, tmp_path / "videos" / "clipB.mp4")
    dump = tmp_path / "frames" / "clipB"
    dump.mkdir(parents=True)
    for i, frame in enumerate(read_all_frames(video), start=1):    # lossless PNG: the decoded pixels exactly
        Image.fromarray(frame).save(dump / f"frame_{i:010d}.png")
    ann = write_lta(tmp_path / "fho.json", {"clipB": even_actions(5, 4.0)})
    kw = dict(fps=fps, frame_template="frame_{:010d}.png", progress=False)
    extract_features("ego4d_lta", [ann], tmp_path / "from_video", "pixels:32", videos=tmp_path / "videos", **kw)
    extract_features("ego4d_lta", [ann], tmp_path / "from_frames", "pixels:32", frames=tmp_path / "frames", **kw)
    np.testing.assert_allclose(np.load(tmp_path / "from_video" / "clipB.npy"),
                               np.load(tmp_path / "from_frames" / "clipB.npy"), rtol=1e-6)
    csv = tmp_path / "training.csv"
    csv.write_text("0,clipB,110,118,2,0,4\n")
    extract_features("rulstm", [csv], tmp_path / "lm_video", "pixels:32", videos=tmp_path / "videos", store="lmdb", **kw)
    extract_features("rulstm", [csv], tmp_path / "lm_frames", "pixels:32", frames=tmp_path / "frames", store="lmdb", **kw)
    from mmreason.data.anticipation import open_features, rulstm_past_frames

    grid = rulstm_past_frames(110, fps=fps)
    np.testing.assert_array_equal(open_features(tmp_path / "lm_video").read("clipB", grid),
                                  open_features(tmp_path / "lm_frames").read("clipB", grid))


def test_cli_extract_prints_the_summary_and_names_a_bad_input(videos, tmp_path, capsys):
    from mmreason.cli.main import main

    ann = write_lta(tmp_path / "fho_lta_val.json", {"clipB": even_actions(4, 4.0)})
    code = main(["extract", "--encoder", "pixels:8", "--dataset", "ego4d_lta", "--annotations", ann,
                 "--videos", str(videos), "--output", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 1 and np.load(tmp_path / "out" / "clipB.npy").shape == (4, 4, 8)
    bad = write_lta(tmp_path / "bad.json", {"clipZ": even_actions(4, 4.0)})
    code = main(["extract", "--encoder", "pixels:8", "--dataset", "ego4d_lta", "--annotations", bad,
                 "--videos", str(videos), "--output", str(tmp_path / "out2"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "mmreason extract: error: 1 of 1 inputs cannot be extracted" in captured.err
    assert "clipZ.mp4: video file of 'clipZ' not found" in captured.err


def test_encoder_specs(tmp_path):
    import open_clip
    import torch

    from mmreason.clip import register_presets

    assert parse_encoder_spec("openclip:ViT-L-14-quickgelu:openai") == ("openclip", "ViT-L-14-quickgelu", "openai")
    for bad in ("clip:ViT-B-16", "openclip", "pixels:abc", "pixels"):
        with pytest.raises(EncoderError, match="not understood"):
            load_encoder(bad)
    with pytest.raises(ValueError, match="unknown open_clip model config 'mmr-tiny-33'"):
        load_encoder("openclip:mmr-tiny-33")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_encoder(f"openclip:{'mmr-tiny-32'}:{tmp_path / 'missing.pt'}")
    # a local checkpoint (OpenAI key layout, other weights than the seed-0 random init) is what the encoder runs
    register_presets()
    torch.manual_seed(123)
    state = open_clip.create_model("mmr-tiny-32").state_dict()
    torch.save(state, tmp_path / "tiny.pt")
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 48, 3), dtype=np.uint8)
    with pytest.warns(RandomWeightsWarning):
        random_init = load_encoder(TINY)
    loaded = load_encoder(f"{TINY}:{tmp_path / 'tiny.pt'}")
    assert loaded.spec == f"{TINY}:{tmp_path / 'tiny.pt'}" and loaded.dim == 32
    proj = state["visual.proj"]
    torch.testing.assert_close(loaded.tower.proj.detach(), proj)
    assert np.abs(loaded(frames) - random_init(frames)).max() > 1e-3
    assert np.abs(loaded(frames)[0] - loaded(frames)[1]).max() > 1e-4   # the image decides the feature
