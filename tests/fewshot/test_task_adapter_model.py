"""Task-Adapter: adapted blocks reduce to frozen CLIP at init, task attention's symmetries, training behaviour."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mmreason.config import apply_overrides
from mmreason.methods.task_adapter import METHOD
from mmreason.methods.task_adapter.model import (episode_features, evaluate_episodes,
                                                 prototype_cosine)

TINY = ["model.clip_model=mmr-tiny-32", "model.num_frames=4", "data.num_frames=4", "data.image_size=32",
        "data.resize_size=32", "data.synthetic_vary=direction", "data.synthetic_directions=24", "data.seed=0"]


def tiny_cfg(*extra: str):
    return apply_overrides(METHOD.config_cls(), TINY + list(extra))


def randomise_adapters(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in module.named_parameters():
            if "adapter" in n or "temporal_embedding" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def videos(b: int, seed: int, t: int = 4) -> torch.Tensor:
    return torch.randn(b, t, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return METHOD.build_model(tiny_cfg("model.adapter_layers=2")).eval()


def test_zero_initialised_adapters_leave_frozen_clip_unchanged(model):
    from mmreason.clip.towers import CLIPVisionTower

    vision = copy.deepcopy(model.visual)
    with torch.no_grad():
        for adapters in vision.block_adapters.values():
            adapters.task_adapter.fc2.weight.zero_()  # the released code does not zero-init this one
            adapters.task_adapter.fc2.bias.zero_()
    x = videos(3, 1)
    ref = CLIPVisionTower.forward(vision.tower, x)  # plain frozen CLIP per frame
    torch.testing.assert_close(vision(x), ref)
    randomise_adapters(vision)
    assert not torch.allclose(vision(x), ref, atol=1e-3)


def test_released_init_only_task_adapter_is_nonzero(model):
    for adapters in model.visual.block_adapters.values():
        for name in ("t_adapter", "s_adapter", "mlp_adapter"):
            assert float(getattr(adapters, name).fc2.weight.detach().abs().sum()) == 0.0
        assert float(adapters.task_adapter.fc2.weight.detach().abs().sum()) > 0.0
        assert adapters.task_adapter.fc1.out_features == 16  # 64 -> 16 -> 64 (ratio 1/4, as 768 -> 192)
    assert sorted(model.visual.block_adapters) == ["0", "1"]


def test_task_attention_is_permutation_equivariant_over_videos(model):
    vision = copy.deepcopy(model.visual)
    randomise_adapters(vision, seed=3)
    x = videos(5, 2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(vision(x[perm]), vision(x)[perm], atol=1e-5, rtol=1e-5)
    # and the videos do interact: changing video 0 changes the features of video 1
    x2 = x.clone()
    x2[0] = videos(1, 9)[0]
    assert not torch.allclose(vision(x2)[1], vision(x)[1], atol=1e-4)


def test_separate_scope_keeps_support_independent_of_queries(model):
    vision = copy.deepcopy(model.visual)
    randomise_adapters(vision, seed=4)
    support, q1, q2 = videos(3, 5), videos(2, 6), videos(2, 7)
    s_a, _ = episode_features(vision, support, q1, "separate")
    s_b, _ = episode_features(vision, support, q2, "separate")
    torch.testing.assert_close(s_a, s_b)
    j_a, _ = episode_features(vision, support, q1, "joint")
    j_b, _ = episode_features(vision, support, q2, "joint")
    assert not torch.allclose(j_a, j_b, atol=1e-4)  # joint scope: support attends to the queries


def test_released_multi_gpu_scope_limits_task_attention_to_contiguous_chunks(model):
    """task_attention_chunks=3 on 5 support videos = the released nn.DataParallel over 3 GPUs: torch.chunk groups
    [0, 1], [2, 3], [4]; a video's features depend only on the videos of its own group."""
    vision = copy.deepcopy(model.visual)
    randomise_adapters(vision, seed=5)
    support, query = videos(5, 10), videos(5, 11)
    changed = support.clone()
    changed[3] = videos(1, 12)[0]
    base, _ = episode_features(vision, support, query, "separate", chunks=3)
    out, _ = episode_features(vision, changed, query, "separate", chunks=3)
    torch.testing.assert_close(out[[0, 1, 4]], base[[0, 1, 4]], rtol=0, atol=0)  # other groups: bit-identical
    assert not torch.allclose(out[2], base[2], atol=1e-4)  # video 2 shares its group with video 3
    torch.testing.assert_close(base[2:4], vision(support[2:4]))  # each group is one backbone call of its own
    torch.testing.assert_close(base[4:], vision(support[4:]))
    # the paper scope (one call): every support video attends to video 3
    full, _ = episode_features(vision, support, query, "separate")
    full_changed, _ = episode_features(vision, changed, query, "separate")
    assert not torch.allclose(full_changed[0], full[0], atol=1e-4)
    assert not torch.allclose(base[0], full[0], atol=1e-4)  # and the two scopes give different features


