"""Space-time Cross Attention (STDD, arXiv 2412.09895, Sec. 3.1; released ``STCrossAttentionBlock``).

Every residual block of the CLIP ViT is replaced by the same computation on the block's *frozen-layout* weights
(no new parameters; the block's ``ln_1``/``attn``/``ln_2``/``mlp`` are reused, and fine-tuned with the rest of
the tower in STDD). For tokens ``x`` ``[(B T), 1 + P, D]`` (CLS + P patches per frame):

1. Window masking (:func:`window_keep_indices`): the patch grid is cut into 2x2 windows; in every window
   ``int(rate * 4)`` slots are masked. Frame ``t`` masks the pattern ``[1]*m + [0]*(4-m)`` cyclically rotated
   right by ``(t + i) mod 4`` — so over consecutive frames the kept slots rotate through the window, and frames
   ``t`` and ``t + 2`` keep complementary slots at rate 0.5. In training ``i`` is drawn per video (the same for
   every window: the released ``SPATIAL_REPEAT``); at test ``i = 0``. With ``temporal_shuffle`` the per-frame
   patterns of each video are randomly permuted over time (the released code does this at test too).
   Each frame keeps CLS + ``(1 - rate) P`` patches.
2. Channel temporal shift on the kept patches (:func:`temporal_channel_shift`, CLS untouched), one mixed tensor
   per scale ``S`` in ``temporal_scales``.
3. Frozen spatial attention on each mixed sparse sequence, ``x_mix + attn(ln_1(x_mix))``, averaged over scales.
4. The full path in parallel: ``x_full = x + attn(ln_1(x))`` on all tokens.
5. Scatter: the sparse outputs overwrite their kept positions of ``x_full``; CLS comes from the sparse path.
6. MLP on the *full* path: ``out = x_pad + mlp(ln_2(x_full))`` (the MLP input is ``x_full``, not ``x_pad``:
   the released code's order, kept exactly).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mmreason.clip.towers import block_attention, block_forward, block_mlp


def masked_slot_patterns(num_frames: int, mask_rate: float, slots: int = 4) -> torch.Tensor:
    """``[slots, T, slots]`` bool: entry ``[i, t, s]`` says slot ``s`` of every window is masked in frame ``t``
    under shift index ``i`` (the base pattern rotated right by ``(t + i) mod slots``)."""
    masked = int(mask_rate * slots)
    base = torch.tensor([True] * masked + [False] * (slots - masked))
    out = torch.empty(slots, num_frames, slots, dtype=torch.bool)
    for i in range(slots):
        for t in range(num_frames):
            out[i, t] = torch.roll(base, (t + i) % slots)
    return out


def window_keep_indices(batch: int, num_frames: int, grid: int, mask_rate: float, *,
                        window: Sequence[int] = (2, 2), train: bool = True, temporal_shuffle: bool = True,
                        generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Kept patch indices ``[B, T, K]`` (row-major positions in the ``grid x grid`` patch map), with
    ``K = (1 - rate) * grid^2`` (exactly, for rates that are multiples of 1 / window slots)."""
    wh, ww = window
    if grid % wh or grid % ww:
        raise ValueError(f"window masking needs the patch grid ({grid}x{grid}) divisible by the window {wh}x{ww}")
    slots = wh * ww
    patterns = masked_slot_patterns(num_frames, mask_rate, slots)  # [slots, T, slots]
    if train:
        shift = torch.randint(slots, (batch,), generator=generator)  # one shift per video (spatial repeat)
    else:
        shift = torch.zeros(batch, dtype=torch.long)
    masked = patterns[shift]  # [B, T, slots]
    if temporal_shuffle:
        order = torch.rand(batch, num_frames, generator=generator).argsort(dim=1)  # [B, T]
        masked = torch.gather(masked, 1, order[:, :, None].expand_as(masked))
    # patch index of (window cell c, slot s): cells row-major over the (grid/wh) x (grid/ww) windows
    cells_h, cells_w = grid // wh, grid // ww
    ch, cw = torch.meshgrid(torch.arange(cells_h), torch.arange(cells_w), indexing="ij")
    s1, s2 = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    rows = ch.reshape(-1, 1) * wh + s1.reshape(1, -1)  # [cells, slots]
    cols = cw.reshape(-1, 1) * ww + s2.reshape(1, -1)
    patch_index = rows * grid + cols  # [cells, slots]
    kept_slots = (~masked).nonzero()[:, 2].view(batch, num_frames, -1)  # [B, T, kept slots], ascending
    keep = patch_index[:, kept_slots]  # [cells, B, T, kept slots]
    return keep.permute(1, 2, 0, 3).reshape(batch, num_frames, -1).to(device)  # [B, T, K]


