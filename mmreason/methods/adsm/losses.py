"""ADSM training loss: the sigma^2-weighted, block-wise, motion-weighted denoising score matching objective.

Paper form (specs/vad.md §1.2, §1.4):
    L = (1/L) sum_i (sigma_i^2 / 2) sum_j omega_j E || s_theta(P~_j, sigma_i) + (P~_j - P_j) / sigma_i^2 ||^2
with ``P~ = P + sigma eps`` and sigma drawn per clip from a log-uniform distribution on [sigma_min, sigma_max].
With ``s_theta = -eps_hat / sigma`` each term is ``(1/2) || eps_hat_j - eps_j ||^2``, which is what is computed
(numerically stable for sigma = 1e-3). Without motion weighting, ``omega_j = 1/N``.
"""
from __future__ import annotations

import math

import torch

from mmreason.methods.adsm.config import AdsmConfig
from mmreason.methods.adsm.patches import motion_weights, patchify


def sample_sigmas(batch: int, cfg: AdsmConfig, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B]`` noise levels, log-uniform on ``[sigma_min, sigma_max]``."""
    u = torch.rand(batch, generator=generator, device=device)
    lo, hi = math.log(cfg.sigma_min), math.log(cfg.sigma_max)
    return torch.exp(lo + (hi - lo) * u)


def weighted_dsm_loss(eps_hat: torch.Tensor, eps: torch.Tensor, weights: torch.Tensor, patch: int,
                      reduction: str = "sum") -> torch.Tensor:
    """``mean_b (1/2) sum_j w_bj ||eps_hat_bj - eps_bj||^2`` with the squared error per patch summed or averaged
    over its ``p*p*c`` values. ``eps_hat``/``eps`` ``[B, n, c, H, W]``, ``weights`` ``[B, N]`` -> scalar."""
    err = patchify(eps_hat - eps, patch).pow(2)  # [B, N, p*p*c]
    per_patch = err.sum(-1) if reduction == "sum" else err.mean(-1)  # [B, N]
    return 0.5 * (weights * per_patch).sum(1).mean()


def dsm_loss(net, clips: torch.Tensor, scene: torch.Tensor | None, cfg: AdsmConfig) -> dict:
    """One DSM step on clean clips ``[B, n, c, H, W]``: returns ``{"loss", "sigma_mean"}``."""
    x = clips.float()
    b = x.shape[0]
    sigma = sample_sigmas(b, cfg, device=x.device)  # [B]
    eps = torch.randn_like(x)
    eps_hat = net(x + sigma.view(b, 1, 1, 1, 1) * eps, sigma, scene)
    if cfg.motion_weighting:
        weights = motion_weights(x, cfg.patch_size, cfg.motion_eps)  # [B, N], sums to 1
    else:
        n_tokens = patchify(x[:1], cfg.patch_size).shape[1]
        weights = torch.full((b, n_tokens), 1.0 / n_tokens, device=x.device)
    loss = weighted_dsm_loss(eps_hat, eps, weights, cfg.patch_size, cfg.patch_reduction)
    return {"loss": loss, "sigma_mean": sigma.mean().detach()}
