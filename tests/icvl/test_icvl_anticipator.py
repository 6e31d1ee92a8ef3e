"""The interactive Anticipator: real video clips end to end, the run's own frame encoder (a mismatch is an error),
the example bank saved with the run (queries without the training data), the batched sampler (HF-equivalent greedy
answers, one prompt prefill, shared rows, HF's sampling distribution, PALM's sample budget), memoised answers,
predict_batch and the Ego4D submission, clear errors, the CLI, the README's commands; slow tests with the embedded
Gemma 3 270M and MiniLM."""
from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import torch

from mmreason.features import PixelFrameEncoder, RandomWeightsWarning
from mmreason.llm import DeterministicBackend
from mmreason.methods.icvl.anticipator import (AnticipationInputError, Anticipator, EncoderMismatchError,
                                               UntrainedModelWarning)
from mmreason.methods.icvl.data import NOUN_WORDS, VERB_WORDS

OBSERVED = ["take knife", "put onion", "cut pan", "wash bowl", "take pan", "put bowl", "cut knife", "wash onion"]
INTENTION = " cook a vegetable soup for the family dinner."


def _intention_llm():
    # completes the intention prompt's priming "Answer: The person intends to"
    return DeterministicBackend(responder=lambda request: INTENTION)


@pytest.fixture
def make_anticipator(tiny_run, tmp_path):
    run_dir, _ = tiny_run

    def make(*overrides, **kwargs):
        kwargs.setdefault("intention_llm", _intention_llm())
        return Anticipator.from_pretrained(run_dir, [f"data.llm_cache_dir={tmp_path / 'llm_cache'}", *overrides],
                                           **kwargs)

    return make


def test_video_query_end_to_end(make_anticipator, real_video_paths):
    ant = make_anticipator()
    assert ant.trained_from and ant.trained_from.endswith("model.safetensors")
    p = ant.predict(video=real_video_paths["bikes"], observed=["Take the knife"] + OBSERVED[1:], k=5, z=4)
    assert p.observed[0] == "take knife"                                        # mapped onto the vocabulary
    assert p.intention == "The person intends to" + INTENTION and p.intention_source == "vlm: deterministic"
    assert p.key == "bikes_7" and not p.answer_cached
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
    assert d["key"] == "bikes_7" and d["intention_source"] == "vlm: deterministic"
    assert set(p.timings) >= {"visual", "intention", "retrieval", "generation", "total"}


def test_repeated_queries_are_served_from_the_clip_cache_and_the_answer_memo(make_anticipator, real_video_paths,
                                                                            tmp_path, monkeypatch):
    video = tmp_path / "clip.mp4"
    shutil.copy(real_video_paths["carphone_pristine"], video)
    llm = _intention_llm()
    ant = make_anticipator(intention_llm=llm)
    first = ant.predict(video=video, observed=OBSERVED, k=3, z=4)
    assert (ant.frame_encoder.calls, llm.calls, first.clip_cached, first.answer_cached) == (1, 1, False, False)
    generations = []
    real = ant.model.anticipate
    monkeypatch.setattr(ant.model, "anticipate", lambda *a, **kw: generations.append(1) or real(*a, **kw))
    again = ant.predict(video=video, observed=OBSERVED, k=3, z=4)
    assert (ant.frame_encoder.calls, llm.calls, again.clip_cached, again.answer_cached) == (1, 1, True, True)
    assert generations == [] and again.timings["generation"] == 0.0             # the memo answered
    assert [s.actions for s in again.sequences] == [s.actions for s in first.sequences]
    reseeded = ant.predict(video=video, observed=OBSERVED, k=3, z=4, seed=1)    # a new seed: generation only
    assert (generations, reseeded.clip_cached, reseeded.answer_cached, ant.frame_encoder.calls) == ([1], True, False, 1)
    # other observed actions on the same clip: frames are reused, the intention (prompted with them) is new
    ant.predict(video=video, observed=OBSERVED[::-1], k=3, z=4)
    assert (ant.frame_encoder.calls, llm.calls) == (1, 2)
    # a changed file (new mtime) is a new clip; so is use_cache=False (which also regenerates)
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    ant.predict(video=video, observed=OBSERVED, k=3, z=4)
    fresh = ant.predict(video=video, observed=OBSERVED, k=3, z=4, use_cache=False)
    assert ant.frame_encoder.calls == 3 and not fresh.answer_cached
    # a new Anticipator answers the intention from the on-disk response cache: no model call
    fresh_llm = _intention_llm()
    make_anticipator(intention_llm=fresh_llm).predict(video=video, observed=OBSERVED, k=3, z=4)
    assert fresh_llm.calls == 0


