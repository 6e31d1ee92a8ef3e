"""ADSM building blocks: patches, motion weights, S-AdaLN, the DSM objective, Algorithm 1, score aggregation."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmreason.methods.adsm.config import AdsmConfig, AdsmEvalConfig
from mmreason.methods.adsm.evaluation import frame_scores_from_clips
from mmreason.methods.adsm.losses import sample_sigmas, weighted_dsm_loss
from mmreason.methods.adsm.model import (AdsmModel, NoiseConditionedScoreTransformer, SAdaLNBlock, motion_weights,
                                         noise_levels, patchify, psnr, unpatchify)

TINY = dict(image_size=32, patch_size=8, num_frames=4, hidden_dim=32, depth=2, num_heads=4, cond_dim=32,
            num_scenes=3, num_levels=5)


def test_patchify_round_trip_paper_size():
    torch.manual_seed(0)
    x = torch.rand(2, 8, 3, 160, 160)
    tokens = patchify(x, 16)
    assert tokens.shape == (2, 800, 768)  # 8 frames x 10 x 10 patches of 16 x 16 x 3
    assert torch.equal(unpatchify(tokens, 16, 8, 3, 160, 160), x)
    # token order: frame-major, then row-major patches; values (row, col, channel) inside a patch
    assert torch.equal(tokens[1, 100 + 10 + 2], x[1, 1, :, 16:32, 32:48].permute(1, 2, 0).reshape(-1))
    with pytest.raises(ValueError, match="divisible"):
        patchify(torch.rand(1, 1, 3, 30, 30), 16)


def test_motion_weights_sum_to_one_and_peak_on_motion():
    x = torch.zeros(2, 4, 3, 32, 32)
    x[0, 0, :, 8:12, 0:4] = 1.0   # a square at the left in the first frame ...
    x[0, -1, :, 8:12, 8:12] = 1.0  # ... moved right (into the next patch) by the last frame
    x[0, 1, :, 24:32, 24:32] = 1.0
    w = motion_weights(x, patch=8)
    assert w.shape == (2, 64) and torch.allclose(w.sum(1), torch.ones(2))
    grid = w[0, :16].reshape(4, 4)  # frame 0's spatial map (every frame has the same one)
    assert grid[1, 0] == grid[1, 1] == grid.max() == pytest.approx(1 / 8)  # 2 moving patches x 4 frames share the mass
    assert grid[3, 3] == 0  # motion only in a middle frame is ignored: key frames are the first and the last
    assert torch.allclose(w[1], torch.full((64,), 1 / 64))  # a static clip falls back to uniform weights


def test_sadaln_block_is_identity_at_zero_init_and_not_after():
    torch.manual_seed(0)
    block = SAdaLNBlock(dim=32, num_heads=4, mlp_ratio=4.0, cond_dim=16)
    h, z = torch.randn(3, 10, 32), torch.randn(3, 16)
    assert torch.equal(block(h, z), h)
    nn.init.normal_(block.modulation[-1].weight, std=0.1)
    assert not torch.allclose(block(h, z), h)


def test_ncst_conditioning_paths():
    torch.manual_seed(0)
    cfg = AdsmConfig(**TINY)
    net = NoiseConditionedScoreTransformer(cfg)
    x = torch.rand(2, 4, 3, 32, 32)
    assert torch.equal(net(x, torch.tensor([0.1, 0.5]), torch.tensor([0, 2])), torch.zeros_like(x))  # zero head
    for p in net.parameters():  # make every path active
        nn.init.normal_(p, std=0.05)
    out = net(x, torch.tensor([0.1, 0.1]), torch.tensor([0, 0]))
    assert not torch.allclose(out, net(x, torch.tensor([0.1, 0.1]), torch.tensor([0, 1])))  # scene matters
    assert not torch.allclose(out, net(x, torch.tensor([0.5, 0.5]), torch.tensor([0, 0])))  # sigma matters
    with pytest.raises(ValueError, match="num_scenes"):
        net(x, torch.tensor([0.1, 0.1]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="expected clips"):
        net(torch.rand(2, 3, 3, 32, 32), torch.tensor([0.1, 0.1]), torch.tensor([0, 0]))
    no_scene = NoiseConditionedScoreTransformer(AdsmConfig(**{**TINY, "use_scene": False}))
    assert no_scene.scene_embed is None and no_scene(x, torch.tensor([0.1, 0.2])).shape == x.shape
    concat = NoiseConditionedScoreTransformer(AdsmConfig(**{**TINY, "cond_fusion": "concat"}))
    assert concat.blocks[0].modulation[-1].in_features == 64


def test_paper_size_parameter_count():
    net = NoiseConditionedScoreTransformer(AdsmConfig())
    assert 125e6 < sum(p.numel() for p in net.parameters()) < 135e6  # the paper's "~130M"


def test_sigma_sampling_and_levels():
    cfg = AdsmConfig()
    s = sample_sigmas(20000, cfg, generator=torch.Generator().manual_seed(0))
    assert s.min() >= 1e-3 and s.max() <= 1.0
    logs = s.log10()  # log-uniform: log10(sigma) uniform on [-3, 0]
    assert abs(logs.mean().item() + 1.5) < 0.03 and abs((logs < -2).float().mean().item() - 1 / 3) < 0.02
    geo = noise_levels(cfg)
    assert geo.shape == (20,) and geo[0] == pytest.approx(1e-3) and geo[-1] == pytest.approx(1.0)
    assert torch.allclose(geo[1:] / geo[:-1], geo[1:2] / geo[0:1])  # constant ratio
    uni = noise_levels(AdsmConfig(sigma_spacing="uniform", num_levels=5))
    assert torch.allclose(uni, torch.tensor([0.001, 0.25075, 0.5005, 0.75025, 1.0]))


def test_dsm_loss_minimum_is_the_gaussian_score_analytically():
    """For data N(0, s^2 I) the DSM optimum is s*(x~) = -x~/(s^2 + sigma^2), i.e. eps_hat* = sigma x~/(s^2+sigma^2),
    and the loss there is (D/2) s^2 / (s^2 + sigma^2)."""
    torch.manual_seed(0)
    s_data, sigma, dim, n = 0.5, 0.4, 4, 200000
    x = s_data * torch.randn(n, 1, dim, 1, 1)  # [B, n=1, c=dim, 1, 1]: one patch of `dim` values
    eps = torch.randn_like(x)
    x_tilde = x + sigma * eps
    w = torch.ones(n, 1)
    loss_at = lambda c: weighted_dsm_loss(c * x_tilde, eps, w, patch=1).item()
    c_star = sigma / (s_data ** 2 + sigma ** 2)
    assert loss_at(c_star) == pytest.approx(dim / 2 * s_data ** 2 / (s_data ** 2 + sigma ** 2), rel=0.01)
    assert loss_at(c_star) < min(loss_at(0.9 * c_star), loss_at(1.1 * c_star))


def test_dsm_training_recovers_the_gaussian_score():
    """A noise-conditioned model eps_hat = g(log sigma) * x~ (g: an MLP, so the family holds the optimum but nothing
    forces it) trained with the ADSM objective and log-uniform sigma learns s = -x/(s^2 + sigma^2) at every sigma."""
    torch.manual_seed(0)
    s_data, dim, b = 0.5, 2, 1024
    cfg = AdsmConfig(sigma_min=0.05, sigma_max=1.0)
    gain = nn.Sequential(nn.Linear(1, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, dim))
    eps_hat = lambda xt, sig: gain(sig.log()[:, None]) * xt
    opt = torch.optim.Adam(gain.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 400)  # anneal the SGD noise away
    for _ in range(400):
        x = s_data * torch.randn(b, dim)
        sig = sample_sigmas(b, cfg)
        eps = torch.randn_like(x)
        pred = eps_hat(x + sig[:, None] * eps, sig)
        loss = weighted_dsm_loss(pred.view(b, 1, dim, 1, 1), eps.view(b, 1, dim, 1, 1), torch.ones(b, 1), 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        for sigma in (0.1, 0.3, 1.0):
            xt = torch.randn(2000, dim) * math.sqrt(s_data ** 2 + sigma ** 2)
            learned = -eps_hat(xt, torch.full((2000,), sigma)) / sigma
            analytic = -xt / (s_data ** 2 + sigma ** 2)
            rel = (learned - analytic).norm() / analytic.norm()
            assert rel < 0.05, (sigma, rel.item())


def test_autoregressive_inference_follows_algorithm_1_and_is_seeded():
    torch.manual_seed(0)
    cfg = AdsmConfig(**TINY)
    model = AdsmModel(cfg)
    x = torch.rand(2, 4, 3, 32, 32)
    scene = torch.tensor([0, 1])
    # a known score function: the score of N(0.5, 0.1^2 + sigma^2) per pixel
    model.net.score = lambda xt, sigma, y: -(xt - 0.5) / (0.01 + sigma.view(-1, 1, 1, 1, 1) ** 2)
    eps = torch.randn(2, 4, 3, 32, 32)
    got = model.anomaly_scores(x, scene, noise=eps)
    x_hat, expected = x, []
    for sigma in noise_levels(cfg):
        x_tilde = x_hat + sigma * eps  # the previous denoised clip, not x
        s = -(x_tilde - 0.5) / (0.01 + sigma ** 2)
        x_hat = x_tilde + sigma ** 2 * s
        expected.append(s.flatten(1).norm(dim=1) / psnr(x_hat, x))
    assert got.shape == (2, 5) and torch.allclose(got, torch.stack(expected, 1), rtol=1e-5)

    real = AdsmModel(cfg)
    for p in real.parameters():
        nn.init.normal_(p, std=0.05)
    a = real.anomaly_scores(x, scene, generator=torch.Generator().manual_seed(7))
    b = real.anomaly_scores(x, scene, generator=torch.Generator().manual_seed(7))
    c = real.anomaly_scores(x, scene, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.allclose(a, c) and torch.isfinite(a).all()
    fresh = AdsmModel(AdsmConfig(**{**TINY, "resample_noise": True}))
    fresh.load_state_dict(real.state_dict())
    assert fresh.anomaly_scores(x, scene, noise=torch.randn(5, 2, 4, 3, 32, 32)).shape == (2, 5)


def test_frame_scores_from_clips_hand_case():
    cfg = AdsmEvalConfig(segment_len=1, frame_assignment="all", object_to_frame="max", empty_frame="video_min")
    clip_frames = np.array([[0, 1], [1, 2], [1, 2]])  # two objects cover frames 1-2
    clip_scores = np.array([[1.0, 10.0], [3.0, 30.0], [2.0, 50.0]])
    # level 0: frames [1, 3, 3, 1(empty -> min)] -> [0, 1, 1, 0]; level 1: [10, 50, 50, 10] -> [0, 1, 1, 0]
    out = frame_scores_from_clips(4, clip_frames, clip_scores, cfg)
    assert np.allclose(out, [0, 1, 1, 0])
    last = AdsmEvalConfig(segment_len=1, frame_assignment="last", object_to_frame="mean", level_weights=[1.0, 0.0])
    # level 0 only; frame 1 <- clip 0 (1.0); frame 2 <- mean(3, 2) = 2.5; frames 0, 3 empty -> min = 1
    assert np.allclose(frame_scores_from_clips(4, clip_frames, clip_scores, last), [0, 0, 1, 0])
    pooled = AdsmEvalConfig(segment_len=3, level_weights=[1.0, 0.0])
    # level 0 per frame [1, 3, 3, 1] -> segment maxima [3, 3, 3 | 1] -> min-max [1, 1, 1, 0]
    assert np.allclose(frame_scores_from_clips(4, clip_frames, clip_scores, pooled), [1, 1, 1, 0])
    with pytest.raises(ValueError, match="level_weights"):
        frame_scores_from_clips(4, clip_frames, clip_scores, AdsmEvalConfig(level_weights=[1.0]))


def test_bf16_rounds_away_the_lowest_noise_level():
    """Why ADSM trains in full precision (``train.mixed_precision: no``): under bf16 autocast the NCST's first
    layer sees x~ = x + sigma eps rounded to bf16's 8 significant bits (steps of 2^-8 near 0.5). At the paper's
    sigma_min = 1e-3 most of the noise vanishes and what is left is mostly rounding error; at 0.1 it survives."""
    from mmreason.methods.adsm import AdsmExperiment

    g = torch.Generator().manual_seed(0)
    x = 0.05 + 0.9 * torch.rand(100_000, generator=g)  # pixel values in [0.05, 0.95]
    eps = torch.randn(100_000, generator=g)

    def seen_noise(sigma: float, dtype: torch.dtype) -> torch.Tensor:  # the noise the network actually receives
        return ((x + sigma * eps).to(dtype).float() - x.to(dtype).float()) / sigma

    rel_err = lambda noise: ((noise - eps).norm() / eps.norm()).item()
    low = seen_noise(1e-3, torch.bfloat16)
    assert (low == 0).float().mean() > 0.5  # measured 0.63 of the entries carry no noise at all
    assert rel_err(low) > 1.0  # measured 1.12: more rounding error than noise
    assert rel_err(seen_noise(1e-3, torch.float32)) < 1e-3
    assert rel_err(seen_noise(0.1, torch.bfloat16)) < 0.02  # measured 0.012: only the lowest levels are destroyed
    assert AdsmExperiment().train.mixed_precision == "no"


def test_adsm_modules_import_without_a_circle():
    """model.py imports losses.py and patches.py; neither imports model.py back (issue 15, item 8)."""
    import ast
    from pathlib import Path

    import mmreason.methods.adsm as pkg

    folder = Path(pkg.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mmreason.methods.adsm.")}
    assert "model" not in graph["losses"] and "model" not in graph["patches"]

    def reaches(start: str, goal: str, seen=()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen + (n,))) for n in graph.get(start, ()))

    assert not [m for m in graph if reaches(m, m)]
