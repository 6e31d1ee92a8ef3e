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
    pooled = mean_pool_logits(f, g, 1.0)
    assert pooled.shape == (3, 5) and pooled.abs().max() <= 1.0 + 1e-6


def test_residual_projector_starts_as_identity():
    torch.manual_seed(0)
    proj = ResidualProjector(16, 0.1)
    x = torch.randn(4, 16)
    assert torch.equal(proj(x), x) and proj.fc1.bias is None and proj.fc2.weight.abs().sum() == 0


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
    # cartwheel has 2 x 2 = 4 prompts, cycled to 8
    torch.testing.assert_close(feats[1, 4:], feats[1, :4])
    with pytest.raises(ValueError, match="no action-graph record"):
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