def test_frames_and_features_inputs(make_anticipator, real_video_paths):
    from mmreason.video import read_frames

    ant = make_anticipator()
    frames = read_frames(real_video_paths["bikes"], list(range(0, 64, 4)))      # [16, H, W, 3]
    p = ant.predict(frames=frames, observed=OBSERVED, k=2, z=3, intention="The person intends to make tea.")
    assert p.intention == "The person intends to make tea." and p.intention_source == "given"
    assert len(p.sequences) == 2 and ant.frame_encoder.calls == 1
    expected = PixelFrameEncoder(32)(frames)                                     # 2 frames per observed segment
    np.testing.assert_allclose(ant._clips[next(iter(ant._clips))]["visual"][0], expected[:2].mean(axis=0), rtol=1e-5)
    features = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
    p1 = ant.predict(features=features, observed=OBSERVED, k=2, z=3)
    p2 = ant.predict(features=features.copy(), observed=OBSERVED, k=2, z=3)      # same content -> same clip
    assert p1.intention == "" and p1.intention_source == "none" and not p1.clip_cached and p2.clip_cached


def _short_video(path, num_frames: int, source):
    """An mp4 of ``num_frames`` real frames (the first frames of ``source``), written with PyAV."""
    from video_files import write_video

    from mmreason.video import read_frames

    return write_video(path, read_frames(source, list(range(num_frames))))


def test_clear_errors(make_anticipator, real_video_paths, tmp_path):
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
    short = _short_video(tmp_path / "five_frames.mp4", 5, real_video_paths["carphone_pristine"])
    with pytest.raises(AnticipationInputError, match=r"five_frames.mp4: 5 frames, fewer than the 8 observed segments"):
        ant.predict(video=short, observed=OBSERVED)
    with pytest.raises(AnticipationInputError, match="exactly one of video=, frames= or features="):
        ant.predict(observed=OBSERVED)
    with pytest.raises(AnticipationInputError, match="got video, features"):
        ant.predict(video=bad, features=feats, observed=OBSERVED)
    with pytest.raises(AnticipationInputError, match=r"features: expected \[num_segments, 32\]"):
        ant.predict(features=np.zeros((8, 5)), observed=OBSERVED)
    # a batch is checked whole before anything is generated
    with pytest.raises(AnticipationInputError, match="wahs pan"):
        ant.predict_batch([{"features": feats, "observed": OBSERVED}, {"features": feats, "observed": ["wahs pan"] * 8}])
    assert ant.cache_info()["answers"] == 0
    with pytest.raises(ValueError, match="needs an ICVL run"):
        Anticipator.from_pretrained("vs_transgru/tiny_synthetic")


def test_the_runs_encoder_encodes_video_and_another_encoder_is_an_error(tiny_run, make_anticipator, tmp_path):
    """The old Anticipator encoded every video with a random pixel projection, whatever the run was trained on."""
    run_dir, _ = tiny_run
    ant = make_anticipator()
    assert ant.cfg.data.encoder == "pixels:32" and ant.frame_encoder.spec == "pixels:32"
    with pytest.raises(EncoderMismatchError, match=r"trained on features from encoder 'pixels:32'.*'pixels:16'"):
        make_anticipator(frame_encoder=PixelFrameEncoder(16))
    with pytest.raises(EncoderMismatchError, match="'function'"):
        make_anticipator(frame_encoder=lambda frames: np.zeros((len(frames), 32), np.float32))
    # features extracted with another encoder than the run records
    feats = tmp_path / "feats"
    feats.mkdir()
    (feats / "extract.json").write_text(json.dumps({"encoder": "openclip:mmr-tiny-32", "dim": 32}))
    with pytest.raises(EncoderMismatchError, match=r"extracted with encoder 'openclip:mmr-tiny-32'.*'pixels:32'"):
        make_anticipator(f"data.features_dir={feats}")
    # the run's example bank was built from pixels:32 features: querying as if it were another encoder's is refused
    with pytest.raises(AnticipationInputError, match=r"built with encoder='pixels:32'; the config says "
                                                     r"encoder='openclip:mmr-tiny-32'"):
        make_anticipator("data.encoder=openclip:mmr-tiny-32")


def test_untrained_config_warns_and_a_trained_run_does_not(make_anticipator):
    with pytest.warns(UntrainedModelWarning, match="UNTRAINED"):
        ant = Anticipator.from_pretrained("icvl/tiny_synthetic", intention_llm=_intention_llm())
    assert ant.trained_from is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedModelWarning)
        assert make_anticipator().trained_from


def test_predict_batch_equals_single_queries_and_writes_the_ego4d_submission(make_anticipator, tmp_path):
    from mmreason.data.anticipation import check_ego4d_submission

    ant = make_anticipator()
    rng = np.random.default_rng(3)
    queries = [{"key": f"clip{i}_7", "features": rng.normal(size=(8, 32)).astype(np.float32),
                "observed": OBSERVED[i:] + OBSERVED[:i], "intention": f"The person intends to make {w}."}
               for i, w in enumerate(("soup", "tea", "salad"))]
    batch = ant.predict_batch(queries, k=5, z=4, seed=7)
    assert [p.key for p in batch] == ["clip0_7", "clip1_7", "clip2_7"] and not any(p.answer_cached for p in batch)
    single = make_anticipator()                                   # no shared memo: generated one by one
    for q, p in zip(queries, batch):
        alone = single.predict(**q, k=5, z=4, seed=7)
        assert [s.actions for s in alone.sequences] == [s.actions for s in p.sequences]   # batch-independent
        assert ant.predict(**q, k=5, z=4, seed=7).answer_cached
    path = ant.to_submission(batch, tmp_path / "outputs.json", num_future=4)
    sub = json.loads(path.read_text())
    assert check_ego4d_submission(sub, [q["key"] for q in queries], num_future=4) == []
    assert sub["clip1_7"]["verb"] == [s.verb_ids for s in batch[1].sequences]
    assert sub["clip1_7"]["noun"] == [s.noun_ids for s in batch[1].sequences]
    with pytest.raises(AnticipationInputError, match=r"K x Z = \[\(5, 4\)\]; the submission needs 5 x 20"):
        ant.to_submission(batch, tmp_path / "official.json")
    with pytest.raises(ValueError, match="unique"):
        ant.to_submission([batch[0], batch[0]], tmp_path / "dup.json", num_future=4)


