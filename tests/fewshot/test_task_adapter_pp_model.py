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
from mmreason.methods.task_adapter_pp import METHOD
from mmreason.methods.task_adapter_pp.model import (SubactionBank, combine_scores, load_subactions, stage_alignment,
                                                    stage_windows, transition_features)

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
    ln = torch.nn.LayerNorm(6)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([0.5, 2.0, -1.0, 1.5, 0.2, 3.0]))
        ln.bias.copy_(torch.linspace(-1, 1, 6))
    normed = transition_features(q, ln)
    for t in range(3):
        cur, nxt = q[:, t], q[:, t + 1]  # attention across the 3 query videos at frames t -> t+1
        attended = torch.softmax(cur @ nxt.t() / math.sqrt(6), dim=-1) @ nxt
        torch.testing.assert_close(out[:, t], attended + nxt)
        # released SSv2-Full: LayerNorm (with its affine weights) on the attention output, raw next frame added
        mu, var = attended.mean(-1, keepdim=True), attended.var(-1, unbiased=False, keepdim=True)
        want = (attended - mu) / torch.sqrt(var + 1e-5) * ln.weight + ln.bias + nxt
        torch.testing.assert_close(normed[:, t], want)
    # not the earlier reading (parameter-free LayerNorm on the inputs, normalised frame as the residual)
    assert not torch.allclose(normed, transition_features(F.layer_norm(q, (6,))), atol=1e-3)


def test_transition_layernorm_is_optimised_with_the_adapters(tmp_path):
    """The released CrossAttention's nn.LayerNorm sits outside the frozen encoders, so run.py's SGD (all
    requires_grad parameters) trains it: weight 1 / bias 0 at init, then moved by the engine and checkpointed."""
    from mmreason.engine import Trainer, load_checkpoint, trainable_state_dict

    torch.manual_seed(0)
    cfg = tiny_cfg("model.transition_norm=true", "train.max_steps=3", "train.lr=0.05", "train.progress=false",
                   "train.eval_every=-1")
    m = METHOD.build_model(cfg)
    ln = m.transition_ln
    assert isinstance(ln, torch.nn.LayerNorm) and ln.normalized_shape == (32,)  # E = CLIP embed dim
    assert torch.equal(ln.weight, torch.ones(32)) and torch.equal(ln.bias, torch.zeros(32))
    m.loss(METHOD.build_dataset(cfg, "train")[0])["loss"].backward()
    assert float(ln.weight.grad.abs().sum()) > 0 and float(ln.bias.grad.abs().sum()) > 0
    m.zero_grad()
    trainer = Trainer(m, cfg.train, METHOD.build_dataset(cfg, "train"), collate_fn=METHOD.collate_fn,
                      run_dir=tmp_path / "run", config=cfg)
    assert any(p is ln.weight for p in trainer.params) and any(p is ln.bias for p in trainer.params)
    trainer.fit()
    assert not torch.equal(ln.weight, torch.ones(32)) and not torch.equal(ln.bias, torch.zeros(32))
    assert {"transition_ln.weight", "transition_ln.bias"} <= set(trainable_state_dict(m))
    reloaded = METHOD.build_model(cfg)
    load_checkpoint(reloaded, tmp_path / "run")
    torch.testing.assert_close(reloaded.transition_ln.weight, ln.weight, rtol=0, atol=0)


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


def test_released_orientation_on_a_crafted_two_way_episode():
    """run.py: vis_dis, sem_dis = model(x) where models.py returns (sem [class x query], vis [query x class]);
    logits = vis_dis * sem_dis * 64, elementwise: entry [i, c] = sem[query c, class i] * vis[query i, class c]."""
    vis = torch.tensor([[0.9, 0.2], [0.1, 0.8]])  # [query, class]
    sem = torch.tensor([[0.5, 0.3], [0.6, 0.4]])  # [query, class]
    torch.testing.assert_close(combine_scores(vis, sem, "paper"), torch.tensor([[0.45, 0.06], [0.06, 0.32]]))
    torch.testing.assert_close(combine_scores(vis, sem, "released"), torch.tensor([[0.45, 0.12], [0.03, 0.32]]))
    with pytest.raises(ValueError, match="one query per class; got 4 queries for 2 classes"):
        combine_scores(torch.rand(4, 2), torch.rand(4, 2), "released")


