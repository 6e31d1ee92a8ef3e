"""The interactive Anticipator: real video clips end to end, the per-clip cache, frames/features input, clear
errors, the CLI; one slow test with the embedded Gemma 3 270M (LLM and intention model) and the packaged MiniLM."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from mmreason.llm import DeterministicBackend
from mmreason.methods.icvl.anticipator import AnticipationInputError, Anticipator, PixelFrameEncoder
from mmreason.methods.icvl.data import VERB_WORDS, NOUN_WORDS

OBSERVED = ["take knife", "put onion", "cut pan", "wash bowl", "take pan", "put bowl", "cut knife", "wash onion"]


def _intention_llm():
    # completes the intention prompt's priming "Answer: The person intends to"
    return DeterministicBackend(responder=lambda request: " make soup.")


@pytest.fixture
def make_anticipator(tiny_run, tmp_path):
    run_dir, _ = tiny_run

    def make(**kwargs):
        kwargs.setdefault("intention_llm", _intention_llm())
        return Anticipator.from_pretrained(run_dir, [f"data.llm_cache_dir={tmp_path / 'llm_cache'}"], **kwargs)

    return make


def test_video_query_end_to_end(make_anticipator, real_video_paths):
    ant = make_anticipator()
    assert ant.trained_from and ant.trained_from.endswith("model.safetensors")
    p = ant.predict(video=real_video_paths["bikes"], observed=["Take the knife"] + OBSERVED[1:], k=5, z=4)
    assert p.observed[0] == "take knife"                                        # mapped onto the vocabulary
    assert p.intention == "The person intends to make soup."
    assert len(p.sequences) == 5 and all(len(s.actions) == 4 for s in p.sequences)
    for s in p.sequences:
        assert all(a.split()[0] in VERB_WORDS and a.split()[1] in NOUN_WORDS for a in s.actions)
        assert [f"{VERB_WORDS[v]} {NOUN_WORDS[n]}" for v, n in zip(s.verb_ids, s.noun_ids)] == s.actions
    assert [s.score for s in p.sequences] == sorted((s.score for s in p.sequences), reverse=True)
    assert len({tuple(s.actions) for s in p.sequences}) == 5                    # distinct (PALM de-duplication)
    assert len(p.examples) == 1 and p.examples[0].key.startswith("train")
    d = json.loads(json.dumps(p.to_dict()))
    assert d["sequences"][0]["actions"] == p.sequences[0].actions and d["examples"][0]["score"] == pytest.approx(
        p.examples[0].score, abs=1e-5)
    assert set(p.timings) >= {"visual", "intention", "retrieval", "generation", "total"}


def test_repeated_query_is_served_from_the_clip_cache(make_anticipator, real_video_paths, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copy(real_video_paths["carphone_pristine"], video)
    llm = _intention_llm()
    ant = make_anticipator(intention_llm=llm)
    first = ant.predict(video=video, observed=OBSERVED, k=3, z=4)
    assert (ant.frame_encoder.calls, llm.calls, first.clip_cached) == (1, 1, False)
    again = ant.predict(video=video, observed=OBSERVED, k=3, z=4)
    assert (ant.frame_encoder.calls, llm.calls, again.clip_cached) == (1, 1, True)
    assert [s.actions for s in again.sequences] == [s.actions for s in first.sequences]   # same seed, same answer
    # other observed actions on the same clip: frames are reused, the intention (prompted with them) is new
    ant.predict(video=video, observed=OBSERVED[::-1], k=3, z=4)
    assert (ant.frame_encoder.calls, llm.calls) == (1, 2)
    # a changed file (new mtime) is a new clip; so is use_cache=False
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    ant.predict(video=video, observed=OBSERVED, k=3, z=4)
    ant.predict(video=video, observed=OBSERVED, k=3, z=4, use_cache=False)
    assert ant.frame_encoder.calls == 3
    # a new Anticipator answers the intention from the on-disk response cache: no model call
    fresh_llm = _intention_llm()
    make_anticipator(intention_llm=fresh_llm).predict(video=video, observed=OBSERVED, k=3, z=4)
    assert fresh_llm.calls == 0


def test_frames_and_features_inputs(make_anticipator, real_video_paths):
    from mmreason.video import read_frames

    ant = make_anticipator()
    frames = read_frames(real_video_paths["bikes"], list(range(0, 64, 4)))      # [16, H, W, 3]
    p = ant.predict(frames=frames, observed=OBSERVED, k=2, z=3, intention="The person intends to make tea.")
    assert p.intention == "The person intends to make tea." and len(p.sequences) == 2
    assert ant.frame_encoder.calls == 1
    expected = PixelFrameEncoder(32)(frames)                                     # 2 frames per observed segment
    np.testing.assert_allclose(ant._clips[next(iter(ant._clips))]["visual"][0], expected[:2].mean(axis=0), rtol=1e-5)
    features = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
    p1 = ant.predict(features=features, observed=OBSERVED, k=2, z=3)
    p2 = ant.predict(features=features.copy(), observed=OBSERVED, k=2, z=3)      # same content -> same clip
    assert p1.intention == "" and not p1.clip_cached and p2.clip_cached


def test_clear_errors(make_anticipator, tmp_path):
    from mmreason.video import VideoDecodeError

    ant = make_anticipator()
    feats = np.zeros((8, 32), np.float32)
    with pytest.raises(AnticipationInputError, match=r"'wahs pan' is not in the vocabulary; did you mean 'wash'"):
        ant.predict(features=feats, observed=OBSERVED[:7] + ["wahs pan"])
    with pytest.raises(AnticipationInputError, match="3 actions given, this model needs at least 8"):
        ant.predict(features=feats, observed=OBSERVED[:3])
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        ant.predict(video=tmp_path / "nowhere.mp4", observed=OBSERVED)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        ant.predict(video=bad, observed=OBSERVED)
    with pytest.raises(AnticipationInputError, match="exactly one of video=, frames= or features="):
        ant.predict(observed=OBSERVED)
    with pytest.raises(AnticipationInputError, match="got video, features"):
        ant.predict(video=bad, features=feats, observed=OBSERVED)
    with pytest.raises(AnticipationInputError, match=r"features: expected \[num_segments, 32\]"):
        ant.predict(features=np.zeros((8, 5)), observed=OBSERVED)
    with pytest.raises(ValueError, match="needs an ICVL run"):
        Anticipator.from_pretrained("vs_transgru/tiny_synthetic")


def test_cli_anticipate_with_features(tiny_run, tmp_path, capsys):
    from mmreason.cli.main import main

    run_dir, _ = tiny_run
    np.save(tmp_path / "f.npy", np.random.default_rng(1).normal(size=(8, 32)).astype(np.float32))
    code = main(["anticipate", "--model", str(run_dir), "--features", str(tmp_path / "f.npy"),
                 "--observed", ", ".join(OBSERVED), "-k", "2", "-z", "3"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["sequences"]) == 2 and all(len(s["actions"]) == 3 for s in out["sequences"])


@pytest.mark.slow
def test_embedded_gemma_and_minilm_answer_a_real_video(real_video_paths, tmp_path):
    """The packaged models end to end (untrained adapters): Gemma 3 270M writes the intention (text-only, from the
    observed actions) and the K x Z forecast; MiniLM embeds the example texts."""
    ant = Anticipator.from_pretrained("icvl/tiny_synthetic", [
        "model.llm=embedded", "model.text_embedder=minilm", "model.num_examples=2", "model.max_intention_tokens=24",
        "data.intention_backend=hf", "data.intention_model=embedded", f"data.llm_cache_dir={tmp_path / 'cache'}"])
    assert type(ant.model.llm.get_base_model()).__name__ == "Gemma3ForCausalLM"
    p = ant.predict(video=real_video_paths["bigbuckbunny"], observed=OBSERVED, k=2, z=3)
    assert p.intention.startswith("The person intends to") and len(p.intention.split()) >= 5
    assert len(p.sequences) == 2 and all(len(s.actions) == 3 for s in p.sequences)
    assert all(0 <= v < 4 and 0 <= n < 4 for s in p.sequences for v, n in zip(s.verb_ids, s.noun_ids))
    assert len(p.examples) == 2 and p.examples[0].score >= p.examples[1].score
    assert p.sequences[0].raw_text                                               # Gemma wrote something
    again = ant.predict(video=real_video_paths["bigbuckbunny"], observed=OBSERVED, k=2, z=3)
    assert again.clip_cached and again.intention == p.intention
