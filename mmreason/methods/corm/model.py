"""CORM: "Co-Occurrence Matters: Learning Action Relation for Temporal Action Localization"
(Cao*, Wang*, Zhang, Lu, Zhang, Zhang; arXiv 2303.08463; IEEE TCSVT 34(5), 2024).

What the paper states (abstract, verified): a plug-and-play Co-Occurrence Relation Module (CORM) on
sequence models for multi-label dense TAL explicitly models co-occurrence between action classes from
visual information and from the semantic embeddings of the class labels.

What is implemented here is a **reconstruction** (spec §4.3 [PROPOSED]); the method section was not
readable, so none of the following is claimed to be the paper's own. Each choice is a config field of
:class:`~mmreason.methods.corm.config.CORMModelConfig`:

1. Class-specific features ``Z0[t, c]`` from the backbone output ``H [B, T, d]`` (``class_features``:
   FiLM ``LN(W H_t) * (1 + g_c) + b_c`` or one linear map per class), width ``class_dim``.
2. Visual co-occurrence: self-attention among the C class tokens of each frame
   ``Z_v = Z0 + MHA(LN Z0)`` + FFN (``visual_layers``, ``visual_heads``).
3. Semantic co-occurrence: a relation graph over label embeddings ``E [C, E]``
   (``semantic_graph``: ``softmax(cos(E_i, E_j)/tau)`` off the diagonal, or learned query/key projections
   of ``E``), optionally mixed with the training-set statistics ``P(c_j | c_i)`` (row-normalised, off the
   diagonal; ML-GCN's convention) with weight ``statistics_weight``; propagation ``Z_s = A Z_v W_s``
   (``graph_layers``).
4. Fusion ``Z = Z_v + Z_s``; per-class logit ``y[t, c] = w_c . Z[t, c] + b_c``, plus the backbone's own
   linear logits when ``base_logits`` (residual).
5. Loss: per-frame binary cross-entropy over the C classes, summed over valid snippets and classes and
   divided by the number of valid snippets (PDAN/MS-TCT's normalisation, restricted to the mask). On MS-TCT,
   plus ``heatmap_weight`` x the focal loss of its heat-map branch (MS-TCT's own loss, as released).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.methods.corm.backbones import HeatmapHead, MSTCTBackbone, PDANBackbone, heatmap_focal_loss
from mmreason.methods.corm.config import CORMModelConfig


def masked_bce_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum_{valid t, c} BCE(logit, label) / #valid t``. logits/labels: [B, T, C], mask: [B, T]."""
    per_entry = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")   # [B, T, C]
    valid = mask.to(logits.dtype)
    return (per_entry * valid.unsqueeze(-1)).sum() / valid.sum().clamp_min(1.0)


def relation_graph_from_statistics(cooccurrence: torch.Tensor) -> torch.Tensor:
    """Row-normalised off-diagonal ``P(c_j | c_i)`` ``[C, C]`` (uniform over other classes for unseen rows)."""
    num_classes = cooccurrence.shape[0]
    off_diagonal = cooccurrence * (1 - torch.eye(num_classes, device=cooccurrence.device))
    row_sum = off_diagonal.sum(dim=1, keepdim=True)
    uniform = (1 - torch.eye(num_classes, device=cooccurrence.device)) / max(num_classes - 1, 1)
    return torch.where(row_sum > 0, off_diagonal / row_sum.clamp_min(1e-12), uniform)


