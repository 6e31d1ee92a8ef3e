"""Sequence backbones for dense multi-label TAL: ``[B, T, D_in]`` features + ``[B, T]`` mask ->
``([B, T, d], heat-map features [B, T, d_hm] or None)``.

- :class:`PDANBackbone` -- PDAN (Dai et al., WACV 2021, "PDAN: Pyramid Dilated Attention Network for Action
  Detection"), as released (``dairui01/PDAN`` ``PDAN.py``, the same in the Toyota Smarthome pipeline): a 1x1
  input projection, then ``num_layers`` residual blocks whose Dilated Attention Layer (DAL) attends, channel by
  channel, over the three snippets ``t - r, t, t + r`` (dilation ``r = 1, 2, 4, ...``): bias-free 1x1 query,
  key and value projections, ``softmax_k(q_t * k_{t+kr})`` per channel, values ``v_{t+kr} + rel_t[k]``
  (``rel_t`` a learned per-channel offset for each of the 3 kernel positions, initialised N(0, 1)); then ReLU,
  a 1x1 layer, dropout and a masked residual. The classifier is left to the head. Difference from the
  release: the input projection is masked, so padded snippets of a batch are 0 (the release lets the
  projection's bias into the first block's keys/values next to the padding); a padded video therefore scores
  exactly like the same video alone. (A value = key + offset DAL exists only in a fork's
  ``without_value_conv`` experiment branch of that repository, not in the authors' code.)
- :class:`MSTCTBackbone` -- MS-TCT (Dai et al., CVPR 2022, "MS-TCT: Multi-Scale Temporal ConvTransformer for
  Action Detection"), structured as released (``dairui01/MS-TCT``): input dropout; stages of temporal merging
  (kernel-3 temporal convolution, stride 1 in the first stage and 2 after, then LayerNorm) and Global-Local
  Relational blocks (pre-norm multi-head self-attention + a feed-forward layer with a temporal depth-wise
  convolution) closed by a LayerNorm; the Temporal Scale Mixer projects every stage to ``out_dim``, upsamples
  it linearly to ``T``, adds a 1x1 map of the coarsest stage to each finer one, and fuses the concatenation
  with a 1x1 layer (then dropout; the classification head follows). The un-mixed concatenation is returned for
  the heat-map branch (:class:`HeatmapHead`). Differences from the release: attention and the depth-wise
  convolution ignore padded snippets (the release pads every clip to a fixed ``num_clips`` and attends to the
  padding), and any number of stages is allowed (the release has 4). The linear upsampling still depends on
  the padded length ``T``, so a video padded in a batch can score slightly differently from the same video
  alone; PDAN has no such dependence.
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
        self.offset_embedding = nn.Parameter(torch.randn(3, dim))   # PDAN's rel_t [d, 1, 3], transposed
        for layer in (self.query, self.key, self.value):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out")   # as released (square: same as fan_in)

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

    heatmap_dim = 0                                                    # no heat-map branch

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, None]:
        m = mask.unsqueeze(-1).to(features.dtype)                      # [B, T, 1]
        x = self.input(features) * m                                   # [B, T, d]
        for block in self.blocks:
            x = block(x, m)
        return x, None


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
    """MS-TCT encoder + Temporal Scale Mixer: ``[B, T, D_in] -> ([B, T, out_dim], [B, T, S * out_dim])``,
    the fused features and the un-mixed scale concatenation that feeds the heat-map branch."""

    def __init__(self, in_dim: int, stage_dims: tuple[int, ...] = (256, 384, 576, 864), blocks_per_stage: int = 3,
                 heads: int = 8, mlp_ratio: int = 8, out_dim: int = 512, dropout: float = 0.0,
                 io_dropout: float = 0.5):
        super().__init__()
        self.out_dim = out_dim
        self.heatmap_dim = out_dim * len(stage_dims)
        self.input_dropout = nn.Dropout(io_dropout)                     # MS-TCT: nn.Dropout() on the inputs
        self.merges = nn.ModuleList()
        self.merge_norms = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.stage_norms = nn.ModuleList()
        previous = in_dim
        for i, dim in enumerate(stage_dims):
            # temporal merging: keep the rate in stage 1, halve it after (kernel 3, stride 2)
            self.merges.append(nn.Conv1d(previous, dim, kernel_size=3, stride=1 if i == 0 else 2, padding=1))
            self.merge_norms.append(nn.LayerNorm(dim))
            self.stages.append(nn.ModuleList([GlobalLocalBlock(dim, heads, mlp_ratio, dropout)
                                              for _ in range(blocks_per_stage)]))
            self.stage_norms.append(nn.LayerNorm(dim))
            previous = dim
        self.scale_projections = nn.ModuleList([nn.Linear(dim, out_dim) for dim in stage_dims])
        # the mixer adds a 1x1 map of the coarsest scale to every finer one
        self.coarse_to_fine = nn.ModuleList([nn.Linear(out_dim, out_dim) for _ in stage_dims[:-1]])
        self.fuse = nn.Linear(out_dim * len(stage_dims), out_dim)       # MS-TCT's linear_fuse (1x1 conv)
        self.output_dropout = nn.Dropout(io_dropout)                    # MS-TCT: dropout after linear_fuse

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = features.shape[1]
        m = mask.to(features.dtype)                                     # [B, T]
        x = self.input_dropout(features) * m.unsqueeze(-1)
        scales = []
        for i, (merge, norm, blocks, stage_norm) in enumerate(zip(self.merges, self.merge_norms, self.stages,
                                                                  self.stage_norms)):
            x = norm(merge(x.transpose(1, 2)).transpose(1, 2))          # [B, T_i, d_i]
            if i > 0:
                m = F.max_pool1d(m.unsqueeze(1), kernel_size=3, stride=2, padding=1).squeeze(1)
            x = x * m.unsqueeze(-1)
            for block in blocks:
                x = block(x, m)
            x = stage_norm(x) * m.unsqueeze(-1)
            y = self.scale_projections[i](x).transpose(1, 2)           # [B, out, T_i]
            if y.shape[-1] != length:
                y = F.interpolate(y, size=length, mode="linear", align_corners=False)
            scales.append(y.transpose(1, 2))                            # [B, T, out]
        coarse = scales[-1]
        mixed = [coarse] + [mix(coarse) + fine for mix, fine in zip(self.coarse_to_fine[::-1], scales[-2::-1])]
        valid = mask.unsqueeze(-1).to(features.dtype)                   # [B, T, 1]
        fused = self.output_dropout(self.fuse(torch.cat(mixed, dim=-1))) * valid         # [B, T, out]
        heatmap_features = torch.cat([coarse] + scales[-2::-1], dim=-1) * valid          # [B, T, S * out]
        return fused, heatmap_features


class HeatmapHead(nn.Module):
    """MS-TCT's heat-map branch: kernel-3 temporal conv -> ReLU -> 1x1 conv, ``[B, T, d_hm] -> [B, T, C]``
    logits of the class heat-map (trained with :func:`heatmap_focal_loss`, unused at inference)."""

    def __init__(self, in_dim: int, hidden_dim: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, hidden_dim, kernel_size=3, padding=1)
        self.out = nn.Conv1d(hidden_dim, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.conv(x.transpose(1, 2)))).transpose(1, 2)


def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                       pairing: str = "released") -> torch.Tensor:
    """MS-TCT's action focal loss between heat-map logits and Gaussian targets, both ``[B, T, C]``.

    ``p = clamp(sigmoid(logit), 1e-4, 1 - 1e-4)``; positives (target 1): ``log(p) (1 - p)^2``; negatives:
    ``log(1 - p) p^2 (1 - target)^4``; the loss is ``-(pos + neg) / #positives`` (``-neg`` without positives).

    ``pairing="released"``: as ``focal_loss`` in MS-TCT's ``utils.py``, which iterates over the batch and
    broadcasts each video's prediction against the targets of *every* video of the batch, then averages over
    the videos (padded snippets count as negatives). ``pairing="per_video"``: each video against its own
    targets, padded snippets excluded, normalised by the batch's positives (the CenterNet loss it adapts).
    With one video per batch both are equal.
    """
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)          # [B, T, C]
    target = target.float()
    pos, neg = target.eq(1).float(), target.lt(1).float()
    neg_weight = (1 - target) ** 4
    if pairing == "per_video":
        valid = mask.unsqueeze(-1).to(p.dtype)                         # [B, T, 1]
        pos_loss = (torch.log(p) * (1 - p) ** 2 * pos * valid).sum()
        neg_loss = (torch.log(1 - p) * p ** 2 * neg_weight * neg * valid).sum()
        num_pos = (pos * valid).sum()
        return -neg_loss if num_pos == 0 else -(pos_loss + neg_loss) / num_pos
    if pairing != "released":
        raise ValueError(f"pairing={pairing!r}: use 'released' or 'per_video'")
    num_pos = pos.sum()
    # prediction of video b against the targets of every video b' = against their sum over b' ([T, C])
    pos_all, neg_all = pos.sum(0), (neg_weight * neg).sum(0)
    pos_loss = (torch.log(p) * (1 - p) ** 2 * pos_all).sum(dim=(1, 2))           # [B]
    neg_loss = (torch.log(1 - p) * p ** 2 * neg_all).sum(dim=(1, 2))
    per_video = -neg_loss if num_pos == 0 else -(pos_loss + neg_loss) / num_pos
    return per_video.mean()
