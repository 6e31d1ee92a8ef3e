"""STDD text side and alignment (§3.2, §3.3) and weight averaging (§3.4)."""
import math

import pytest
import torch

from mmreason.methods.stdd.model import ResidualProjector, class_prompt_features, frame_prompt_logits, mean_pool_logits


def test_frame_prompt_logit_on_a_hand_built_tensor():
    # 1 video, 2 frames; 1 class with 2 prompts; unit vectors so cosines are the dot products
    e = torch.eye(3)
    frames = torch.stack([e[0], e[1]])[None]  # [1, T=2, 3]
    prompts = torch.stack([e[0], (e[0] + e[2]) / math.sqrt(2)])[None]  # [K=1, P=2, 3]
    # s[t, p]: t0 = [1, 1/sqrt2], t1 = [0, 0]
    # mean_t max_p = (1 + 0) / 2 = 0.5 ; mean_p max_t = (1 + 1/sqrt2) / 2
    expected = 0.5 * (0.5 + (1 + 1 / math.sqrt(2)) / 2) * 10.0
    got = frame_prompt_logits(frames, prompts, scale=10.0)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_frame_prompt_logits_batch_matches_loop():
    torch.manual_seed(0)
    f, g = torch.randn(3, 4, 8), torch.randn(5, 6, 8)
    got = frame_prompt_logits(f, g, 2.0)
    fn, gn = torch.nn.functional.normalize(f, dim=-1), torch.nn.functional.normalize(g, dim=-1)
    for b in range(3):
        for k in range(5):
            s = 2.0 * fn[b] @ gn[k].t()  # [T, P]
            ref = 0.5 * (s.max(1).values.mean() + s.max(0).values.mean())
            assert got[b, k].item() == pytest.approx(ref.item(), rel=1e-5)


def test_mean_pool_averages_per_frame_logits_as_released():
    """The released 2-D classifier: s * mean_t(normalize(f_t) @ C^T), the frame mean NOT re-normalised."""
    e = torch.eye(3)
    frames = torch.stack([3.0 * e[0], 0.5 * e[1]])[None]  # [1, T=2, 3]; per-frame norms differ on purpose
    prompts = torch.stack([torch.stack([e[0], e[0]]),  # class 0: both prompts e0
                           torch.stack([e[0], e[1]])])  # class 1: mean of e0, e1 -> (e0 + e1) / sqrt(2)
    # frame t0 = e0, t1 = e1 after normalisation; C0 = e0, C1 = (e0 + e1) / sqrt(2)
    # class 0: (1 + 0) / 2 = 0.5 ; class 1: (1/sqrt2 + 1/sqrt2) / 2 = 1/sqrt2   (x scale 10)
    got = mean_pool_logits(frames, prompts, 10.0)
    torch.testing.assert_close(got, torch.tensor([[5.0, 10.0 / math.sqrt(2)]]))
    # the old classifier re-normalised the frame mean ((e0 + e1) / sqrt2): [7.07, 10.0] - different logits
    assert not torch.allclose(got, torch.tensor([[10.0 / math.sqrt(2), 10.0]]), atol=1e-3)


def test_residual_projector_starts_as_identity():
    torch.manual_seed(0)
    proj = ResidualProjector(16, 0.1)
    x = torch.randn(4, 16)
    assert torch.equal(proj(x), x) and proj.fc1.bias is None and proj.fc2.weight.abs().sum() == 0
    # a seed makes the initial projector reproducible without touching the global RNG
    state = torch.random.get_rng_state()
    a, b = ResidualProjector(16, 0.1, seed=5), ResidualProjector(16, 0.1, seed=5)
    assert torch.equal(a.fc1.weight, b.fc1.weight) and torch.equal(torch.random.get_rng_state(), state)


def _distill_model(tiny_experiment, mode: str):
    method, cfg = tiny_experiment("stdd", model={"distill_mode": mode})
    model = method.build_model(cfg).eval()  # eval: deterministic masks, so the hand computation can re-run them
    with torch.no_grad():
        torch.manual_seed(1)
        model.projector.fc2.weight.normal_(0.0, 0.5)  # a non-trivial projector (it starts as the identity)
    frames = torch.randn(2, cfg.data.num_frames, 3, cfg.data.image_size, cfg.data.image_size)
    return model, frames


