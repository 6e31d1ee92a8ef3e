"""ADSM's token layout and key-frame motion weights (specs/vad.md §1.1, §1.4), shared by the NCST
(:mod:`~mmreason.methods.adsm.model`) and the DSM loss (:mod:`~mmreason.methods.adsm.losses`)."""
from __future__ import annotations

import torch


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, n, c, H, W]`` clip -> ``[B, n * (H/p) * (W/p), p * p * c]`` tokens (frame-major, then row-major)."""
    b, n, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"frame size {h}x{w} is not divisible by the patch size {patch}")
    x = x.reshape(b, n, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 1, 3, 5, 4, 6, 2)  # [B, n, H/p, W/p, p, p, c]
    return x.reshape(b, n * (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: torch.Tensor, patch: int, num_frames: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, N, p*p*c]`` -> ``[B, n, c, H, W]``."""
    b = tokens.shape[0]
    gh, gw = height // patch, width // patch
    x = tokens.reshape(b, num_frames, gh, gw, patch, patch, channels)
    x = x.permute(0, 1, 6, 2, 4, 3, 5)  # [B, n, c, H/p, p, W/p, p]
    return x.reshape(b, num_frames, channels, height, width)


def motion_weights(x: torch.Tensor, patch: int, eps: float = 1e-8) -> torch.Tensor:
    """Key-frame motion weights ``omega`` over the clip's ``N`` tokens, summing to 1 (§1.4).

    ``g = |f_last - f_first|`` is split into the frame's patches; saliency ``v_j`` = channel mean of the spatial
    max of patch j; every frame's token at spatial position j gets ``v_j``, and the ``N = n P`` weights are
    normalised to sum to 1 (a static clip gets uniform weights). ``x``: ``[B, n, c, H, W]`` -> ``[B, N]``.
    """
    b, n, c, h, w = x.shape
    g = (x[:, -1] - x[:, 0]).abs()  # [B, c, H, W]
    g = g.reshape(b, c, h // patch, patch, w // patch, patch)
    v = g.amax(dim=(3, 5)).mean(dim=1).reshape(b, -1)  # [B, P]: spatial max per channel, then channel mean
    v = v.repeat(1, n)  # [B, N]: the same spatial saliency for every frame's token (frame-major like patchify)
    total = v.sum(dim=1, keepdim=True)
    uniform = torch.full_like(v, 1.0 / v.shape[1])
    return torch.where(total > eps, v / (total + eps), uniform)