def temporal_channel_shift(x: torch.Tensor, scale: int, channel_fold: int) -> torch.Tensor:
    """TSM-style shift of ``x`` ``[B, T, N, D]`` along ``T`` (the released ``_channel_mixing``).

    With ``d0 = D // channel_fold`` and ``d = d0``: for ``i = 0 .. scale-1``, channels ``[0, d)`` take frame
    ``t - (i+1)`` and channels ``[2 d0 - d, 2 d0)`` take frame ``t + (i+1)``, then ``d`` halves; each pass
    overwrites the frames it covers, frames outside the video are zeros. Channels ``[2 d0, D)`` are unchanged.
    ``scale = 0`` returns ``x`` unchanged (no shift; not a released setting).
    """
    if scale == 0:
        return x
    d0 = x.shape[-1] // channel_fold
    if d0 < 1:
        raise ValueError(f"channel_fold {channel_fold} leaves no channel to shift at width {x.shape[-1]}")
    out = torch.zeros_like(x)
    out[..., 2 * d0:] = x[..., 2 * d0:]
    d = d0
    for i in range(scale):
        s = i + 1
        if s < x.shape[1]:
            out[:, s:, :, :d] = x[:, :-s, :, :d]  # forward: frame t sees frame t - s
            out[:, :-s, :, 2 * d0 - d:2 * d0] = x[:, s:, :, 2 * d0 - d:2 * d0]  # backward: frame t sees t + s
        d = max(1, d // 2)
    return out


def st_cross_attention_block(block: nn.Module, x: torch.Tensor, num_frames: int, keep: torch.Tensor, *,
                             temporal_scales: Sequence[int] = (1, 2), channel_fold: int = 32) -> torch.Tensor:
    """One Space-time Cross Attention block on ``x`` ``[(B T), 1 + P, D]`` with kept patches ``keep`` ``[B, T, K]``."""
    bt, length, width = x.shape
    batch = bt // num_frames
    tokens = x.view(batch, num_frames, length, width)
    cls, patches = tokens[:, :, :1], tokens[:, :, 1:]  # [B, T, 1, D], [B, T, P, D]
    index = keep[..., None].expand(-1, -1, -1, width)  # [B, T, K, D]
    sparse = torch.gather(patches, 2, index)  # [B, T, K, D]
    outs = []
    for scale in temporal_scales:
        mixed = torch.cat([cls, temporal_channel_shift(sparse, scale, channel_fold)], dim=2).flatten(0, 1)
        outs.append(mixed + block_attention(block, mixed))  # [(B T), 1 + K, D]
    sparse_out = torch.stack(outs).mean(0).view(batch, num_frames, -1, width)  # [B, T, 1 + K, D]
    full = x + block_attention(block, x)  # [(B T), L, D]
    padded_patches = full.view(batch, num_frames, length, width)[:, :, 1:].scatter(2, index, sparse_out[:, :, 1:])
    padded = torch.cat([sparse_out[:, :, :1], padded_patches], dim=2).flatten(0, 1)  # [(B T), L, D]
    return padded + block_mlp(block, full)


class STCrossAttentionTower(nn.Module):
    """A CLIP vision tower whose every block runs Space-time Cross Attention; same parameters as the tower.

    ``forward(frames [B, T, 3, H, W]) -> [B, T, E]`` per-frame features. Masks come from the global RNG in
    training and from a generator seeded with ``mask_seed`` at evaluation (deterministic test shuffles); every
    block draws its own mask, as each released block does.
    """

    def __init__(self, tower: nn.Module, *, mask_rate: float = 0.5, window: Sequence[int] = (2, 2),
                 temporal_shuffle: bool = True, test_temporal_shuffle: bool = True,
                 temporal_scales: Sequence[int] = (1, 2), channel_fold: int = 32, mask_seed: int = 0):
        super().__init__()
        self.tower = tower
        self.grid = tower.image_size // tower.patch_size
        self.mask_rate, self.window = mask_rate, tuple(window)
        self.temporal_shuffle, self.test_temporal_shuffle = temporal_shuffle, test_temporal_shuffle
        self.temporal_scales, self.channel_fold, self.mask_seed = tuple(temporal_scales), channel_fold, mask_seed
        if not self.temporal_scales:
            raise ValueError("temporal_scales must name at least one scale (0 = no channel shift)")
        if self.grid % self.window[0] or self.grid % self.window[1]:
            raise ValueError(f"the {self.grid}x{self.grid} patch grid is not divisible by the window {self.window}")

    @property
    def output_dim(self) -> int:
        return self.tower.output_dim

    def keep_indices(self, batch: int, num_frames: int, device=None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        shuffle = self.temporal_shuffle if self.training else self.test_temporal_shuffle
        return window_keep_indices(batch, num_frames, self.grid, self.mask_rate, window=self.window,
                                   train=self.training, temporal_shuffle=shuffle, generator=generator, device=device)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, time = frames.shape[:2]
        x = self.tower.embed(frames)  # [(B T), L, D]
        generator = None if self.training else torch.Generator().manual_seed(self.mask_seed)
        for block in self.tower.blocks:  # every block draws its own mask, as the released blocks do
            keep = self.keep_indices(batch, time, x.device, generator)  # [B, T, K]
            x = st_cross_attention_block(block, x, time, keep, temporal_scales=self.temporal_scales,
                                         channel_fold=self.channel_fold)
        return self.tower.head(x).view(batch, time, -1)  # [B, T, E]


def plain_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The unmodified CLIP block (the baseline of tests and the benchmark)."""
    return block_forward(block, x)