def test_chunk_count_must_be_positive():
    with pytest.raises(ValueError, match="task_attention_chunks=0 must be >= 1"):
        METHOD.build_model(tiny_cfg("model.task_attention_chunks=0"))


def test_prototype_cosine_matches_hand_computation():
    torch.manual_seed(0)
    support, query = torch.randn(6, 4, 8), torch.randn(3, 4, 8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    scores = prototype_cosine(support, labels, query, 3)
    for i in range(3):
        for c in range(3):
            proto = support[labels == c].mean(dim=(0, 1))
            want = F.cosine_similarity(query[i].mean(0), proto, dim=0)
            torch.testing.assert_close(scores[i, c], want)


def test_adapter_layers_follow_config():
    vision = METHOD.build_model(tiny_cfg("model.adapter_layers=1")).visual
    assert list(vision.block_adapters) == ["1"]  # the last layer only
    with pytest.raises(ValueError, match="adapter_layers=3"):
        METHOD.build_model(tiny_cfg("model.adapter_layers=3"))
    with pytest.raises(ValueError, match="num_frames"):
        METHOD.build_model(tiny_cfg("data.num_frames=8"))


def _train(model, dataset, steps: int, lr: float):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for i in range(steps):
        opt.zero_grad()
        model.loss(dataset[i])["loss"].backward()
        opt.step()
    return model


@pytest.mark.parametrize("adapter", ["task", "lora"])
def test_only_adapters_train_and_frozen_weights_stay_bit_identical(adapter):
    torch.manual_seed(0)
    cfg = tiny_cfg(f"model.adapter={adapter}", "model.lora_rank=4")
    m = METHOD.build_model(cfg)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    key = "adapter" if adapter == "task" else "lora_"
    assert trainable and all(key in n or n.endswith("temporal_embedding") for n in trainable)
    frozen_before = {n: p.detach().clone() for n, p in m.named_parameters() if not p.requires_grad}
    trainable_before = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    ds = METHOD.build_dataset(cfg, "train")
    m.loss(ds[0])["loss"].backward()
    for n, p in m.named_parameters():
        assert (p.grad is not None) == (n in trainable), n
    _train(m, ds, 3, 1e-2)
    for n, p in m.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n
    assert any(not torch.equal(p, trainable_before[n]) for n, p in m.named_parameters() if n in trainable)


def test_lora_fails_loudly_on_unknown_target():
    with pytest.raises(ValueError, match="'attn.qkv' not found"):
        METHOD.build_model(tiny_cfg("model.adapter=lora", "model.lora_targets=[attn.qkv]"))


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["separate", "joint"])
def test_training_lifts_accuracy_on_unseen_motion_directions(scope):
    """5-way 1-shot, classes = motion directions (test directions never seen in training), frozen random tiny
    CLIP: the frame-averaged prototype barely separates directions; trained adapters must read motion."""
    torch.manual_seed(0)
    cfg = tiny_cfg(f"model.task_attention_scope={scope}", "data.test_episodes=100")
    m = METHOD.build_model(cfg)
    test = METHOD.build_dataset(cfg, "test")
    before = evaluate_episodes(m, test)["accuracy"]
    _train(m, METHOD.build_dataset(cfg, "train"), 300, 3e-3)
    after = evaluate_episodes(m, test)
    assert after["accuracy"] > max(40.0, before + 10.0), (before, after)  # chance = 20%
