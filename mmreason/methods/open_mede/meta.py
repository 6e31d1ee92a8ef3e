"""Open-MeDe's optimisation parts (arXiv 2502.20158; reconstructed, specs/clip_action_recognition.md §4).

* :func:`first_order_cross_batch` — cross-batch meta-optimisation, first order (FOMAML with a virtual step):
  ``g_a = ∇L(θ; B_a)``; virtual step ``θ' = θ - α g_a``; virtual evaluation ``g_b = ∇L(θ'; B_b)`` on the
  subsequent batch; combined gradient ``g = g_a + λ g_b`` (no second-order terms). It returns a surrogate loss
  whose value is ``L(θ; B_a) + λ L(θ'; B_b)`` and whose gradient at ``θ`` is exactly ``g``, so the engine's
  ordinary ``backward`` + optimizer step performs the outer update ``θ ← θ - β g`` (β = ``train.lr``, or the
  optimizer's rule for AdamW). Parameters are restored to ``θ`` before returning.
* :func:`static_mix` — static-debiasing mixes: frames blended with a static clip (one frame repeated over time)
  with ``λ ~ Beta(20, 20)``, label unchanged.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


def first_order_cross_batch(params: Sequence[nn.Parameter], loss_fn: Callable[[object], torch.Tensor], batch_a,
                            batch_b, inner_lr: float, weight: float) -> dict:
    """One first-order cross-batch meta step on ``(batch_a, batch_b)``; see the module docstring.

    Returns ``{"loss": surrogate, "loss_virtual_train": L(θ; B_a), "loss_virtual_eval": L(θ'; B_b)}``.
    """
    params = [p for p in params if p.requires_grad]
    loss_a = loss_fn(batch_a)
    grads_a = torch.autograd.grad(loss_a, params, allow_unused=True)
    grads_a = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads_a)]
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, g in zip(params, grads_a):
                p.sub_(inner_lr * g)  # virtual step θ' = θ - α g_a
        loss_b = loss_fn(batch_b)
        grads_b = torch.autograd.grad(loss_b, params, allow_unused=True)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)  # back to θ
    combined = [ga + weight * (torch.zeros_like(ga) if gb is None else gb) for ga, gb in zip(grads_a, grads_b)]
    linear = sum((p * g.detach()).sum() for p, g in zip(params, combined))  # ∇_θ linear = g
    surrogate = (loss_a + weight * loss_b).detach() + linear - linear.detach()
    return {"loss": surrogate, "loss_virtual_train": loss_a.detach(), "loss_virtual_eval": loss_b.detach()}


def static_mix(frames: torch.Tensor, source: torch.Tensor, prob: float, beta: Sequence[float] = (20.0, 20.0),
               exclude_self: bool = False) -> torch.Tensor:
    """Blend each video of ``frames`` ``[B, T, 3, H, W]`` with probability ``prob`` with a static clip: a random
    frame of a random video of ``source`` ``[B', T, 3, H, W]`` repeated over time, ``x <- λ x + (1 - λ) s`` with
    ``λ ~ Beta(beta)``. ``exclude_self`` (source is ``frames``): the static video is another one of the batch."""
    if prob <= 0 or len(source) == 0:
        return frames
    batch, time = frames.shape[:2]
    n = len(source)
    chosen = torch.rand(batch) < prob  # [B]
    if not chosen.any():
        return frames
    if exclude_self and n > 1:
        other = (torch.arange(batch) + torch.randint(1, n, (batch,))) % n
    else:
        other = torch.randint(n, (batch,))
    frame = torch.randint(source.shape[1], (batch,))
    static = source[other, frame][:, None].expand(-1, time, -1, -1, -1)  # [B, T, 3, H, W]
    lam = torch.distributions.Beta(float(beta[0]), float(beta[1])).sample((batch,))
    lam = torch.where(chosen, lam, torch.ones_like(lam)).to(frames)[:, None, None, None, None]
    return lam * frames + (1 - lam) * static.to(frames)