# ================================================================================================ the sampler

@pytest.fixture(scope="module")
def tiny_model():
    from mmreason.config import apply_overrides, merge, read_yaml
    from mmreason.methods.icvl import ICVLExperiment, build_model

    cfg = apply_overrides(merge(ICVLExperiment(), read_yaml("mmreason/methods/icvl/configs/tiny_synthetic.yaml")),
                          ["model.num_examples=2"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.nn.init.normal_(model.fusion.out.weight, std=0.5)        # as after training: the intention matters
    return model, cfg


def _prompts(cfg, n=2):
    from mmreason.methods.icvl.data import build_dataset, collate

    batch = collate([build_dataset(cfg, "val")[i] for i in range(n)])
    prompts = list(batch["prompt"])
    if n > 1:
        prompts[1] = prompts[1].replace("### Query", "### Query\nA longer line here, so the rows are padded.")
    return batch["visual"], prompts, batch["intention"]


def test_greedy_answers_and_scores_equal_hf_generate(tiny_model, monkeypatch):
    """Temperature 0: the batched sampler (one prefill, KV cache, stop at Z mapped actions) gives HF generate's
    greedy candidates, and its score is the mean log-probability of the answer's tokens under the model."""
    from mmreason.data.anticipation import map_sequence

    model, cfg = tiny_model
    monkeypatch.setattr(model.cfg, "temperature", 0.0)
    monkeypatch.setattr(model.cfg, "generation_vocab", "full")     # HF generate samples the whole vocabulary
    visual, prompts, intentions = _prompts(cfg)
    z = 4
    soft = model.visual_tokens(visual, intentions)
    embeds, mask, _ = model._batch(prompts, soft, left_pad=True)
    out = model.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=z * cfg.model.tokens_per_action + 8,
                             do_sample=False, pad_token_id=model.pad_id, eos_token_id=model.eos_id,
                             return_dict_in_generate=True, output_scores=True)
    logp = model.llm.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)   # [B, T]
    monkeypatch.setattr(model.llm, "generate", lambda *a, **kw: pytest.fail("HF generate was called"))
    texts, scores = model._sample([0, 1], model._prefill(embeds, mask), 1, [torch.Generator()] * 2, z)
    for row in range(2):
        hf_tokens = out.sequences[row].tolist()
        ours = model.tokenizer(texts[row], add_special_tokens=False).input_ids
        hf_text = model.tokenizer.decode(hf_tokens, skip_special_tokens=True)
        assert hf_text.startswith(texts[row]) and len(ours) > 0
        assert map_sequence(texts[row], model.vocab, z).pairs == map_sequence(hf_text, model.vocab, z).pairs
        n = len(ours) + (1 if len(hf_tokens) > len(ours) and hf_tokens[len(ours)] == model.eos_id else 0)
        assert scores[row] == pytest.approx(float(logp[row, :n].mean()), abs=1e-4)
    cands = model.anticipate(visual, prompts, intentions, k=1, z=z)
    assert [c[0].pairs for c in cands] == [map_sequence(model.tokenizer.decode(s, skip_special_tokens=True),
                                                        model.vocab, z).pairs for s in out.sequences.tolist()]


def test_a_sample_stops_once_its_text_maps_to_z_actions(tiny_model):
    model, _ = tiny_model
    ids = model.tokenizer("take knife, wash water, cut onion, put pan, wash bowl,", add_special_tokens=False).input_ids
    comma = ids[-1]
    held = [model._holds_z_actions(ids[:i + 1], ids[i], 3) for i in range(len(ids))]
    # 'wash water' maps to nothing: Z = 3 mapped actions are complete at the comma after 'put pan', not before
    assert held.index(True) == ids.index(comma, ids.index(model.tokenizer("pan", add_special_tokens=False).input_ids[0]))
    assert not model._holds_z_actions(ids, comma, 5)


