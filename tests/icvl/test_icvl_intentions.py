"""ICVL intentions from a VLM watching the observed part of each window (real H.264 frames, a tiny randomly
initialised LLaVA built here), a text-only model announced once and recorded as such, frames streamed window by
window, and bad inputs (a VLM that rejects frames, a clip with too few frames, a missing video) failing with one
error naming them before anything is generated, without losing what was generated."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

WORDS = ("the a person hand cup table picks up puts down open door walk turn look camera next will and then make "
         "cook soup clean wants to is going").split()


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    """A tiny random LLaVA (CLIP vision tower + 2-layer Llama) with a word-level tokenizer, saved like a hub model."""
    from tiny_models import save_tiny_llava

    return save_tiny_llava(tmp_path_factory.mktemp("tiny_vlm"), WORDS, patch_size=16, vision_layers=1,
                           max_positions=512, chat_template=None)


@pytest.fixture(scope="module")
def tiny_text_lm_dir(tmp_path_factory):
    """A tiny random text-only Llama with a word-level tokenizer, saved like a hub model."""
    from tiny_models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny_text_lm"), WORDS)


@pytest.fixture
def ego4d_videos(tmp_path, real_video_paths):
    """Crafted Ego4D LTA files whose two clips are the real 10 s 'bikes' video (actions every 0.6 s)."""
    rng = np.random.default_rng(0)
    records = [{"clip_uid": f"clip{c}", "video_uid": "v", "action_idx": i, "verb_label": int(rng.integers(3)),
                "noun_label": int(rng.integers(3)), "action_clip_start_sec": 0.6 * i,
                "action_clip_end_sec": 0.6 * i + 0.5} for c in range(2) for i in range(14)]
    for split in ("train", "val"):
        (tmp_path / f"fho_lta_{split}.json").write_text(json.dumps({"clips": records}))
    (tmp_path / "fho_lta_taxonomy.json").write_text(json.dumps({"verbs": ["take", "put", "cut"],
                                                                "nouns": ["knife", "onion", "cup"]}))
    (tmp_path / "features").mkdir()
    (tmp_path / "videos").mkdir()
    for c in range(2):
        np.save(tmp_path / "features" / f"clip{c}.npy", rng.normal(size=(14, 16)).astype(np.float32))
        (tmp_path / "videos" / f"clip{c}.mp4").symlink_to(real_video_paths["bikes"])
    return tmp_path


def _cfg(root, model, *extra):
    from mmreason.config import apply_overrides
    from mmreason.methods.icvl import ICVLExperiment

    return apply_overrides(ICVLExperiment(), [
        f"data.root={root}", f"data.features_dir={root / 'features'}", f"data.video_dir={root / 'videos'}",
        f"data.knowledge_root={root / 'knowledge'}", f"data.llm_cache_dir={root / 'cache'}", "data.intentions=generate",
        "data.intention_backend=hf", f"data.intention_model={model}", "data.observed_source=ground_truth",
        "model.visual_dim=16", "model.num_future=4", "model.text_embedder=bag_of_words", *extra])


def _cache_entries(root):
    return [json.loads(p.read_text()) for p in (root / "cache").rglob("*.json")]


def test_vlm_intentions_end_to_end_on_real_frames(ego4d_videos, tiny_vlm_dir):
    """The default path: a VLM (here a tiny random LLaVA) is shown 8 frames of each window's observed span."""
    from mmreason.methods.icvl.data import load_windows

    cfg = _cfg(ego4d_videos, tiny_vlm_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)             # a VLM is not announced as text-only
        windows = load_windows(cfg, "val")
    assert len(windows) == 6 and all(w.intention.startswith("The person intends to") for w in windows)
    assert {w.intention_source for w in windows} == {f"vlm: {tiny_vlm_dir}"}
    entries = _cache_entries(ego4d_videos)
    assert len(entries) >= 6 and all(len(e["request"]["images"]) == 8 for e in entries)   # 8 frames per window
    # the frames are the window's span: windows of one clip see different frames
    by_tag = {e["request"]["tag"]: e["request"]["images"] for e in entries}
    assert by_tag["clip0_7"] != by_tag["clip0_8"] and by_tag["clip0_7"] == by_tag["clip1_7"]   # same video, span
    records = [json.loads(line) for line in (ego4d_videos / "knowledge" / "ego4d_lta_val" / "intentions.jsonl")
               .read_text().splitlines()]
    assert {r["intention_source"] for r in records} == {"vlm"} and records[0]["observed"]
    manifest = json.loads((ego4d_videos / "knowledge" / "ego4d_lta_val" / "intentions.manifest.json").read_text())
    assert manifest["options"]["intention_source"] == "vlm"
    # a second load is served by the response cache: no new entry
    assert [w.intention for w in load_windows(cfg, "val")] == [w.intention for w in windows]
    assert len(_cache_entries(ego4d_videos)) == len(entries)