@pytest.mark.parametrize("mode", ["paper", "released"])
def test_distillation_term_value_and_gradient(mode, tiny_experiment):
    model, frames = _distill_model(tiny_experiment, mode)
    feats = model.vision(frames)  # [B, T, E], with the graph to the vision tower
    term = model.distillation(frames, feats)
    # hand computation: the projector sees the L2-normalised frame feature, target = frozen CLIP's frame feature
    with torch.no_grad():
        f = feats / feats.norm(dim=-1, keepdim=True)
        w1, w2 = model.projector.fc1.weight, model.projector.fc2.weight
        student = f + 0.1 * torch.nn.functional.gelu(f @ w1.T) @ w2.T
        target = model.raw_vision(frames)
        cos = (student * target).sum(-1) / (student.norm(dim=-1) * target.norm(dim=-1))
        expected = 1.0 - cos.mean()
        # the old code fed the raw (unnormalised) feature to the projector: a different value
        raw_student = feats + 0.1 * torch.nn.functional.gelu(feats @ w1.T) @ w2.T
        old = 1.0 - torch.nn.functional.cosine_similarity(raw_student, target, dim=-1).mean()
    assert term.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert abs(old.item() - expected.item()) > 1e-3
    wrt = [model.projector.fc1.weight, model.projector.fc2.weight, model.vision.tower.conv1.weight]
    if mode == "paper":  # the term trains the projector and the vision tower
        grads = torch.autograd.grad(term, wrt)
        assert all(g.abs().sum() > 0 for g in grads)
        assert model.projector.fc1.weight.requires_grad
    else:  # released: computed under no_grad, so no gradient anywhere and the projector is not trained
        assert not term.requires_grad
        assert not any(p.requires_grad for p in model.projector.parameters())
        out = model.loss({"frames": frames, "labels": torch.tensor([0, 1])})
        ce = torch.nn.functional.cross_entropy(model.align(model.vision(frames), model.train_prompts),
                                               torch.tensor([0, 1]))
        w = model.vision.tower.conv1.weight
        torch.testing.assert_close(torch.autograd.grad(out["loss"], w)[0], torch.autograd.grad(ce, w)[0])
        assert out["distill"].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


def test_logit_scale_is_learned_as_released_or_fixed(tiny_experiment):
    method, cfg = tiny_experiment("stdd")
    model = method.build_model(cfg).eval()
    assert model.logit_scale.requires_grad and model.scale.item() == pytest.approx(cfg.model.logit_scale)
    frames = torch.randn(2, cfg.data.num_frames, 3, cfg.data.image_size, cfg.data.image_size)
    logits = model(frames)
    with torch.no_grad():
        model.logit_scale.add_(math.log(2.0))  # doubling the scale doubles every logit
    torch.testing.assert_close(model(frames), 2 * logits)
    from mmreason.engine.checkpoint import trainable_state_dict

    assert "logit_scale" in trainable_state_dict(model)
    fixed = method.build_model(tiny_experiment("stdd", model={"learn_logit_scale": False})[1])
    assert not fixed.logit_scale.requires_grad and "logit_scale" not in trainable_state_dict(fixed)