def test_one_prompt_prefill_and_equal_samples_share_a_batch_row(tiny_model, monkeypatch):
    model, cfg = tiny_model
    visual, prompts, intentions = _prompts(cfg)
    calls = []
    forward = model.llm.forward

    def spy(*args, **kwargs):
        x = kwargs.get("inputs_embeds", kwargs.get("input_ids"))
        calls.append(("prefill" if "inputs_embeds" in kwargs else "step", x.shape[0], x.shape[1]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model.llm, "forward", spy)
    monkeypatch.setattr(model.cfg, "temperature", 1e-4)            # every sample draws the same tokens
    model.anticipate(visual, prompts, intentions, k=5, z=4)
    prefills = [c for c in calls if c[0] == "prefill"]
    assert len(prefills) == 1 and prefills[0][1] == 2              # both prompts, once, for all passes
    assert max(c[1] for c in calls if c[0] == "step") <= 2         # 5 x 2 identical samples: 2 batch rows
    calls.clear()
    monkeypatch.setattr(model.cfg, "temperature", 3.0)             # diverse samples split into their own rows
    model.anticipate(visual, prompts, intentions, k=5, z=4)
    assert max(c[1] for c in calls if c[0] == "step") > 5


def test_draw_samples_hf_warped_distribution_and_scores_the_token(tiny_model, monkeypatch):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    model, _ = tiny_model
    monkeypatch.setattr(model.cfg, "temperature", 0.7)
    monkeypatch.setattr(model.cfg, "top_k", 12)
    monkeypatch.setattr(model.cfg, "top_p", 0.8)
    logits = torch.randn(1, 60, generator=torch.Generator().manual_seed(0)) * 2            # [P=1, V]
    warped = TopPLogitsWarper(0.8)(None, TopKLogitsWarper(12)(None, TemperatureLogitsWarper(0.7)(None, logits.clone())))
    expected = warped.softmax(-1)[0]                                                       # HF's sampling distribution
    n = 40000
    tokens, logp = model._draw(logits, torch.zeros(n, dtype=torch.long), torch.rand(n, generator=torch.Generator().manual_seed(1)))
    freq = torch.bincount(tokens, minlength=60).float() / n
    assert (freq[expected == 0] == 0).all()                                                # never outside top-k/top-p
    assert (freq - expected).abs().max() < 0.01
    torch.testing.assert_close(logp, logits.log_softmax(-1)[0, tokens])                     # the model's log p


def _first_tokens(model, monkeypatch, prefix, n: int, length: int) -> tuple[dict, int]:
    """Draw ``n`` answers to the first prompt of ``prefix``: the counts of their first ``length`` tokens (cut after
    EOS; an answer that starts with EOS is never shown to ``_holds_z_actions``) and the most tokens any answer gained
    from one forward of the sampler."""
    from collections import Counter

    answers, lengths = {}, []
    check, step = model._holds_z_actions, model._next_logits

    def spy(tokens, last, z):
        answers.setdefault(id(tokens), tokens)                     # the sampler's own list of this answer's tokens
        return check(tokens, last, z)

    def forward(keep=1, **kw):
        lengths.append({a: len(t) for a, t in answers.items()})   # before each decoding forward
        return step(keep, **kw)

    monkeypatch.setattr(model, "_holds_z_actions", spy)
    monkeypatch.setattr(model, "_next_logits", forward)
    model._sample([0], prefix, n, [torch.Generator().manual_seed(5)], 4)
    monkeypatch.setattr(model, "_holds_z_actions", check)
    monkeypatch.setattr(model, "_next_logits", step)
    gain = max(after[a] - before[a] for before, after in zip(lengths, lengths[1:]) for a in before)
    cut = lambda t: tuple(t[:t.index(model.eos_id) + 1] if model.eos_id in t[:length] else t[:length])   # noqa: E731
    counts = Counter(cut(t) for t in answers.values())
    if len(answers) < n:
        counts[(model.eos_id,)] += n - len(answers)
    return counts, gain


def _exact_first_tokens(model, embeds: torch.Tensor, length: int) -> dict:
    """P(first ``length`` answer tokens, cut after EOS) under the sampling distribution (temperature, top-k, top-p),
    by enumerating its support token by token: one plain forward of the prompt ``embeds [L, H]`` and each prefix."""
    to_token = model._output_head()[1]
    exact = {}

    def walk(seq, p):
        if len(seq) == length or (seq and seq[-1] == model.eos_id):
            exact[tuple(seq)] = p
            return
        x = torch.cat([embeds, model._embed(seq)]) if seq else embeds
        logits, _ = model._next_logits(inputs_embeds=x[None], attention_mask=torch.ones(1, len(x), dtype=torch.long))
        probs, ids = model._warped(logits[:, -1])
        for q, i in zip((probs[0] / probs[0].sum()).tolist(), ids[0].tolist()):
            if q > 0:
                walk(seq + [int(to_token[i])], p * q)

    with torch.inference_mode():
        walk([], 1.0)
    return exact


def test_lookup_draft_continues_the_latest_earlier_occurrence_of_the_longest_suffix():
    from mmreason.methods.icvl.model import _lookup_draft

    assert _lookup_draft([1, 2, 3, 4, 9, 2, 3, 5, 7, 2, 3], 2) == [5, 7]         # latest of the 2-token suffix
    assert _lookup_draft([1, 2, 3, 4, 9, 2, 3, 5, 1, 2, 3], 3) == [4, 9, 2]      # the 3-token suffix wins
    assert _lookup_draft([4, 8, 6, 3], 5) == []                                    # the last token never occurred
    assert _lookup_draft([6, 1, 6], 5) == [1, 6] and _lookup_draft([6], 5) == []


@pytest.mark.parametrize("drafts", ["lookup", "random"])
def test_speculative_sampling_draws_exactly_the_token_by_token_distribution(tiny_model, monkeypatch, drafts):
    """model.draft_tokens: drafts verified in one forward, accepted with probability p(t), a rejected one redrawn from
    p without it. The first three answer tokens of 6000 samples follow the exact sampling distribution (enumerated
    token by token; chi-square), whether the drafts come from the prompt lookup or are random answer tokens (mostly
    rejected), and drafts are accepted: an answer gains several tokens from one forward."""
    import mmreason.methods.icvl.model as icvl_model

    model, cfg = tiny_model
    for key, value in (("temperature", 1.0), ("top_k", 4), ("top_p", 0.95), ("generation_vocab", "actions"),
                       ("draft_tokens", 4)):
        monkeypatch.setattr(model.cfg, key, value)
    visual, prompts, intentions = _prompts(cfg, 1)
    embeds, mask, _ = model._batch(prompts, model.visual_tokens(visual, intentions), left_pad=True)
    prefix = model._prefill(embeds, mask, [model._prompt_ids(prompts[0])])
    if drafts == "random":
        rng = np.random.default_rng(0)
        answer_ids = model.answer_token_ids()
        monkeypatch.setattr(icvl_model, "_lookup_draft",
                            lambda context, limit: rng.choice(answer_ids, size=min(limit, 3)).tolist())
    n = 6000
    counts, gain = _first_tokens(model, monkeypatch, prefix, n, 3)
    exact = _exact_first_tokens(model, embeds[0], 3)
    assert set(counts) <= set(exact)                               # nothing outside the support
    expected = np.array([n * p for p in exact.values()])
    observed = np.array([counts.get(k, 0) for k in exact])
    big = expected >= 5                                            # rare outcomes pooled into one bin
    e = np.append(expected[big], expected[~big].sum())
    o = np.append(observed[big], observed[~big].sum())
    chi2, dof = float(((o - e) ** 2 / np.maximum(e, 1e-9)).sum()), len(e) - 1
    assert dof >= 10 and (chi2 - dof) / np.sqrt(2 * dof) < 4, (chi2, dof)
    assert gain > 1                                                # drafts were accepted


def test_speculative_greedy_answers_are_the_token_by_token_ones_in_fewer_forwards(tiny_run, make_anticipator,
                                                                                    monkeypatch):
    """Temperature 0 with drafts: the same answers and scores as without (the cache of rejected drafts is dropped
    exactly), from fewer forwards on a trained model whose answers repeat what its prompt shows."""
    from mmreason.methods.icvl.data import build_dataset, collate

    ant = make_anticipator("model.generation_dtype=float32")
    model = ant.model
    batch = collate([build_dataset(ant.cfg, "val")[i] for i in range(8)])
    monkeypatch.setattr(model.cfg, "temperature", 0.0)
    forwards = []
    step = model._next_logits
    monkeypatch.setattr(model, "_next_logits", lambda keep=1, **kw: forwards.append(keep) or step(keep, **kw))

    def greedy(drafts):
        monkeypatch.setattr(model.cfg, "draft_tokens", drafts)
        forwards.clear()
        embeds, mask, _ = model._batch(batch["prompt"], model.visual_tokens(batch["visual"], batch["intention"]),
                                       left_pad=True)
        prefix = model._prefill(embeds, mask, [model._prompt_ids(p) for p in batch["prompt"]])
        texts, scores = model._sample(list(range(8)), prefix, 1, [torch.Generator()] * 8, ant.cfg.model.num_future)
        return texts, scores, len(forwards)

    texts, scores, plain = greedy(0)
    fast_texts, fast_scores, fast = greedy(8)
    assert fast_texts == texts and fast_scores == pytest.approx(scores, abs=1e-4)
    assert fast < plain, (fast, plain)


def test_dedup_draws_palm_budget_in_growing_passes(tiny_model, monkeypatch):
    """PALM: answers are taken in order until K distinct, from at most K x (1 + dedupe_retries); passes of K, 2K, ..."""
    model, cfg = tiny_model
    visual, prompts, intentions = _prompts(cfg, 1)
    sizes = []

    def same_answer(rows, prefix, n, generators, z):
        sizes.append(n)
        return ["take knife, cut onion"] * (n * len(rows)), [-1.0] * (n * len(rows))

    monkeypatch.setattr(model, "_sample", same_answer)
    monkeypatch.setattr(model.cfg, "dedupe_retries", 10)
    cands = model.anticipate(visual, prompts, intentions, k=5, z=4)[0]
    assert sizes == [5, 10, 20, 20] and sum(sizes) == 5 * 11                                # the budget, in 4 passes
    assert len(cands) == 5 and len({tuple(c.pairs) for c in cands}) == 1                   # short: repeats
    answers = iter([["take knife, cut onion"] * 5, ["wash pan, cut onion", "wash bowl, cut onion", "wash knife, cut onion", "put pan, cut onion"]
                    + ["put bowl"] * 6])

    def distinct_later(rows, prefix, n, generators, z):
        sizes.append(n)
        return next(answers), [-1.0] * n

    sizes.clear()
    monkeypatch.setattr(model, "_sample", distinct_later)
    cands = model.anticipate(visual, prompts, intentions, k=5, z=4)[0]
    assert sizes == [5, 10] and len({tuple(c.pairs) for c in cands}) == 5                  # stops once K distinct
    assert ("put", "bowl") not in {(model.vocab.verbs.text(v), model.vocab.nouns.text(n))
                                   for c in cands for v, n in c.pairs[:1]}                 # first K distinct, in order


# ------------------------------------------------------------------------------------ answer vocabulary, bfloat16

def _prefix(model, cfg, vocab, n=2):
    """The prompts' prefill under ``model.generation_vocab = vocab``."""
    visual, prompts, intentions = _prompts(cfg, n)
    model.cfg.generation_vocab = vocab
    embeds, mask, _ = model._batch(prompts, model.visual_tokens(visual, intentions), left_pad=True)
    return model._prefill(embeds, mask)


def test_answer_vocabulary_is_the_rows_of_the_answer_tokens_and_renormalises_the_full_softmax(tiny_model, monkeypatch):
    """generation_vocab=actions evaluates the output layer for the answer tokens only: its logits are those rows of
    the full logits, and a drawn token's log p is the full softmax renormalised over them (hand computation)."""
    model, cfg = tiny_model
    monkeypatch.setattr(model.cfg, "generation_vocab", "full")                 # restored after the test
    allowed = torch.tensor(model.answer_token_ids())
    assert set(model.tokenizer.convert_ids_to_tokens(allowed.tolist())) == {
        *VERB_WORDS[:4], *NOUN_WORDS[:4], ",", ".", model.tokenizer.eos_token}  # the tiny tokenizer has no ; or newline
    full = _prefix(model, cfg, "full").logits                                  # [B, V]
    ours = _prefix(model, cfg, "actions").logits                               # [B, A]
    assert ours.shape == (2, len(allowed)) and len(allowed) < full.shape[1] / 4
    torch.testing.assert_close(ours, full[:, allowed])
    p_full = full.softmax(-1)
    renormalised = p_full[:, allowed] / p_full[:, allowed].sum(-1, keepdim=True)   # [B, A]
    assert (p_full[:, allowed].sum(-1) < 0.9).all()                           # the renormalisation matters here
    monkeypatch.setattr(model.cfg, "temperature", 1.0)
    monkeypatch.setattr(model.cfg, "top_k", 0)
    monkeypatch.setattr(model.cfg, "top_p", 1.0)
    n = 40000
    rows, logp = model._draw(ours, torch.arange(n) % 2, torch.rand(n, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(logp.exp(), renormalised[torch.arange(n) % 2, rows])
    for b in range(2):                                                         # and that is what is sampled
        freq = torch.bincount(rows[b::2], minlength=len(allowed)).float() / (n // 2)
        assert (freq - renormalised[b]).abs().max() < 0.015


def test_tokens_outside_the_answer_vocabulary_are_never_drawn(tiny_model, monkeypatch):
    model, cfg = tiny_model
    monkeypatch.setattr(model.cfg, "generation_vocab", "full")
    monkeypatch.setattr(model.cfg, "temperature", 2.0)                        # diverse samples
    allowed = set(model.answer_token_ids())
    seen = _drawn_tokens(model, monkeypatch)

    def drawn(vocab):
        seen.clear()
        model._sample([0, 1], _prefix(model, cfg, vocab), 20, [torch.Generator().manual_seed(i) for i in range(2)], 4)
        return set(seen)

    assert drawn("full") - allowed                                             # the untrained LM writes prompt words
    assert drawn("actions") <= allowed


def _drawn_tokens(model, monkeypatch) -> list[int]:
    """Every token the sampler draws from now on (EOS aside), in order."""
    seen, check = [], model._holds_z_actions
    monkeypatch.setattr(model, "_holds_z_actions", lambda tokens, last, z: seen.append(last) or check(tokens, last, z))
    return seen


def test_greedy_answers_over_the_answer_vocabulary_equal_full_vocabulary_ones(tiny_run, make_anticipator, monkeypatch):
    """Where every greedy token of the full vocabulary is an answer token (a trained model), the answer-vocabulary
    greedy answers are the same, and their scores are at least as high (renormalised over fewer tokens). The
    Anticipator's model (LoRA merged into the weights) answers as the trained model with separate adapters."""
    from mmreason.engine import load_checkpoint
    from mmreason.methods.icvl import build_model
    from mmreason.methods.icvl.data import build_dataset, collate

    ant = make_anticipator("model.generation_dtype=float32")
    separate = build_model(ant.cfg).eval()
    load_checkpoint(separate, tiny_run[0])
    batch = collate([build_dataset(ant.cfg, "val")[i] for i in range(8)])
    z = ant.cfg.model.num_future

    def greedy(model, vocab):
        monkeypatch.setattr(model.cfg, "temperature", 0.0)
        monkeypatch.setattr(model.cfg, "generation_vocab", vocab)
        embeds, mask, _ = model._batch(batch["prompt"], model.visual_tokens(batch["visual"], batch["intention"]),
                                       left_pad=True)
        return model._sample(list(range(8)), model._prefill(embeds, mask), 1, [torch.Generator()] * 8, z)

    seen = _drawn_tokens(ant.model, monkeypatch)
    full_texts, full_scores = greedy(ant.model, "full")
    assert set(seen) <= set(ant.model.answer_token_ids())                     # every greedy token is an answer token
    texts, scores = greedy(ant.model, "actions")
    assert texts == full_texts
    assert all(s >= f - 1e-5 for s, f in zip(scores, full_scores)) and sum(scores) > sum(full_scores)
    lora = [m for m in ant.model.llm.modules() if hasattr(m, "merged_adapters")]
    assert lora and all(m.merged for m in lora)                                  # q_proj, v_proj of every layer
    assert not any(m.merged for m in separate.llm.modules() if hasattr(m, "merged_adapters"))
    separate_texts, separate_scores = greedy(separate, "actions")
    assert separate_texts == texts and separate_scores == pytest.approx(scores, abs=1e-4)


def test_bfloat16_generation_answers_and_training_keeps_float32(make_anticipator):
    """generation_dtype=bfloat16 casts the Anticipator's LLM (inference only); its answers still map to Z actions and
    its greedy answers are the float32 ones; a model built for training keeps llm_dtype."""
    from mmreason.config import apply_overrides, merge, read_yaml
    from mmreason.data.anticipation import map_sequence
    from mmreason.methods.icvl import ICVLExperiment, build_model
    from mmreason.methods.icvl.data import action_texts, build_dataset

    best, exact = {}, {}
    for dtype in ("float32", "bfloat16"):
        ant = make_anticipator(f"model.generation_dtype={dtype}")
        assert ant.model.llm.get_input_embeddings().weight.dtype == getattr(torch, dtype)
        assert ant.model.projector[0].weight.dtype == torch.float32
        windows = build_dataset(ant.cfg, "val").windows
        queries = [{"features": w.visual, "observed": action_texts(w.observed, ant.vocab), "intention": w.intention}
                   for w in windows]
        preds = ant.predict_batch(queries, k=5, z=4)
        full = [map_sequence(s.raw_text, ant.vocab, 4).num_mapped >= 4 for p in preds for s in p.sequences]
        assert np.mean(full) > 0.95                   # float32: 120 of 120 sampled answers, bfloat16: 119 or 120
        ant.model.cfg.temperature = 0.0                                        # greedy
        greedy = [p.sequences[0] for p in ant.predict_batch(queries, k=1, z=4)]
        best[dtype] = [list(zip(s.verb_ids, s.noun_ids)) for s in greedy]
        exact[dtype] = np.mean([b == list(w.future[:4]) for b, w in zip(best[dtype], windows)])
    assert np.mean([a == b for a, b in zip(best["float32"], best["bfloat16"])]) >= 0.9    # 24 of 24 here
    assert exact["bfloat16"] >= 0.15                  # the whole future of 4 actions out of 16 (chance: 16^-4)
    cfg = apply_overrides(merge(ICVLExperiment(), read_yaml("mmreason/methods/icvl/configs/tiny_synthetic.yaml")),
                          ["model.generation_dtype=bfloat16"])
    assert build_model(cfg).llm.get_input_embeddings().weight.dtype == torch.float32


# ================================================================================================ run + bank + CLI

def test_cli_anticipate_with_features(tiny_run, tmp_path, capsys):
    from mmreason.cli.main import main

    run_dir, _ = tiny_run
    np.save(tmp_path / "f.npy", np.random.default_rng(1).normal(size=(8, 32)).astype(np.float32))
    code = main(["anticipate", "--model", str(run_dir), "--features", str(tmp_path / "f.npy"),
                 "--observed", ", ".join(OBSERVED), "-k", "2", "-z", "3"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["sequences"]) == 2 and all(len(s["actions"]) == 3 for s in out["sequences"])


def _ego4d_dataset(root, videos: dict) -> None:
    """A tiny Ego4D LTA dataset over real clips: 13 annotated actions per clip (2 windows of 8 + 4), a taxonomy."""
    root.mkdir(parents=True)
    records = []
    for c, (uid, duration) in enumerate(videos.items()):
        for i in range(13):
            records.append({"clip_uid": uid, "action_idx": i, "verb_label": (i + c) % 3, "noun_label": (2 * i + c) % 4,
                            "action_clip_start_sec": i * duration / 13, "action_clip_end_sec": (i + 1) * duration / 13})
    (root / "fho_lta_train.json").write_text(json.dumps({"clips": records}))
    (root / "fho_lta_taxonomy.json").write_text(json.dumps({"verbs": ["take", "put", "cut"],
                                                            "nouns": ["knife", "onion", "pan", "bowl"]}))


def test_extract_train_then_query_video_without_the_training_data(real_video_paths, tmp_path):
    """The researcher's path: extract features of their videos with an encoder, train ICVL on them, delete the data,
    query a video. The bank comes from the run folder and the video is encoded with the run's encoder."""
    import mmreason

    videos = tmp_path / "videos"
    videos.mkdir()
    clips = {"kitchenA": ("bikes", 10.0), "kitchenB": ("carphone_pristine", 4.0), "kitchenC": ("carphone_distorted", 4.0)}
    for uid, (name, _) in clips.items():
        shutil.copy(real_video_paths[name], videos / f"{uid}.mp4")
    root, feats, run = tmp_path / "ego4d", tmp_path / "feats", tmp_path / "run"
    _ego4d_dataset(root, {uid: d for uid, (_, d) in clips.items()})
    with pytest.warns(RandomWeightsWarning):
        mmreason.extract_features("ego4d_lta", [root / "fho_lta_train.json"], feats, "openclip:mmr-tiny-32",
                                  videos=videos, progress=False)
    config = tmp_path / "icvl_mine.yaml"
    config.write_text(f"""method: icvl
model: {{llm: tiny, tiny_hidden: 64, visual_dim: 32, fusion_dim: 32, fusion_ffn_mult: 2, num_examples: 1,
         text_embedder: bag_of_words, num_future: 4, dedupe_retries: 2}}
data: {{dataset: ego4d, root: {root}, val_file: fho_lta_train.json, features_dir: {feats},
        encoder: "openclip:mmr-tiny-32", observed_source: ground_truth, intentions: none}}
train: {{lr: 0.01, batch_size: 2, epochs: 1, eval_every: -1, progress: false}}
""")
    result = mmreason.train(str(config), [f"train.output_dir={run}"])
    assert result.post_train == str(run / "example_bank")
    shutil.rmtree(root)
    shutil.rmtree(feats)                                            # the training data is gone
    from mmreason.methods.icvl import data

    data._BANKS.clear()                                             # as in a new process: no bank built in memory
    ant = Anticipator.from_pretrained(run)
    assert len(ant.bank) == 6 and sorted(ant.bank.clips) == sorted(list(clips) * 2)
    with pytest.warns(RandomWeightsWarning):                        # the run's encoder, rebuilt for the video
        assert ant.frame_encoder.spec == "openclip:mmr-tiny-32" and ant.frame_encoder.dim == 32
    p = ant.predict(video=videos / "kitchenA.mp4", observed=["take knife", "put onion", "cut pan", "take bowl",
                                                              "put knife", "cut onion", "take pan", "put bowl"], k=5, z=4)
    assert len(p.sequences) == 5 and p.examples[0].key.split("_")[0] in clips and p.intention_source == "none"
    shutil.rmtree(run / "example_bank")                             # no saved bank and no data: one clear error
    with pytest.raises(AnticipationInputError, match=r"no example bank saved at .*example_bank, and the training "
                                                     r"windows to build one cannot be read: .*fho_lta_taxonomy.json"):
        Anticipator.from_pretrained(run)


def _readme_blocks() -> list[tuple[str, str]]:
    """The fenced code blocks of the top-level README's "Interactive anticipation" section: (language, code)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Interactive anticipation", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_readme_anticipation_section_runs_as_written(tmp_path, real_video_paths):
    """The README's commands and Python, run as written in a fresh folder holding a clip.mp4 (a real clip)."""
    import shlex
    import subprocess
    import sys

    from mmreason.cli.main import build_parser

    blocks = _readme_blocks()
    shutil.copy(real_video_paths["bikes"], tmp_path / "clip.mp4")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for lang, code in blocks:
        if lang == "bash" and "mmreason extract" in code:           # real Ego4D paths: the flags must parse
            for cmd in code.replace("\\\n", " ").splitlines():
                if cmd.strip().startswith("mmreason "):
                    build_parser().parse_args(shlex.split(cmd.split("#")[0])[1:])
            continue
        argv = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"README {lang} block failed:\n{code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        ran += 1
    assert ran >= 2 and (tmp_path / "outputs.json").is_file()


@pytest.mark.slow
def test_embedded_gemma_and_minilm_answer_a_real_video(real_video_paths, tmp_path):
    """The packaged models end to end (untrained adapters): Gemma 3 270M writes the intention (text-only, from the
    observed actions) and the K x Z forecast; MiniLM embeds the example texts."""
    with pytest.warns(UntrainedModelWarning):
        ant = Anticipator.from_pretrained("icvl/tiny_synthetic", [
            "model.llm=embedded", "model.text_embedder=minilm", "model.num_examples=2", "model.max_intention_tokens=24",
            "data.intention_backend=hf", "data.intention_model=embedded", f"data.llm_cache_dir={tmp_path / 'cache'}"])
    assert type(ant.model.llm.get_base_model()).__name__ == "Gemma3ForCausalLM"
    p = ant.predict(video=real_video_paths["bigbuckbunny"], observed=OBSERVED, k=2, z=3)
    assert p.intention.startswith("The person intends to") and len(p.intention.split()) >= 5
    assert p.intention_source.startswith("text_only")
    assert len(p.sequences) == 2 and all(len(s.actions) == 3 for s in p.sequences)
    assert all(0 <= v < 4 and 0 <= n < 4 for s in p.sequences for v, n in zip(s.verb_ids, s.noun_ids))
    assert len(p.examples) == 2 and p.examples[0].score >= p.examples[1].score
    assert p.sequences[0].raw_text                                               # Gemma wrote something
    again = ant.predict(video=real_video_paths["bigbuckbunny"], observed=OBSERVED, k=2, z=3)
    assert again.clip_cached and again.answer_cached and again.intention == p.intention