def test_a_text_only_model_is_announced_once_and_recorded(ego4d_videos, tiny_text_lm_dir, monkeypatch):
    import mmreason.assets.intentions as intentions_asset
    from mmreason.methods.icvl import data

    monkeypatch.setattr(data, "_ANNOUNCED", set())

    def no_frames(*args, **kwargs):
        raise AssertionError("a text-only model must not cost frame decoding")

    monkeypatch.setattr(intentions_asset, "sample_clip_frames", no_frames)
    cfg = _cfg(ego4d_videos, tiny_text_lm_dir)
    with pytest.warns(UserWarning, match=r"TEXT-ONLY.*not from the video.*intention_source: text_only") as record:
        windows = data.load_windows(cfg, "val")
    assert sum("TEXT-ONLY" in str(w.message) for w in record) == 1                   # once, not per window
    assert {w.intention_source for w in windows} == {f"text_only: {tiny_text_lm_dir}"}
    assert all(e["request"]["images"] == [] for e in _cache_entries(ego4d_videos))
    folder = ego4d_videos / "knowledge" / "ego4d_lta_val"
    assert {json.loads(line)["intention_source"] for line in (folder / "intentions.jsonl").read_text().splitlines()} \
        == {"text_only"}
    assert json.loads((folder / "intentions.manifest.json").read_text())["options"]["intention_source"] == "text_only"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)             # said once per process
        data.load_windows(cfg, "val")


# ============================================================================================== the asset engine

def _items(video, n=12, span=1.0):
    return [{"id": f"w{i:02d}", "video": str(video), "start_s": 0.5 * i, "end_s": 0.5 * i + span,
             "observed": ["take cup"]} for i in range(n)]


class _Recorder:
    """A VLM stand-in that records, at each call, how many clips had been decoded so far."""

    name, model_id, revision, is_vlm = "recorder", "recorder-vlm", "v1", True

    def __init__(self, decoded: list, fail_on: str | None = None):
        self.decoded, self.fail_on, self.calls, self.seen = decoded, fail_on, [], []

    def generate(self, requests):
        from mmreason.llm import Generation

        self.calls.append(len(self.decoded))
        for r in requests:
            if r.tag == self.fail_on:
                raise ValueError("this model accepts at most 1 image per prompt")
        self.seen += [(r.tag, len(r.images)) for r in requests]
        return [Generation(text=" make soup for lunch.", finish_reason="stop", num_prompt_tokens=1,
                           num_output_tokens=4, backend=self.name, model_id=self.model_id) for _ in requests]

    def library_versions(self):
        return {}


@pytest.fixture
def count_decodes(monkeypatch):
    import mmreason.assets.intentions as intentions_asset

    decoded = []
    original = intentions_asset.sample_clip_frames

    def counting(item, num_frames=8):
        decoded.append(item["id"])
        return original(item, num_frames)

    monkeypatch.setattr(intentions_asset, "sample_clip_frames", counting)
    return decoded


