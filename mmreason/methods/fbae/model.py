"""FBAE, the model of "A New Comprehensive Benchmark for Semi-supervised Video Anomaly Detection and Anticipation"
(Cao, Lu, Wang, Zhang; CVPR 2023, arXiv 2305.13611; the NWPU Campus paper). Known at block level only
(specs/vad.md §2.2, from the paper's Figure 4 caption and summaries):

- A **forward** and a **backward** frame predictor with the same U-Net architecture, each holding **conditional
  VAEs that take the scene image as input** (:class:`SceneConditionedUNet`).
- The forward net predicts future frames ``t .. t+alpha'`` from the observed ``t-n .. t-1``; its prediction error
  is the **detection (VAD) score** (:meth:`FbaeModel.detection_error`).
- The backward net reconstructs the past ``t-n .. t-1`` from the *predicted* future; the reconstruction error of
  the past is the **anticipation (VAA) score**, needing no future ground truth.
- The forward net predicts out to ``t + alpha`` (alpha = the anticipation time): here one forward net of
  ``future_frames`` frames is rolled out on its own predictions until it covers ``t + alpha``, and the score for
  alpha is the largest forward-backward cycle error along that rollout, so each horizon has its own score
  (:meth:`FbaeModel.anticipation_errors`) [reconstruction: how the paper reaches each alpha is not retrieved].
- Loss = forward prediction + gamma x backward prediction + beta x KL of the scene-conditioned VAEs.

Reconstructions (fields of :class:`~mmreason.methods.fbae.config.FbaeConfig`): input size, n and alpha', U-Net
widths, latent size, whether the scene features also feed the decoder skips, where the CVAEs sit (one per U-Net level: prior ``p(z_i | scene_i)`` from the scene image's
encoder, posterior ``q(z_i | frames_i, scene_i)``, ``z_i`` concatenated to the decoder's skip at level ``i``), the
test-time latent, the loss form and weights, what the backward net sees and learns from, the rollout to t+alpha.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.methods.fbae.config import FbaeConfig


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu_q, var_q) || N(mu_p, var_p))`` summed over all but the batch axis: ``[B, ...]`` -> ``[B]``."""
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0)
    return kl.flatten(1).sum(1)


