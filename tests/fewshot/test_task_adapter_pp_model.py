"""Task-Adapter++: order adapters, stage windows, fine-grained alignment formulas, sub-action files, learning."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmreason.clip.towers import block_attention
from mmreason.config import apply_overrides
from mmreason.methods.task_adapter.model import evaluate_episodes
from mmreason.methods.task_adapter_pp import METHOD
from mmreason.methods.task_adapter_pp.model import (SubactionBank, load_subactions, stage_alignment, stage_windows,
                                                    transition_features)

CORPUS = Path("/work/shared/reference/task_adapter_pp_corpus")
TINY = ["model.clip_model=mmr-tiny-32", "model.num_frames=4", "data.num_frames=4", "data.image_size=32",
        "data.resize_size=32", "data.synthetic_vary=direction", "data.synthetic_directions=24", "data.seed=0",
        "model.text_adapter_layers=2"]


def tiny_cfg(*extra: str):
    return apply_overrides(METHOD.config_cls(), TINY + list(extra))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return METHOD.build_model(tiny_cfg()).eval()


def _tokens(model, n_classes=2, s=3):
    prompts = [[f"A video of action about class {c}: step {i} of the action" for i in range(s)] for c in range(n_classes)]
    return torch.stack([model.tokenize(p) for p in prompts])  # [N, S, C]


def test_zero_initialised_order_adapters_leave_text_tower_unchanged(model):
    text = copy.deepcopy(model.text)
    tokens = _tokens(model)
    plain = text.tower(tokens.flatten(0, 1)).view(2, 3, -1)  # frozen CLIP text features
    torch.testing.assert_close(text(tokens), plain)
    assert text.order_adapters["1"].fc1.out_features == 8  # 32 -> 8 -> 32 (as 512 -> 128 -> 512)


def test_order_attention_with_one_subaction_is_plain_attention_per_position(model):
    """With S = 1 the sibling axis has one element: softmax = 1, so the order attention at each token
    position is out_proj(W_v ln_1(x) + b_v) of that position alone."""
    block = model.text.tower.blocks[1]
    x = torch.randn(5 * 7, 1, 32)  # [(N C), S=1, W]
    mha = block.attn
    width = x.shape[-1]
    w_v, b_v = mha.in_proj_weight[2 * width:], mha.in_proj_bias[2 * width:]
    want = mha.out_proj(F.linear(block.ln_1(x), w_v, b_v))
    torch.testing.assert_close(block_attention(block, x), want)
    # and the whole adapted tower with S=1 differs from plain CLIP only by adapter(that V-path)
    text = copy.deepcopy(model.text)
    tokens = _tokens(model, n_classes=2, s=1)
    with torch.no_grad():
        for a in text.order_adapters.values():
            a.fc2.weight.normal_(0, 0.5)
    assert text(tokens).shape == (2, 1, 32)


def test_order_attention_mixes_subactions_of_one_class_only(model):
    text = copy.deepcopy(model.text)
    with torch.no_grad():
        for a in text.order_adapters.values():
            a.fc2.weight.normal_(0, 0.5)
    tokens = _tokens(model, n_classes=2)
    base = text(tokens)
    other_class = tokens.clone()
    other_class[1] = _tokens(model, n_classes=3)[2]  # change every prompt of class 1
    out = text(other_class)
    torch.testing.assert_close(out[0], base[0])
    sibling = tokens.clone()
    sibling[0, 2] = other_class[1, 2]  # change sub-action 2 of class 0
    out = text(sibling)
    assert not torch.allclose(out[0, 0], base[0, 0], atol=1e-4)  # sub-action 0 attends to sub-action 2


def test_stage_windows():
    assert stage_windows(7, 3) == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]  # released: T = 8, S = 3
    assert stage_windows(3, 3) == [[0, 1], [0, 1], [1, 2]]  # T = 4: short windows may coincide
    assert stage_windows(7, 1) == [list(range(7))]
    assert stage_windows(15, 3) == [list(range(0, 6)), list(range(4, 10)), list(range(9, 15))]  # T = 16
    for t in range(1, 20):
        for s in range(1, 6):
            w = stage_windows(t, s)
            assert len(w) == s and len({len(x) for x in w}) == 1
            assert w[0][0] == 0 and w[-1][-1] == t - 1  # first stage starts, last stage ends the video
            assert all(x == list(range(x[0], x[0] + len(x))) for x in w)  # contiguous
            assert [x[0] for x in w] == sorted(x[0] for x in w)  # stages in temporal order
            covered = set().union(*map(set, w))
            assert covered == set(range(t)) or len(w[0]) * s < t  # no gaps unless windows cannot cover


def test_transition_features_match_hand_computation():
    torch.manual_seed(0)
    q = torch.randn(3, 4, 6)  # [NQ, T, E]
    out = transition_features(q)
    assert out.shape == (3, 3, 6)
    for t in range(3):
        cur, nxt = q[:, t], q[:, t + 1]  # attention across the 3 query videos at frames t -> t+1
        want = torch.softmax(cur @ nxt.t() / math.sqrt(6), dim=-1) @ nxt + nxt
        torch.testing.assert_close(out[:, t], want)
    normed = transition_features(q, normalize=True)
    torch.testing.assert_close(normed, transition_features(F.layer_norm(q, (6,))))


def test_stage_alignment_matches_hand_computation():
    torch.manual_seed(1)
    q, e = torch.randn(2, 8, 5), torch.randn(4, 3, 5)  # 2 queries, T=8; 4 classes, S=3
    a = transition_features(q)
    want = torch.zeros(2, 4)
    for i in range(2):
        for c in range(4):
            total = 0.0
            for stage, window in enumerate([[0, 1, 2], [2, 3, 4], [4, 5, 6]]):
                for j in window:
                    total += F.cosine_similarity(a[i, j], e[c, stage], dim=0)
            want[i, c] = total / 9
    torch.testing.assert_close(stage_alignment(q, e), want)


def test_logits_are_vis_times_sem_times_temperature(model):
    ds = METHOD.build_dataset(tiny_cfg(), "test")
    ep = ds[0]
    with torch.no_grad():
        s = model.scores(ep)
    assert s["logits"].shape == (5, 5)
    torch.testing.assert_close(s["logits"], s["vis"] * s["sem"] * 64.0)
    assert model.prompts(ep["class_names"][0])[0].startswith(f"A video of action about {ep['class_names'][0]}: ")


def test_official_corpus_and_curated_jsonl_load(tmp_path):
    corpus = load_subactions(str(CORPUS / "classes_hmdb51.yml"))
    assert len(corpus) >= 51
    bank = SubactionBank(corpus, 3, "hmdb51 corpus")
    assert bank["brush_hair"] == bank["Brush Hair"] == ['Taking the brush.', 'Starting to brush from the roots.',
                                                         'Moving the brush through the hair to the ends.']
    ssv2 = SubactionBank(load_subactions(str(CORPUS / "classes_somethingotam.yml")), 3)
    assert ssv2["Pouring something into something"][0].startswith("The person holds the container")
    jsonl = tmp_path / "subactions.jsonl"
    jsonl.write_text("".join(json.dumps({"class": c, "subactions": [f"{c} {i}" for i in range(3)]}) + "\n"
                             for c in ("clap", "wave")))
    assert load_subactions(str(jsonl)) == {"clap": ["clap 0", "clap 1", "clap 2"], "wave": ["wave 0", "wave 1", "wave 2"]}
    with pytest.raises(KeyError, match="no sub-actions for class 'brush_hiar'.*did you mean"):
        bank["brush_hiar"]
    with pytest.raises(ValueError, match="class 'clap' has 3 sub-actions, model.num_stages is 4"):
        SubactionBank(load_subactions(str(jsonl)), 4, str(jsonl))
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        load_subactions(str(tmp_path / "nothere.jsonl"))


def test_real_config_needs_a_subaction_file():
    cfg = apply_overrides(METHOD.config_cls(), TINY + ["data.dataset=split_files"])
    with pytest.raises(ValueError, match="subactions_path is empty"):
        METHOD.build_model(cfg)


@pytest.mark.parametrize("adapter", ["task", "lora"])
def test_only_adapters_train_and_frozen_weights_stay_bit_identical(adapter):
    torch.manual_seed(0)
    cfg = tiny_cfg(f"model.adapter={adapter}", "model.lora_rank=4")
    m = METHOD.build_model(cfg)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    key = "adapter" if adapter == "task" else "lora_"
    assert any(n.startswith("text.") for n in trainable) and any(n.startswith("visual.") for n in trainable)
    assert all(key in n or n.endswith("temporal_embedding") for n in trainable)
    frozen = {n: p.detach().clone() for n, p in m.named_parameters() if not p.requires_grad}
    ds = METHOD.build_dataset(cfg, "train")
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    for i in range(2):
        opt.zero_grad()
        m.loss(ds[i])["loss"].backward()
        for n, p in m.named_parameters():
            assert (p.grad is not None) == (n in trainable), n
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in m.named_parameters() if n in frozen)


@pytest.mark.slow
def test_training_lifts_accuracy_on_unseen_motion_directions():
    torch.manual_seed(0)
    cfg = tiny_cfg("data.test_episodes=100")
    m = METHOD.build_model(cfg)
    test = METHOD.build_dataset(cfg, "test")
    before = evaluate_episodes(m, test)["accuracy"]
    train = METHOD.build_dataset(cfg, "train")
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    m.train()
    for i in range(300):
        opt.zero_grad()
        m.loss(train[i])["loss"].backward()
        opt.step()
    after = evaluate_episodes(m, test)
    assert after["accuracy"] > max(35.0, before + 10.0), (before, after)  # chance = 20%
