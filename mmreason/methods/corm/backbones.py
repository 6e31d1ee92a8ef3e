"""Sequence backbones for dense multi-label TAL: ``[B, T, D_in]`` features + ``[B, T]`` mask -> ``[B, T, d]``.

- :class:`PDANBackbone` -- PDAN (Dai et al., WACV 2021, "PDAN: Pyramid Dilated Attention Network for Action
  Detection"): a 1x1 input projection, then ``num_layers`` residual blocks whose Dilated Attention Layer (DAL)
  attends, channel by channel, over the three snippets ``t - r, t, t + r`` (dilation ``r = 1, 2, 4, ...``) with
  a learned per-channel offset on the values, followed by ReLU, a 1x1 layer, dropout and a masked residual.
  Written from the paper's description and the TSU pipeline's structure; the classifier is left to the head.
- :class:`MSTCTBackbone` -- an MS-TCT-style model (Dai et al., CVPR 2022, "MS-TCT: Multi-Scale Temporal
  ConvTransformer for Action Detection"): stages of temporal merging (stride-2 temporal convolution after the
  first stage) and Global-Local Relational blocks (multi-head self-attention + a feed-forward layer with a
  temporal depth-wise convolution), and a Temporal Scale Mixer that projects every stage to ``out_dim``,
  upsamples it to ``T`` and fuses the concatenation. MS-TCT's heat-map branch and its loss are not included.
  Padded snippets never influence valid ones, but the linear upsampling depends on the padded length ``T``
  (MS-TCT itself pads every clip to a fixed ``num_clips``), so a video padded in a batch can score slightly
  differently from the same video alone; PDAN has no such dependence.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _shift(x: torch.Tensor, offset: int) -> torch.Tensor:
    """``y[:, t] = x[:, t + offset]`` with zeros outside ``[0, T)``. x: [B, T, d]."""
    if offset == 0:
        return x
    if offset > 0:
        return F.pad(x[:, offset:], (0, 0, 0, offset))
    return F.pad(x[:, :offset], (0, 0, -offset, 0))


class DilatedAttention(nn.Module):
    """PDAN's DAL: per-channel softmax attention over the snippets ``t - r, t, t + r``."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.offset_embedding = nn.Parameter(torch.randn(3, dim))   # PDAN's rel_t: one per kernel position
        for layer in (self.query, self.key, self.value):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:              # x: [B, T, d], padded snippets are 0
        q = self.query(x)                                              # [B, T, d]
        k, v = self.key(x), self.value(x)
        offsets = (-self.dilation, 0, self.dilation)
        keys = torch.stack([_shift(k, o) for o in offsets], dim=2)     # [B, T, 3, d]
        values = torch.stack([_shift(v, o) for o in offsets], dim=2) + self.offset_embedding
        weights = torch.softmax(q.unsqueeze(2) * keys, dim=2)          # per channel over the 3 positions
        return (weights * values).sum(dim=2)                           # [B, T, d]


class PDANBlock(nn.Module):
    def __init__(self, dim: int, dilation: int, dropout: float):
        super().__init__()
        self.attention = DilatedAttention(dim, dilation)
        self.linear = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # x: [B, T, d], mask: [B, T, 1]
        out = self.dropout(self.linear(F.relu(self.attention(x))))
        return (x + out) * mask


class PDANBackbone(nn.Module):
    """PDAN encoder: ``[B, T, D_in] -> [B, T, hidden_dim]`` (dilations ``2**i`` for ``i < num_layers``)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, num_layers: int = 5, dropout: float = 0.5):
        super().__init__()
        self.out_dim = hidden_dim
        self.input = nn.Linear(in_dim, hidden_dim)
        self.blocks = nn.ModuleList([PDANBlock(hidden_dim, 2 ** i, dropout) for i in range(num_layers)])

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(features.dtype)                      # [B, T, 1]
        x = self.input(features) * m                                   # [B, T, d]
        for block in self.blocks:
            x = block(x, m)
        return x


class GlobalLocalBlock(nn.Module):
    """MS-TCT's Global-Local Relational block: self-attention (global) + FFN with a depth-wise conv (local)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = dim * mlp_ratio
        self.fc1 = nn.Linear(dim, hidden)
        self.local = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # x: [B, T, d], mask: [B, T]
        h = self.norm1(x)
        h, _ = self.attention(h, h, h, key_padding_mask=mask <= 0, need_weights=False)
        x = x + self.dropout(h)
        h = self.fc1(self.norm2(x)) * mask.unsqueeze(-1)               # [B, T, r d]
        h = F.gelu(self.local(h.transpose(1, 2)).transpose(1, 2))      # temporal depth-wise conv
        return (x + self.dropout(self.fc2(h))) * mask.unsqueeze(-1)


class MSTCTBackbone(nn.Module):
    """MS-TCT-style encoder + Temporal Scale Mixer: ``[B, T, D_in] -> [B, T, out_dim]``."""

    def __init__(self, in_dim: int, stage_dims: tuple[int, ...] = (256, 384, 576, 864), blocks_per_stage: int = 3,
                 heads: int = 8, mlp_ratio: int = 8, out_dim: int = 512, dropout: float = 0.0):
        super().__init__()
        self.out_dim = out_dim
        self.merges = nn.ModuleList()
        self.stages = nn.ModuleList()
        previous = in_dim
        for i, dim in enumerate(stage_dims):
            # temporal merging: keep the rate in stage 1, halve it after (kernel 3, stride 2)
            self.merges.append(nn.Conv1d(previous, dim, kernel_size=3, stride=1 if i == 0 else 2, padding=1))
            self.stages.append(nn.ModuleList([GlobalLocalBlock(dim, heads, mlp_ratio, dropout)
                                              for _ in range(blocks_per_stage)]))
            previous = dim
        self.scale_projections = nn.ModuleList([nn.Linear(dim, out_dim) for dim in stage_dims])
        self.mixer = nn.Linear(out_dim * len(stage_dims), out_dim)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = features.shape[1]
        m = mask.to(features.dtype)                                     # [B, T]
        x = features * m.unsqueeze(-1)
        scales = []
        for i, (merge, blocks) in enumerate(zip(self.merges, self.stages)):
            x = merge(x.transpose(1, 2)).transpose(1, 2)                # [B, T_i, d_i]
            if i > 0:
                m = F.max_pool1d(m.unsqueeze(1), kernel_size=3, stride=2, padding=1).squeeze(1)
            x = x * m.unsqueeze(-1)
            for block in blocks:
                x = block(x, m)
            y = self.scale_projections[i](x).transpose(1, 2)           # [B, out, T_i]
            if y.shape[-1] != length:
                y = F.interpolate(y, size=length, mode="linear", align_corners=False)
            scales.append(y.transpose(1, 2))                            # [B, T, out]
        return self.mixer(torch.cat(scales, dim=-1)) * mask.unsqueeze(-1).to(features.dtype)
