"""ADSM: "Autoregressive Denoising Score Matching is a Good Video Anomaly Detector" (Zhang, Cao et al., ICCV 2025,
arXiv 2506.23282), with the formulas of its journal extension Uni-DSM (specs/vad.md §1).

Implemented:
- NCST, the noise-conditioned score transformer (§1.3): per-frame "uniform frame patch embedding" of an
  ``n``-frame clip into ``N = n (H/d)(W/d)`` tokens, DiT-style blocks with S-AdaLN (an MLP of the condition z
  gives ``gamma1, beta1, alpha1, gamma2, beta2, alpha2`` per block:
  ``h' = h + alpha1 MHA(gamma1 LN(h) + beta1)``, ``h = h' + alpha2 FFN(gamma2 LN(h') + beta2)``; the
  modulation layer is zero-initialised (adaLN-Zero) and gamma is applied as ``1 + gamma`` so every block starts
  as the identity), z built from the noise-level MLP and the scene embedding, a linear head to patches.
- The network predicts the noise; the score is ``s = -eps_hat / sigma`` (§1.2 [I]: with lambda = sigma^2 the
  DSM term ``sigma^2/2 ||s + (x~ - x)/sigma^2||^2`` equals ``1/2 ||eps_hat - eps||^2``).
- Key-frame motion weighting (§1.4) and the block-wise weighted DSM loss with log-uniform sigma (§1.2, §1.4):
  see :mod:`mmreason.methods.adsm.losses`.
- Autoregressive inference, Algorithm 1 (§1.6): noise is added to the previous *denoised* clip, one Tweedie
  step ``x^ = x~ + sigma^2 s``, per-level score ``||s|| / PSNR(x^, x)`` (``autoregressive=False`` adds the noise
  to the original clip at every level: the ablation).
- Patches and motion weights live in :mod:`~mmreason.methods.adsm.patches`, shared with the loss.

Reconstructions (config fields of :class:`~mmreason.methods.adsm.config.AdsmConfig`, each marked there):
depth/heads/mlp_ratio, noise embedding, positional embedding, concat-vs-sum fusion, sigma spacing at inference,
noise re-sampling per step, PSNR range and floor, the region of ||s||, the motion-weight fallback.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.methods.adsm.config import AdsmConfig
from mmreason.methods.adsm.losses import dsm_loss
from mmreason.methods.adsm.patches import motion_weights, patchify, unpatchify


# ----------------------------------------------------------------------------------------------- embeddings

def sinusoidal_embedding(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """DiT/ADM timestep features: ``[B]`` -> ``[B, dim]`` (cos | sin)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    args = values.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[P]`` positions -> ``[P, dim]`` sin|cos features (MAE/DiT convention)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = positions.double()[:, None] * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).float()


