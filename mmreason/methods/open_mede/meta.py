"""Open-MeDe's optimisation parts (arXiv 2502.20158; reconstructed, specs/clip_action_recognition.md §4).

* :func:`first_order_cross_batch` — cross-batch meta-optimisation, first order (FOMAML with a virtual step):
  ``g_a = ∇L(θ; B_a)``; virtual step ``θ' = θ - Δ(g_a)`` (:func:`virtual_step`); virtual evaluation
  ``g_b = ∇L(θ'; B_b)`` on the subsequent batch; combined gradient ``g = g_a + λ g_b`` (no second-order terms).
  It returns a surrogate loss whose value is ``L(θ; B_a) + λ L(θ'; B_b)`` and whose gradient at ``θ`` is exactly
  ``g``, so the engine's ordinary ``backward`` + optimizer step performs the outer update ``θ ← θ - β g``
  (β = ``train.lr``, or the optimizer's rule for AdamW). Parameters are restored to ``θ`` before returning.
* :func:`virtual_step` — the size of the virtual step. ``sgd``: ``Δ = α g`` (plain SGD). With the engine's
  AdamW at lr 3.33e-6 an SGD step of that size moves the weights by ~1e-6 of their size and the meta-gradient
  equals plain training's to 0.1 %; ``relative`` (default, a reconstruction): every parameter tensor moves along
  its gradient by the fraction α of its own RMS, ``Δ = α rms(θ) g / rms(g)``, whatever the scale of the
  gradient (a one-step LARS / normalised-gradient rule).
* :func:`class_disjoint_split` — the virtual-train and virtual-evaluation sub-batches of one batch hold disjoint
  classes, so the virtual evaluation measures generalisation to other classes (known-to-open).
* :func:`static_mix` — static-debiasing mixes: frames blended with a static clip (one frame repeated over time)
  with ``λ ~ Beta(20, 20)``, label unchanged.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

INNER_STEPS = ("relative", "sgd")


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().pow(2).mean().sqrt()


@torch.no_grad()
def virtual_step(params: Sequence[nn.Parameter], grads: Sequence[torch.Tensor], inner_lr: float,
                 rule: str = "relative") -> list[torch.Tensor]:
    """Move ``params`` in place to ``θ' = θ - Δ`` and return the steps ``Δ`` (one per parameter).

    ``sgd``: ``Δ = α g``. ``relative``: ``Δ = α rms(θ) g / rms(g)`` per tensor (every tensor moves by the fraction
    α of its RMS; a tensor whose weights or gradient are all zero does not move).
    """
    if rule not in INNER_STEPS:
        raise ValueError(f"unknown virtual-step rule {rule!r}; use one of {INNER_STEPS}")
    steps = []
    for p, g in zip(params, grads):
        if rule == "sgd":
            step = inner_lr * g
        else:
            g_rms = _rms(g)
            step = (inner_lr * _rms(p) / g_rms) * g if g_rms > 0 else torch.zeros_like(g)
        p.sub_(step.to(p.dtype))
        steps.append(step)
    return steps


def first_order_cross_batch(params: Sequence[nn.Parameter], loss_fn: Callable[[object], torch.Tensor], batch_a,
                            batch_b, inner_lr: float, weight: float, inner_step: str = "relative") -> dict:
    """One first-order cross-batch meta step on ``(batch_a, batch_b)``; see the module docstring.

    Returns ``{"loss": surrogate, "loss_virtual_train": L(θ; B_a), "loss_virtual_eval": L(θ'; B_b)}``.
    """
    params = [p for p in params if p.requires_grad]
    loss_a = loss_fn(batch_a)
    grads_a = torch.autograd.grad(loss_a, params, allow_unused=True)
    grads_a = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads_a)]
    saved = [p.detach().clone() for p in params]
    try:
        virtual_step(params, grads_a, inner_lr, inner_step)  # θ' = θ - Δ(g_a)
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


def class_disjoint_split(labels: torch.Tensor, generator: torch.Generator | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Indices ``(a, b)`` of two sub-batches of ``labels`` ``[B]`` whose class sets are disjoint: the batch's
    classes in random order, each given to the sub-batch that holds fewer videos so far. ``None`` when the batch
    has a single class."""
    classes = labels.unique()
    if len(classes) < 2:
        return None
    order = classes[torch.randperm(len(classes), generator=generator)]
    in_a = torch.zeros_like(labels, dtype=torch.bool)
    size_a = size_b = 0
    for c in order.tolist():
        members = labels == c
        n = int(members.sum())
        if size_a <= size_b:
            in_a |= members
            size_a += n
        else:
            size_b += n
    return in_a.nonzero().squeeze(1), (~in_a).nonzero().squeeze(1)


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