def test_frames_stream_batch_by_batch(real_video_paths, tmp_path, count_decodes):
    from mmreason.methods.icvl.data import generate_intentions

    llm = _Recorder(count_decodes)
    table = generate_intentions(_items(real_video_paths["bikes"]), "split", llm, "recorder-vlm",
                                str(tmp_path / "knowledge"), str(tmp_path / "cache"))
    assert len(table) == 12 and table["w00"] == "The person intends to make soup for lunch."
    # the asset engine generates 8 requests per batch: the first call comes after only its 8 clips were decoded
    # (before, every window's frames were decoded into memory first: 12 here, a whole split in a real run)
    assert llm.calls == [8, 12] and len(count_decodes) == 12
    assert all(n == 8 for _, n in llm.seen)


def test_a_vlm_that_rejects_frames_names_model_and_clip_and_keeps_earlier_answers(real_video_paths, tmp_path,
                                                                                  count_decodes):
    from mmreason.methods.icvl.data import generate_intentions

    items = _items(real_video_paths["bikes"])
    kn, cache = str(tmp_path / "knowledge"), str(tmp_path / "cache")
    with pytest.raises(RuntimeError, match=r"intention VLM 'picky-vlm' rejected the frames of clips w08, w09, w10, "
                                           r"w11 \(ValueError: this model accepts at most 1 image.*kept in .*cache"):
        generate_intentions(items, "split", _Recorder(count_decodes, fail_on="w09"), "picky-vlm", kn, cache)
    # the first batch of 8 answers is in the response cache: a rerun generates only the other 4
    again = _Recorder(count_decodes)
    assert len(generate_intentions(items, "split", again, "picky-vlm", kn, cache)) == 12
    assert len(again.seen) == 4


def test_clips_with_too_few_frames_or_no_video_fail_before_the_model_loads(real_video_paths, tmp_path):
    from mmreason.methods.icvl.data import generate_intentions

    items = _items(real_video_paths["bikes"], n=3)
    items[1]["end_s"] = items[1]["start_s"] + 0.2          # 25 fps: 5 frames < the 8 shown to the VLM
    items[2]["video"] = str(tmp_path / "gone.mp4")
    llm = _Recorder([])
    with pytest.raises(ValueError) as err:
        generate_intentions(items, "split", llm, "some-vlm", str(tmp_path / "k"), str(tmp_path / "c"))
    msg = str(err.value)
    assert msg.startswith("2 of 3 intention clips cannot be shown to the VLM (nothing was generated)")
    assert "clip 'w01'" in msg and "has 5 frames between 0.50 s and 0.70 s, fewer than the 8 frames" in msg
    assert "clip 'w02'" in msg and "gone.mp4: video file not found" in msg
    assert llm.calls == []
    # through ICVL's data path the same check runs before the VLM is even built (here: a folder with no model)
    root = tmp_path / "lta"
    root.mkdir()
    records = [{"clip_uid": "c", "video_uid": "v", "action_idx": i, "verb_label": 0, "noun_label": 0,
                "action_clip_start_sec": 0.01 * i, "action_clip_end_sec": 0.01 * i + 0.005} for i in range(12)]
    (root / "fho_lta_val.json").write_text(json.dumps({"clips": records}))
    (root / "fho_lta_taxonomy.json").write_text(json.dumps({"verbs": ["take"], "nouns": ["cup"]}))
    (root / "features").mkdir()
    np.save(root / "features" / "c.npy", np.zeros((12, 16), np.float32))
    (root / "videos").mkdir()
    (root / "videos" / "c.mp4").symlink_to(real_video_paths["bikes"])
    with pytest.raises(ValueError, match=r"clip 'c_7': .*c.mp4 has \d frames between 0.00 s and 0.08 s"):
        from mmreason.methods.icvl.data import load_windows

        load_windows(_cfg(root, tmp_path / "no_model_here"), "val")