class SceneConditionedUNet(nn.Module):
    """U-Net from ``in_frames`` stacked frames to ``out_frames`` frames, with a CVAE per level conditioned on the
    scene image (or none, ``use_scene=False``).

    ``forward(frames [B, n, C, H, W], scene_image [B, C, H, W] | None, sample)`` returns
    ``(prediction [B, m, C, H, W] in (0, 1), kl [B])``.
    """

    def __init__(self, cfg: FbaeConfig, in_frames: int, out_frames: int):
        super().__init__()
        self.cfg, self.out_frames = cfg, out_frames
        c, widths, lat = cfg.channels, list(cfg.widths), cfg.latent_channels
        self.encoder = nn.ModuleList()
        self.scene_encoder = nn.ModuleList()
        self.prior = nn.ModuleList()
        self.posterior = nn.ModuleList()
        cin, sin = in_frames * c, c
        for w in widths:
            self.encoder.append(conv_block(cin, w))
            cin = w
            if cfg.use_scene:
                self.scene_encoder.append(conv_block(sin, w))
                sin = w
                self.prior.append(nn.Conv2d(w, 2 * lat, 3, padding=1))
                self.posterior.append(nn.Conv2d(2 * w, 2 * lat, 3, padding=1))
        # channels a level adds to its skip: the latent z_i (+ the scene features s_i with scene_skip)
        extra = [(lat + (w if cfg.scene_skip else 0)) if cfg.use_scene else 0 for w in widths]
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.bottleneck = conv_block(widths[-1] + extra[-1], widths[-1] + extra[-1])
        below = widths[-1] + extra[-1]
        for i in reversed(range(len(widths) - 1)):
            self.up.append(nn.ConvTranspose2d(below, widths[i], 2, stride=2))
            self.decoder.append(conv_block(2 * widths[i] + extra[i], widths[i]))
            below = widths[i]
        self.head = nn.Conv2d(below, out_frames * c, 1)

    def _latent(self, level: int, h: torch.Tensor, s: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        mu_p, logvar_p = self.prior[level](s).chunk(2, dim=1)  # [B, lat, h, w] each
        mu_q, logvar_q = self.posterior[level](torch.cat([h, s], 1)).chunk(2, dim=1)
        logvar_p, logvar_q = logvar_p.clamp(-10, 10), logvar_q.clamp(-10, 10)
        kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
        if sample:
            z = mu_q + torch.randn_like(mu_q) * (0.5 * logvar_q).exp()
        else:
            z = mu_p if self.cfg.test_latent == "prior_mean" else mu_q
        return z, kl

    def forward(self, frames: torch.Tensor, scene_image: torch.Tensor | None, sample: bool = False):
        b, n, c, hgt, wid = frames.shape
        x = frames.reshape(b, n * c, hgt, wid)
        s = scene_image
        if self.cfg.use_scene and s is None:
            raise ValueError("this FBAE predictor is scene-conditioned: pass the scene image")
        skips, kl = [], frames.new_zeros(b)
        for level, enc in enumerate(self.encoder):
            if level:
                x = F.max_pool2d(x, 2)
                s = F.max_pool2d(s, 2) if self.cfg.use_scene else None
            x = enc(x)  # [B, w_i, H/2^i, W/2^i]
            if self.cfg.use_scene:
                s = self.scene_encoder[level](s)
                z, kl_i = self._latent(level, x, s, sample)
                kl = kl + kl_i
                skips.append(torch.cat([x, z, s] if self.cfg.scene_skip else [x, z], 1))
            else:
                skips.append(x)
        y = self.bottleneck(skips[-1])
        for up, dec, skip in zip(self.up, self.decoder, reversed(skips[:-1])):
            y = dec(torch.cat([up(y), skip], 1))
        out = torch.sigmoid(self.head(y))  # [B, m C, H, W]
        return out.reshape(b, self.out_frames, c, hgt, wid), kl


class FbaeModel(nn.Module):
    """Forward predictor (observed -> future) and backward predictor (predicted future -> past)."""

    def __init__(self, cfg: FbaeConfig):
        super().__init__()
        if cfg.image_size % (2 ** (len(cfg.widths) - 1)):
            raise ValueError(f"image_size={cfg.image_size} must be divisible by 2^(levels-1) = "
                             f"{2 ** (len(cfg.widths) - 1)}")
        self.cfg = cfg
        back_in = cfg.future_frames + (cfg.obs_frames if cfg.backward_uses_observation else 0)
        self.forward_net = SceneConditionedUNet(cfg, cfg.obs_frames, cfg.future_frames)
        self.backward_net = SceneConditionedUNet(cfg, back_in, cfg.obs_frames)

    def _split(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, m = self.cfg.obs_frames, self.cfg.future_frames
        if clip.shape[1] < n + m:
            raise ValueError(f"clips need obs_frames + future_frames = {n + m} frames, got {clip.shape[1]}")
        return clip[:, :n], clip[:, n:n + m]

    def _scene(self, batch: dict) -> torch.Tensor | None:
        return batch["scene_image"] if self.cfg.use_scene else None

    def _backward_input(self, observed: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        return torch.cat([observed, future], 1) if self.cfg.backward_uses_observation else future

    def _pixel(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = pred - target
        return (diff ** 2 if self.cfg.pixel_loss == "l2" else diff.abs()).flatten(1).mean(1)  # [B]

    def loss(self, batch: dict) -> dict:
        cfg = self.cfg
        observed, future = self._split(batch["clip"])  # [B, n, C, H, W], [B, m, C, H, W]
        scene = self._scene(batch)
        pred_future, kl_f = self.forward_net(observed, scene, sample=True)
        back_source = pred_future.detach() if cfg.backward_train_input == "predicted" else future
        pred_past, kl_b = self.backward_net(self._backward_input(observed, back_source), scene, sample=True)
        fwd, bwd = self._pixel(pred_future, future).mean(), self._pixel(pred_past, observed).mean()
        kl = (kl_f + kl_b).mean()
        return {"loss": fwd + cfg.backward_weight * bwd + cfg.kl_weight * kl, "forward": fwd.detach(),
                "backward": bwd.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def predict(self, clip: torch.Tensor, scene_image: torch.Tensor | None) -> dict:
        """Deterministic test-time pass: ``{"future": [B, m, ...], "past": [B, n, ...]}`` (the backward net sees
        the forward prediction, never the real future)."""
        observed, _ = self._split(clip)
        scene = scene_image if self.cfg.use_scene else None
        future, _ = self.forward_net(observed, scene)
        past, _ = self.backward_net(self._backward_input(observed, future), scene)
        return {"future": future, "past": past}

    @torch.no_grad()
    def detection_error(self, clip: torch.Tensor, scene_image: torch.Tensor | None,
                        prediction: dict | None = None) -> torch.Tensor:
        """Per-clip, per-predicted-frame MSE of the forward prediction: ``[B, m]``."""
        prediction = prediction or self.predict(clip, scene_image)
        _, future = self._split(clip)
        return ((prediction["future"] - future) ** 2).flatten(2).mean(2)

    @torch.no_grad()
    def anticipation_errors(self, clip: torch.Tensor, scene_image: torch.Tensor | None, horizons: Sequence[int],
                            prediction: dict | None = None) -> torch.Tensor:
        """Anticipation errors ``[B, H]``, one per horizon alpha (frames), from the observed frames only.

        Forward prediction out to ``t + alpha``: the forward net is rolled out, each step predicting the next
        ``m = future_frames`` frames from the last ``n = obs_frames`` frames (observed, then its own predictions).
        At step ``k`` the backward net reconstructs step ``k``'s input window from step ``k``'s predicted future;
        ``e_k`` is that cycle error (``e_1 = ||past - B(F(past))||^2``, the paper's score). The error for alpha is
        ``max(e_1 .. e_K)`` with ``K = ceil(alpha / m)``: the future up to ``t + alpha`` is suspect if any predicted
        stretch of it cannot be explained back. ``prediction`` (from :meth:`predict`) reuses step 1.
        """
        if not horizons:
            return clip.new_zeros(clip.shape[0], 0)
        if min(horizons) < 1:
            raise ValueError(f"anticipation horizons must be >= 1 frame, got {list(horizons)}")
        n, m = self.cfg.obs_frames, self.cfg.future_frames
        if clip.shape[1] < n:
            raise ValueError(f"anticipation needs obs_frames = {n} observed frames, got {clip.shape[1]}")
        scene = scene_image if self.cfg.use_scene else None
        window = clip[:, :n]  # [B, n, C, H, W]: frames t-n+1 .. t
        errors = []  # e_k, each [B]
        for k in range(-(-max(horizons) // m)):
            if k == 0 and prediction is not None:
                future, past = prediction["future"], prediction["past"]
            else:
                future, _ = self.forward_net(window, scene)  # [B, m, ...]: the next m frames
                past, _ = self.backward_net(self._backward_input(window, future), scene)
            errors.append(((past - window) ** 2).flatten(1).mean(1))
            window = torch.cat([window, future], 1)[:, -n:]
        errors = torch.stack(errors, 1)  # [B, K]
        return torch.stack([errors[:, : -(-alpha // m)].amax(1) for alpha in horizons], 1)  # [B, H]
