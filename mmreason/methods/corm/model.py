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
   divided by the number of valid snippets (PDAN/MS-TCT's normalisation, restricted to the mask).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.methods.corm.backbones import MSTCTBackbone, PDANBackbone
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

    def class_specific(self, h: torch.Tensor) -> torch.Tensor:      # h: [B, T, d] -> [B, T, C, k]
        if self.class_features == "film":
            base = self.norm(self.project(h)).unsqueeze(2)             # [B, T, 1, k]
            return base * (1 + self.class_scale) + self.class_shift
        return torch.einsum("btd,cdk->btck", h, self.class_weight) + self.class_bias

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, length, _ = h.shape
        z = self.class_specific(h)                                      # [B, T, C, k]
        if len(self.visual):
            tokens = z.reshape(batch * length, self.num_classes, self.class_dim)
            for layer in self.visual:                                   # visual co-occurrence
                tokens = layer(tokens)
            z = tokens.reshape(batch, length, self.num_classes, self.class_dim)
        if self.has_graph:                                              # semantic / statistical co-occurrence
            graph = self.relation_graph().to(z.dtype)                   # [C, C]
            message = z
            for layer in self.graph_layers:
                message = F.gelu(layer(torch.einsum("ij,btjk->btik", graph, message)))
            z = z + message
        return (z * self.classifier_weight).sum(-1) + self.classifier_bias   # [B, T, C]


class MultiLabelTALModel(nn.Module):
    """Backbone + (CORM and/or a linear per-frame classifier). ``loss(batch)`` for the engine."""

    def __init__(self, backbone: nn.Module, num_classes: int, corm: CORM | None = None, base_logits: bool = True):
        super().__init__()
        self.backbone = backbone
        self.corm = corm
        self.num_classes = num_classes
        self.classifier = nn.Linear(backbone.out_dim, num_classes) if (corm is None or base_logits) else None

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features [B, T, D_in], mask [B, T] -> logits [B, T, C]."""
        h = self.backbone(features, mask)                               # [B, T, d]
        logits = 0
        if self.classifier is not None:
            logits = self.classifier(h)
        if self.corm is not None:
            logits = logits + self.corm(h)
        return logits

    def loss(self, batch: dict) -> dict:
        logits = self(batch["features"], batch["mask"])
        return {"loss": masked_bce_loss(logits, batch["labels"], batch["mask"])}

    @torch.no_grad()
    def predict(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sigmoid scores ``[B, T, C]``, zero on padded snippets (PDAN/MS-TCT ``mask_probs``)."""
        return torch.sigmoid(self(features, mask)) * mask.unsqueeze(-1).to(features.dtype)


def build_backbone(cfg: CORMModelConfig, in_dim: int) -> nn.Module:
    if cfg.backbone == "pdan":
        return PDANBackbone(in_dim, cfg.hidden_dim, cfg.pdan_layers, cfg.dropout)
    return MSTCTBackbone(in_dim, tuple(cfg.mstct_stage_dims), cfg.mstct_blocks, cfg.mstct_heads,
                         cfg.mstct_mlp_ratio, cfg.mstct_out_dim, cfg.mstct_dropout)