def released_logits(model, episode, n_way: int, k_shot: int) -> torch.Tensor:
    """The released forward (models.py TaskAdapter.forward + run.py's loss input), re-derived step by step on the
    project's towers: T = 8 frames, 3 stages, one query per class ordered by class."""
    s, q = model.visual(episode["support"]), model.visual(episode["query"])  # [NK, 8, E], [N, 8, E]
    proto = s.reshape(n_way, k_shot, 8, -1).mean(1)  # [N, 8, E]
    q_t = q.permute(1, 0, 2)  # [8, NQ, E]
    q_aft = []
    for f in range(7):  # CrossAttention(q_f, q_{f+1}, q_{f+1}) + q_{f+1}
        attn = torch.softmax(q_t[f] @ q_t[f + 1].t() * q.shape[-1] ** -0.5, dim=-1)
        q_aft.append(model.transition_ln(attn @ q_t[f + 1]) + q_t[f + 1])
    text = model.text(model.class_tokens(episode["class_names"])).permute(1, 0, 2)  # [3, N, E]

    def cos(x, y):
        return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).t()

    cos_score = sum(cos(text[i], q_aft[2 * i]) + cos(text[i], q_aft[2 * i + 1]) + cos(text[i], q_aft[2 * i + 2])
                    for i in range(3)) / 9  # [N (class), NQ (query)]
    dists = cos(q.mean(1), proto.mean(1))  # [NQ, N]
    vis_dis, sem_dis = cos_score, dists  # run.py unpacks (sem, vis) as (vis_dis, sem_dis)
    return vis_dis * sem_dis * 64


def test_released_orientation_reproduces_the_released_logits():
    torch.manual_seed(0)
    frames8 = ["model.num_frames=8", "data.num_frames=8", "data.n_way=2", "model.transition_norm=true"]
    cfg = tiny_cfg(*frames8, "model.sem_orientation=released")
    m = METHOD.build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.requires_grad:  # trained-looking adapters and LayerNorm, so every part of the head matters
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    episode = METHOD.build_dataset(cfg, "test")[3]
    with torch.no_grad():
        scores = m.scores(episode)
        want = released_logits(m, episode, n_way=2, k_shot=1)
    torch.testing.assert_close(scores["logits"], want)
    assert not torch.allclose(scores["vis"] * scores["sem"] * 64, want, atol=1e-3)  # the paper orientation differs
    with pytest.raises(ValueError, match="sem_orientation=released needs data.n_query=1"):
        METHOD.build_model(tiny_cfg(*frames8, "model.sem_orientation=released", "data.n_query=2"))


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


def test_benchmark_subactions_come_from_the_knowledge_root_not_the_working_directory(tmp_path, monkeypatch):
    from mmreason.experiment import load_experiment
    from mmreason.methods.task_adapter_pp import subactions_for

    _, cfg = load_experiment("task_adapter_pp/ssv2_full_5w1s")
    monkeypatch.setenv("MMREASON_KNOWLEDGE", str(tmp_path / "kn"))
    monkeypatch.chdir(tmp_path)                       # nothing is read relative to the working directory
    with pytest.raises(FileNotFoundError, match=r"ssv2/subactions.jsonl.*mmreason generate subactions --dataset ssv2"):
        subactions_for(cfg)
    (tmp_path / "kn" / "ssv2").mkdir(parents=True)
    (tmp_path / "kn" / "ssv2" / "subactions.jsonl").write_text(
        json.dumps({"class": "pushing something", "subactions": ["reach", "push", "let go"]}) + "\n")
    mapping, source = subactions_for(cfg)              # ssv2_full -> the ssv2 family asset
    assert mapping == {"pushing something": ["reach", "push", "let go"]}
    assert source == str(tmp_path / "kn" / "ssv2" / "subactions.jsonl")