class ClassTokenAttention(nn.Module):
    """Pre-norm transformer layer over the class tokens of one frame: [N, C, k] -> [N, C, k]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.norm1(z)
        z = z + self.attention(h, h, h, need_weights=False)[0]
        return z + self.ffn(self.norm2(z))


class CORM(nn.Module):
    """Co-occurrence relation module: backbone features ``[B, T, d]`` -> per-class logits ``[B, T, C]``.

    Args:
        in_dim: backbone output width d.
        num_classes: C.
        cfg: the model config (CORM fields).
        label_embeddings: ``[C, E]`` label embeddings (needed unless ``semantic_graph='none'``).
        cooccurrence: ``[C, C]`` training-set ``P(c_j | c_i)`` (needed when ``use_statistics``).
    """

    def __init__(self, in_dim: int, num_classes: int, cfg: CORMModelConfig,
                 label_embeddings: torch.Tensor | None = None, cooccurrence: torch.Tensor | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError("CORM relates classes to each other: it needs at least 2 classes")
        k = cfg.class_dim
        self.num_classes, self.class_dim = num_classes, k
        self.class_features = cfg.class_features
        if cfg.class_features == "film":
            self.project = nn.Linear(in_dim, k)
            self.norm = nn.LayerNorm(k)
            self.class_scale = nn.Parameter(torch.randn(num_classes, k) * 0.5)
            self.class_shift = nn.Parameter(torch.randn(num_classes, k) * 0.5)
        else:   # one projection per class, [C, d, k]
            self.class_weight = nn.Parameter(torch.randn(num_classes, in_dim, k) / math.sqrt(in_dim))
            self.class_bias = nn.Parameter(torch.zeros(num_classes, k))
        self.visual = nn.ModuleList([ClassTokenAttention(k, cfg.visual_heads) for _ in range(cfg.visual_layers)])

        self.semantic_graph = cfg.semantic_graph
        self.temperature = cfg.semantic_temperature
        self.use_statistics = cfg.use_statistics
        if self.semantic_graph != "none":
            if label_embeddings is None:
                raise ValueError(f"semantic_graph={cfg.semantic_graph!r} needs label embeddings [C, E]")
            if label_embeddings.shape[0] != num_classes:
                raise ValueError(f"label embeddings have {label_embeddings.shape[0]} rows for {num_classes} classes")
            self.register_buffer("label_embeddings", label_embeddings.float().clone())
            if self.semantic_graph == "learned":
                self.graph_query = nn.Linear(label_embeddings.shape[1], k, bias=False)
                self.graph_key = nn.Linear(label_embeddings.shape[1], k, bias=False)
        if self.use_statistics:
            if cooccurrence is None:
                raise ValueError("use_statistics=True needs the training co-occurrence matrix [C, C]")
            self.register_buffer("statistics_graph", relation_graph_from_statistics(cooccurrence.float()))
        self.statistics_weight = 1.0 if self.semantic_graph == "none" else cfg.statistics_weight
        self.has_graph = self.semantic_graph != "none" or self.use_statistics
        self.graph_layers = nn.ModuleList([nn.Linear(k, k) for _ in range(cfg.graph_layers if self.has_graph else 0)])

        self.classifier_weight = nn.Parameter(torch.randn(num_classes, k) / math.sqrt(k))
        self.classifier_bias = nn.Parameter(torch.zeros(num_classes))

    def relation_graph(self) -> torch.Tensor:
        """The class relation matrix ``A [C, C]`` (rows sum to 1, zero diagonal)."""
        eye = torch.eye(self.num_classes, dtype=torch.bool, device=self.classifier_bias.device)
        graph = None
        if self.semantic_graph != "none":
            if self.semantic_graph == "cosine":
                e = F.normalize(self.label_embeddings, dim=-1)
                similarity = e @ e.T / self.temperature                    # [C, C]
            else:
                similarity = self.graph_query(self.label_embeddings) @ self.graph_key(self.label_embeddings).T
                similarity = similarity / math.sqrt(self.class_dim)
            graph = torch.softmax(similarity.masked_fill(eye, float("-inf")), dim=-1)
        if self.use_statistics:
            w = self.statistics_weight
            graph = self.statistics_graph if graph is None else (1 - w) * graph + w * self.statistics_graph
        return graph

    def class_specific(self, h: torch.Tensor) -> torch.Tensor:      # h: [N, d] -> [N, C, k]
        if self.class_features == "film":
            base = self.norm(self.project(h)).unsqueeze(1)             # [N, 1, k]
            return torch.addcmul(self.class_shift, base, 1 + self.class_scale)
        return torch.einsum("nd,cdk->nck", h, self.class_weight) + self.class_bias

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """h [B, T, d] (and mask [B, T]) -> logits [B, T, C]; 0 on padded snippets, which are skipped (CORM
        works frame by frame, so this changes no valid logit and saves the padding's share of the work)."""
        batch, length, _ = h.shape
        if mask is None:
            frames = h.reshape(batch * length, -1)                      # [N, d]
        else:
            keep = mask.reshape(-1) > 0
            frames = h.reshape(batch * length, -1)[keep]
        z = self.class_specific(frames)                                 # [N, C, k]
        for layer in self.visual:                                       # visual co-occurrence among class tokens
            z = layer(z)
        if self.has_graph:                                              # semantic / statistical co-occurrence
            graph = self.relation_graph().to(z.dtype)                   # [C, C]
            message = z
            for layer in self.graph_layers:
                message = F.gelu(layer(torch.matmul(graph, message)))   # [C, C] @ [N, C, k]
            z = z + message
        logits = (z * self.classifier_weight).sum(-1) + self.classifier_bias   # [N, C]
        if mask is None:
            return logits.reshape(batch, length, -1)
        out = logits.new_zeros(batch * length, self.num_classes)
        out[keep] = logits
        return out.reshape(batch, length, -1)


class MultiLabelTALModel(nn.Module):
    """Backbone + (CORM and/or a linear per-frame classifier) [+ MS-TCT's heat-map branch]. ``loss(batch)`` for
    the engine: masked BCE, plus ``heatmap_weight`` x the heat-map focal loss when the branch exists."""

    def __init__(self, backbone: nn.Module, num_classes: int, corm: CORM | None = None, base_logits: bool = True,
                 heatmap_weight: float = 0.0, heatmap_pairing: str = "released"):
        super().__init__()
        self.backbone = backbone
        self.corm = corm
        self.num_classes = num_classes
        self.classifier = nn.Linear(backbone.out_dim, num_classes) if (corm is None or base_logits) else None
        self.heatmap_weight = heatmap_weight
        self.heatmap_pairing = heatmap_pairing
        self.heatmap = None
        if heatmap_weight > 0 and getattr(backbone, "heatmap_dim", 0):
            self.heatmap = HeatmapHead(backbone.heatmap_dim, backbone.out_dim, num_classes)

    def _classify(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # h: [B, T, d] -> [B, T, C]
        logits = self.classifier(h) if self.classifier is not None else 0
        return logits + self.corm(h, mask) if self.corm is not None else logits

    def outputs(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """features [B, T, D_in], mask [B, T] -> logits [B, T, C] and heat-map logits [B, T, C] (or None)."""
        h, heatmap_features = self.backbone(features, mask)             # [B, T, d], [B, T, d_hm] | None
        heat = self.heatmap(heatmap_features) if self.heatmap is not None else None
        return self._classify(h, mask), heat

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features [B, T, D_in], mask [B, T] -> logits [B, T, C]."""
        return self._classify(self.backbone(features, mask)[0], mask)

    def loss(self, batch: dict) -> dict:
        if self.heatmap is None:
            logits = self(batch["features"], batch["mask"])
            return {"loss": masked_bce_loss(logits, batch["labels"], batch["mask"])}
        if "heatmap" not in batch:
            raise KeyError("the MS-TCT heat-map branch needs batch['heatmap'] (the dataset's Gaussian heat-maps); "
                           "set model.heatmap_weight=0 to train without it")
        logits, heat = self.outputs(batch["features"], batch["mask"])
        bce = masked_bce_loss(logits, batch["labels"], batch["mask"])
        focal = heatmap_focal_loss(heat, batch["heatmap"], batch["mask"], self.heatmap_pairing)
        return {"loss": bce + self.heatmap_weight * focal, "bce": bce.detach(), "heatmap": focal.detach()}

    @torch.no_grad()
    def predict(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sigmoid scores ``[B, T, C]``, zero on padded snippets (PDAN/MS-TCT ``mask_probs``)."""
        return torch.sigmoid(self(features, mask)) * mask.unsqueeze(-1).to(features.dtype)


def build_backbone(cfg: CORMModelConfig, in_dim: int) -> nn.Module:
    if cfg.backbone == "pdan":
        return PDANBackbone(in_dim, cfg.hidden_dim, cfg.pdan_layers, cfg.dropout)
    return MSTCTBackbone(in_dim, tuple(cfg.mstct_stage_dims), cfg.mstct_blocks, cfg.mstct_heads,
                         cfg.mstct_mlp_ratio, cfg.mstct_out_dim, cfg.mstct_dropout, cfg.dropout)