def test_graph_prompt_features_are_templates_times_continuations(tiny64):
    from mmreason.clip import TextFeatureCache

    cache = TextFeatureCache(tiny64.text, tiny64.tokenize)
    records = [{"class": "brush hair", "xprompt_oo": ["where a hand holds a hairbrush"], "xprompt_ao": [],
                "xprompt_aa": ["starting with picking up the brush", "where brushing precedes styling"]},
               {"class": "cartwheel", "xprompt_oo": ["where arms support the body"], "xprompt_ao": [], "xprompt_aa": []}]
    templates = ["a video of {}.", "a person {}."]
    feats = class_prompt_features(cache.encode, ["brush hair", "cartwheel"], prompt_type="graph",
                                  templates=templates, num_templates=2, graph_records=records)
    assert feats.shape == (2, 2 * 4, 32)  # K=2, P = 2 templates x (1 + 3 continuations), padded by cycling
    direct = tiny64.text(tiny64.tokenize(["a person brush hair, where a hand holds a hairbrush."])).detach()
    torch.testing.assert_close(feats[0, 5], torch.nn.functional.normalize(direct[0], dim=-1), rtol=1e-4, atol=1e-5)
    # cartwheel has 2 prompts per template; as in the released text2feature each template's block is cycled to
    # the longest block (4): [t1 c, t1 cx, t1 c, t1 cx | t2 c, t2 cx, t2 c, t2 cx]
    torch.testing.assert_close(feats[1, 2:4], feats[1, 0:2])
    torch.testing.assert_close(feats[1, 6:8], feats[1, 4:6])
    second = tiny64.text(tiny64.tokenize(["a person cartwheel."])).detach()
    torch.testing.assert_close(feats[1, 4], torch.nn.functional.normalize(second[0], dim=-1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="lacks 1 of the 1 classes: 'fencing'"):
        class_prompt_features(cache.encode, ["fencing"], prompt_type="graph", templates=templates, num_templates=2,
                              graph_records=records)


ASKG_YAML = """\
brush hair:
  label: brush hair
  obj_en_li:
  - hairbrush
  - hand
  obj_rel_triples:
  - <hand, holds, hairbrush>
  act_obj_triples:
  - <brush hair, involves, hairbrush>
  sub_act_en_li:
  - picking up the hairbrush
  - brushing the hair
  act_rel_triples:
  - <brush hair, starts with, picking up the hairbrush>
"""
XPROMPT_YAML = """\
brush hair:
  label: brush hair
  xprompt_oo:
    - where a hand holds a hairbrush
  xprompt_ao:
    - which involves a hairbrush
  xprompt_aa:
    - starting with picking up the hairbrush
"""


def test_official_stdd_files_build_prompt_features(tiny64, tmp_path):
    """The official classes_ASKG / classes_xprompt YAML layout (as in STDD's label_db) -> [K, P, E]."""
    from mmreason.clip import TextFeatureCache
    from mmreason.methods.stdd.model import load_graph_records

    (tmp_path / "askg.yml").write_text(ASKG_YAML)
    (tmp_path / "xprompt.yml").write_text(XPROMPT_YAML)
    records = load_graph_records(str(tmp_path / "askg.yml"), str(tmp_path / "xprompt.yml"), "")
    cache = TextFeatureCache(tiny64.text, tiny64.tokenize)
    feats = class_prompt_features(cache.encode, ["Brush Hair"], prompt_type="graph", templates=["a video of {}."],
                                  num_templates=1, graph_records=records)
    assert feats.shape == (1, 4, 32)  # class name + 3 continuations
    with pytest.raises(ValueError, match="xprompt"):
        load_graph_records(str(tmp_path / "askg.yml"), "", "")


def test_gaussian_weights_sum_to_one_and_peak_at_the_mean():
    from mmreason.engine import averaging_coefficients

    w = averaging_coefficients(23, "gaussian", mean=15, std=10)
    assert sum(w) == pytest.approx(1.0) and max(range(23), key=w.__getitem__) == 15
    for method in ("uniform", "beta", "ema"):
        assert sum(averaging_coefficients(7, method)) == pytest.approx(1.0)


def test_averaging_identical_checkpoints_returns_it(tmp_path):
    from mmreason.engine import average_checkpoints
    from mmreason.engine.checkpoint import save_weights

    torch.manual_seed(0)
    state = {"vision.w": torch.randn(4, 3), "projector.fc1.weight": torch.randn(3, 3)}
    paths = [save_weights(state, tmp_path / f"e{i}.safetensors") for i in range(3)]
    for method in ("uniform", "gaussian", "beta", "ema"):
        out = average_checkpoints(paths, method, initial=state)
        for k, v in state.items():
            torch.testing.assert_close(out[k], v, rtol=1e-6, atol=1e-6)