def sincos_pos_embed(dim: int, num_frames: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """``[n * gh * gw, dim]``: 2-D sin-cos of the patch position plus 1-D sin-cos of the frame index."""
    if dim % 4:
        raise ValueError(f"sincos positional embedding needs hidden_dim divisible by 4, got {dim}")
    ys, xs = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    spatial = torch.cat([_sincos_1d(dim // 2, ys.reshape(-1)), _sincos_1d(dim // 2, xs.reshape(-1))], dim=1)  # [P, D]
    temporal = _sincos_1d(dim, torch.arange(num_frames))  # [n, D]
    return (temporal[:, None, :] + spatial[None]).reshape(-1, dim)


# ----------------------------------------------------------------------------------------------- blocks

class SAdaLNBlock(nn.Module):
    """A DiT block with S-AdaLN: ``h' = h + a1 MHA((1+g1) LN(h) + b1)``; ``h = h' + a2 FFN((1+g2) LN(h') + b2)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, cond_dim: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))
        nn.init.zeros_(self.modulation[-1].weight)  # adaLN-Zero: alpha = 0, the block starts as the identity
        nn.init.zeros_(self.modulation[-1].bias)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, heads, N, D/heads]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # h [B, N, D], z [B, cond_dim]
        g1, b1, a1, g2, b2, a2 = self.modulation(z)[:, None].chunk(6, dim=-1)  # each [B, 1, D]
        h = h + a1 * self.attention((1 + g1) * self.norm1(h) + b1)
        return h + a2 * self.ffn((1 + g2) * self.norm2(h) + b2)


class FinalLayer(nn.Module):
    """Modulated LayerNorm + linear map back to ``p*p*c`` patch values (zero-initialised, as in DiT)."""

    def __init__(self, dim: int, cond_dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)
        for layer in (self.modulation[-1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.modulation(z)[:, None].chunk(2, dim=-1)
        return self.linear((1 + gamma) * self.norm(h) + beta)


class NoiseConditionedScoreTransformer(nn.Module):
    """NCST: ``(x~ [B, n, c, H, W], sigma [B], scene [B]) -> eps_hat [B, n, c, H, W]``; ``score = -eps_hat / sigma``."""

    def __init__(self, cfg: AdsmConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not divisible by patch_size {cfg.patch_size}")
        grid = cfg.image_size // cfg.patch_size
        self.num_tokens = cfg.num_frames * grid * grid
        patch_dim = cfg.patch_size ** 2 * cfg.channels
        self.patch_embed = nn.Linear(patch_dim, cfg.hidden_dim)
        if cfg.pos_embed == "sincos":
            self.register_buffer("pos_embed", sincos_pos_embed(cfg.hidden_dim, cfg.num_frames, grid, grid),
                                 persistent=False)
        else:
            self.pos_embed = nn.Parameter(0.02 * torch.randn(self.num_tokens, cfg.hidden_dim))
        self.freq_dim = 256
        self.noise_mlp = nn.Sequential(nn.Linear(self.freq_dim, cfg.cond_dim), nn.SiLU(),
                                       nn.Linear(cfg.cond_dim, cfg.cond_dim))
        self.scene_embed = nn.Embedding(max(cfg.num_scenes, 1), cfg.cond_dim) if cfg.use_scene else None
        z_dim = 2 * cfg.cond_dim if cfg.use_scene and cfg.cond_fusion == "concat" else cfg.cond_dim
        self.blocks = nn.ModuleList(SAdaLNBlock(cfg.hidden_dim, cfg.num_heads, cfg.mlp_ratio, z_dim)
                                    for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.hidden_dim, z_dim, patch_dim)
        nn.init.xavier_uniform_(self.patch_embed.weight)
        nn.init.zeros_(self.patch_embed.bias)

    def noise_features(self, sigma: torch.Tensor) -> torch.Tensor:
        """sigma ``[B]`` -> a DiT-like "timestep" in [0, 1000] -> sinusoidal features ``[B, 256]``."""
        cfg = self.cfg
        if cfg.noise_embedding == "log_sigma":
            lo, hi = math.log(cfg.sigma_min), math.log(cfg.sigma_max)
            t = (sigma.clamp_min(1e-12).log() - lo) / (hi - lo) if hi > lo else torch.zeros_like(sigma)  # one level
        else:
            t = sigma / cfg.sigma_max
        return sinusoidal_embedding(1000.0 * t, self.freq_dim)

    def condition(self, sigma: torch.Tensor, scene: torch.Tensor | None) -> torch.Tensor:
        z = self.noise_mlp(self.noise_features(sigma))  # [B, cond_dim]
        if self.scene_embed is None:
            return z
        if scene is None:
            raise ValueError("this NCST is scene-conditioned (model.use_scene=true) but no scene ids were given")
        if int(scene.max()) >= self.scene_embed.num_embeddings or int(scene.min()) < 0:
            raise ValueError(f"scene id {int(scene.max())} is out of range for model.num_scenes="
                             f"{self.scene_embed.num_embeddings}")
        y = self.scene_embed(scene.long())
        return torch.cat([z, y], dim=-1) if self.cfg.cond_fusion == "concat" else z + y

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, scene: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        b, n, c, h, w = x.shape
        if (n, c, h, w) != (cfg.num_frames, cfg.channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"expected clips [B, {cfg.num_frames}, {cfg.channels}, {cfg.image_size}, "
                             f"{cfg.image_size}], got {list(x.shape)}")
        sigma = sigma.reshape(-1).expand(b) if sigma.numel() == 1 else sigma.reshape(b)
        tokens = self.patch_embed(patchify(x, cfg.patch_size)) + self.pos_embed  # [B, N, D]
        z = self.condition(sigma, scene)
        for block in self.blocks:
            tokens = block(tokens, z)
        return unpatchify(self.final(tokens, z), cfg.patch_size, n, c, h, w)

    def score(self, x: torch.Tensor, sigma: torch.Tensor, scene: torch.Tensor | None = None) -> torch.Tensor:
        """``s_theta(x~, sigma, y) = -eps_hat / sigma`` (same shape as ``x``)."""
        sigma = sigma.reshape(-1) if sigma.numel() > 1 else sigma.reshape(1)
        return -self(x, sigma, scene) / sigma.reshape(-1, 1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------- ADSM

def noise_levels(cfg: AdsmConfig) -> torch.Tensor:
    """The ``L`` increasing inference noise levels in ``[sigma_min, sigma_max]`` (geometric or uniform)."""
    if cfg.num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {cfg.num_levels}")
    if cfg.num_levels == 1:
        return torch.tensor([cfg.sigma_min], dtype=torch.float64).float()
    if cfg.sigma_spacing == "geometric":
        return torch.logspace(math.log10(cfg.sigma_min), math.log10(cfg.sigma_max), cfg.num_levels, dtype=torch.float64).float()
    return torch.linspace(cfg.sigma_min, cfg.sigma_max, cfg.num_levels, dtype=torch.float64).float()


def psnr(x_hat: torch.Tensor, x: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """Per-clip PSNR in dB: ``[B, ...] x2 -> [B]``."""
    mse = (x_hat - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(peak ** 2 / mse)


class AdsmModel(nn.Module):
    """The trainable ADSM detector: ``loss(batch)`` for the engine, ``anomaly_scores`` for evaluation."""

    def __init__(self, cfg: AdsmConfig):
        super().__init__()
        self.cfg = cfg
        self.net = NoiseConditionedScoreTransformer(cfg)

    def loss(self, batch: dict) -> dict:
        return dsm_loss(self.net, batch["clip"], batch.get("scene"), self.cfg)

    def forward(self, batch: dict) -> dict:
        return self.loss(batch)

    @torch.no_grad()
    def anomaly_scores(self, clips: torch.Tensor, scene: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Algorithm 1: per-level scores ``[B, L]`` of clips ``[B, n, c, H, W]`` in [0, 1].

        ``noise`` (``[B, n, c, H, W]``, or ``[L, B, n, c, H, W]`` when ``resample_noise``) fixes epsilon; otherwise
        it is drawn from ``generator``.
        """
        cfg = self.cfg
        x = clips.float()
        sigmas = noise_levels(cfg).to(x.device)
        shape = (cfg.num_levels, *x.shape) if cfg.resample_noise else x.shape
        if noise is None:
            noise = torch.randn(shape, generator=generator, device="cpu" if generator is None else generator.device)
        noise = noise.to(x.device, x.dtype)
        if noise.shape != shape:
            raise ValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}")
        weights = motion_weights(x, cfg.patch_size, cfg.motion_eps) if cfg.score_norm_region == "motion_weighted" else None
        x_hat = x
        scores = []
        for i, sigma in enumerate(sigmas):
            eps = noise[i] if cfg.resample_noise else noise
            x_tilde = (x_hat if cfg.autoregressive else x) + sigma * eps  # noise into the previous denoised clip
            s = self.net.score(x_tilde, sigma.expand(x.shape[0]), scene)
            x_hat = x_tilde + sigma ** 2 * s  # one Tweedie step
            if weights is None:
                norm = s.flatten(1).norm(dim=1)
            else:
                per_patch = patchify(s, cfg.patch_size).pow(2).sum(-1)  # [B, N]
                norm = (weights * per_patch).sum(1).sqrt()
            quality = psnr(x_hat, x, cfg.psnr_max).clamp_min(cfg.psnr_floor)
            if cfg.score_rule == "norm_over_psnr":
                scores.append(norm / quality)
            elif cfg.score_rule == "norm":
                scores.append(norm)
            else:
                scores.append(1.0 / quality)
        return torch.stack(scores, dim=1)  # [B, L]
