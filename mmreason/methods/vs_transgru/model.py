"""VS-TransGRU: Transformer-GRU egocentric action anticipation with visual-semantic fusion.

Paper: Cao, Sun, Lv, Min, Zhang, "VS-TransGRU: A Novel Transformer-GRU-based Framework Enhanced by
Visual-Semantic Fusion for Egocentric Action Anticipation", arXiv 2307.03918 (IEEE 2024).

What the paper states (abstract, spec §3.1) and where it lives here:
  1. high-level semantic features, generated (a) from the class labels or (b) directly from the visual
     observation, augment the visual features -> :class:`SemanticFeatures` (``semantic_source``);
  2. a visual-semantic fusion module -> :class:`VisualSemanticFusion` (``fusion``);
  3. a Transformer encoder for long-term modelling of the observation and a GRU decoder for flexible iterative
     decoding of the future -> :class:`Branch`;
  4. RGB / optical-flow / object branches evaluated on EPIC-Kitchens-55/100 and EGTEA Gaze+ with the RULSTM
     protocol -> :class:`VSTransGRU` (late fusion of the branches).

Everything else is a reconstruction (spec §3.3, the method sections were not readable) held in a named
config field: the label-embedding source, semantic = softmax(recognition logits / T) @ E (variant a) or an MLP
into the embedding space with a 1 - cos alignment loss (variant b), gated fusion, encoder summary -> GRU
state, what the GRU consumes per step (``decoder_input``), one classifier per step, MATT-like modality
attention, and the loss weights. Losses: cross-entropy on the action at every anticipation step (RULSTM),
per-branch cross-entropy, recognition cross-entropy (and, for variant b, the 1 - cos alignment) on every
past frame the branch sees whose action is known; on RULSTM data that action comes from the annotated segment
covering the frame (``data.observed_labels``).

Shapes: B batch, T = S_enc + S_ant feature steps, C action classes, E label-embedding size, d hidden width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.methods.vs_transgru.config import VSTransGRUConfig

IGNORE = -100  # label value that the losses skip (unknown observed labels)


class SemanticFeatures(nn.Module):
    """Semantic tokens in the label-embedding space, projected to d.

    ``label_probs`` (variant a): ``s_t = softmax(W_r v_t / T) @ E`` from a per-step recognition head.
    ``predicted`` (variant b): ``s_t = MLP(v_t)``, trained towards ``E[y_t]`` where observed labels exist.
    """

    def __init__(self, cfg: VSTransGRUConfig, label_embeddings: torch.Tensor):
        super().__init__()
        self.source = cfg.semantic_source
        self.temperature = cfg.semantic_temperature
        num_classes, emb_dim = label_embeddings.shape
        d = cfg.hidden_dim
        self.register_buffer("label_embeddings", label_embeddings.float())   # [C, E], frozen
        self.recognition = nn.Linear(d, num_classes)                          # per-step action recognition
        if self.source == "predicted":
            self.to_semantic = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, emb_dim))
        self.project = nn.Sequential(nn.Linear(emb_dim, d), nn.LayerNorm(d))

    def embed_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """[..., C] class probabilities -> [..., d] (probability-weighted label embedding)."""
        return self.project(probs @ self.label_embeddings)

    def forward(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """visual [B, T, d] -> {"semantic": [B, T, d], "recognition_logits": [B, T, C], "raw": [B, T, E]}."""
        rec_logits = self.recognition(visual)
        if self.source == "predicted":
            raw = self.to_semantic(visual)                                    # [B, T, E]
        else:
            raw = F.softmax(rec_logits / self.temperature, dim=-1) @ self.label_embeddings
        return {"semantic": self.project(raw), "recognition_logits": rec_logits, "raw": raw}


class VisualSemanticFusion(nn.Module):
    """Fuse visual v and semantic s tokens [B, T, d] -> [B, T, d] (``gated``, ``cross_attention`` or ``sum``)."""

    def __init__(self, cfg: VSTransGRUConfig):
        super().__init__()
        d = cfg.hidden_dim
        self.mode = cfg.fusion
        if self.mode == "gated":
            self.gate = nn.Linear(2 * d, d)
        elif self.mode == "cross_attention":
            self.attn = nn.MultiheadAttention(d, cfg.num_heads, dropout=cfg.dropout, batch_first=True)
        self.norm = nn.LayerNorm(d)

    def forward(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.mode == "gated":
            g = torch.sigmoid(self.gate(torch.cat([v, s], dim=-1)))
            return self.norm(g * v + (1 - g) * s)
        if self.mode == "cross_attention":
            # causal: step t attends to semantic tokens 0..t only, so no future semantics leak into the past
            t = v.shape[1]
            mask = torch.ones(t, t, dtype=torch.bool, device=v.device).triu(1)
            out, _ = self.attn(v, s, s, attn_mask=mask, need_weights=False)
            return self.norm(v + out)
        return self.norm(v + s)


class Branch(nn.Module):
    """One modality: project -> semantics -> fusion -> Transformer encoder (observed steps) -> GRU decoder."""

    def __init__(self, cfg: VSTransGRUConfig, feature_dim: int, label_embeddings: torch.Tensor,
                 observed_steps: int, anticipation_steps: int):
        super().__init__()
        d = cfg.hidden_dim
        self.cfg = cfg
        self.observed_steps = observed_steps
        self.anticipation_steps = anticipation_steps
        num_classes = label_embeddings.shape[0]
        self.visual = nn.Sequential(nn.Linear(feature_dim, d), nn.LayerNorm(d))
        self.semantics = SemanticFeatures(cfg, label_embeddings) if cfg.semantic_source != "none" else None
        self.fusion = VisualSemanticFusion(cfg) if self.semantics is not None else None
        self.position = nn.Parameter(torch.zeros(1, observed_steps, d))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, cfg.ff_dim, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.encoder_layers, enable_nested_tensor=False)
        self.encoder_norm = nn.LayerNorm(d)
        self.init_state = nn.Linear(d, d)
        self.decoder = nn.GRUCell(d, d)
        if self.semantics is None and cfg.decoder_input == "autoregressive":
            self.feedback = nn.Linear(num_classes, d)   # embeds the previous prediction without label semantics
        self.dropout = nn.Dropout(cfg.dropout)
        n_heads = 1 if cfg.share_step_classifier else anticipation_steps
        self.classifiers = nn.ModuleList(nn.Linear(d, num_classes) for _ in range(n_heads))

    def _feedback(self, logits: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(logits, dim=-1)
        if self.semantics is not None:
            return self.semantics.embed_probs(probs)
        return self.feedback(probs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [B, T, D_m] with T >= S_enc (+ S_ant in 'observation' mode) -> logits [B, S_ant, C] and extras."""
        s_enc, s_ant = self.observed_steps, self.anticipation_steps
        need = s_enc + (s_ant if self.cfg.decoder_input == "observation" else 0)
        if x.shape[1] < need:
            raise ValueError(f"branch needs at least {need} feature steps, got {x.shape[1]}")
        v = self.visual(x[:, :need])                                        # [B, T, d]
        out: dict[str, torch.Tensor] = {}
        if self.semantics is not None:
            sem = self.semantics(v)
            fused = self.fusion(v, sem["semantic"])                          # [B, T, d]
            out["recognition_logits"] = sem["recognition_logits"]
            out["semantic_raw"] = sem["raw"]
        else:
            fused = v
        enc = self.encoder_norm(self.encoder(fused[:, :s_enc] + self.position))   # [B, S_enc, d]
        summary = enc[:, -1] if self.cfg.encoder_summary == "last" else enc.mean(dim=1)
        h = torch.tanh(self.init_state(summary))                            # [B, d]
        step_input = enc[:, -1]
        logits = []
        for j in range(s_ant):
            if self.cfg.decoder_input == "observation":
                step_input = fused[:, s_enc + j]                             # frame observed at tau_a(j)
            elif j > 0:
                step_input = self._feedback(logits[-1])                     # its own previous prediction
            h = self.decoder(self.dropout(step_input), h)
            head = self.classifiers[0 if len(self.classifiers) == 1 else j]
            logits.append(head(self.dropout(h)))
        out["logits"] = torch.stack(logits, dim=1)                          # [B, S_ant, C]
        out["summary"] = summary
        return out


class VSTransGRU(nn.Module):
    """Late fusion of per-modality branches; ``loss(batch)`` for the engine, ``forward`` for evaluation."""

    def __init__(self, cfg: VSTransGRUConfig, modalities: list[str], feature_dims: list[int],
                 label_embeddings: torch.Tensor, observed_steps: int = 6, anticipation_steps: int = 8):
        super().__init__()
        if len(modalities) != len(feature_dims) or not modalities:
            raise ValueError(f"modalities {modalities} and feature_dims {feature_dims} must be non-empty and equal length")
        if cfg.hidden_dim % cfg.num_heads:
            raise ValueError(f"hidden_dim {cfg.hidden_dim} must be divisible by num_heads {cfg.num_heads}")
        self.cfg = cfg
        self.modalities = list(modalities)
        self.branches = nn.ModuleDict({m: Branch(cfg, dim, label_embeddings, observed_steps, anticipation_steps)
                                       for m, dim in zip(modalities, feature_dims)})
        if cfg.modality_fusion == "attention" and len(modalities) > 1:
            d = cfg.hidden_dim
            self.modality_attention = nn.Sequential(nn.Linear(d * len(modalities), d), nn.ReLU(),
                                                    nn.Linear(d, len(modalities)))

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """features {modality: [B, T, D_m]} -> {"logits": [B, S_ant, C] fused, "branch_logits": [M, B, S_ant, C]}."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise KeyError(f"batch lacks features for modalities {missing}; has {sorted(features)}")
        outs = [self.branches[m](features[m]) for m in self.modalities]
        branch_logits = torch.stack([o["logits"] for o in outs])             # [M, B, S_ant, C]
        if len(outs) == 1:
            fused = branch_logits[0]
        elif hasattr(self, "modality_attention"):
            w = F.softmax(self.modality_attention(torch.cat([o["summary"] for o in outs], -1)), -1)   # [B, M]
            fused = torch.einsum("bm,mbsc->bsc", w, branch_logits)
        else:
            fused = branch_logits.mean(0)
        return {"logits": fused, "branch_logits": branch_logits, "branches": outs}

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        out = self(batch["features"])
        targets = batch["targets"]                                          # [B, S_ant]
        num_classes = out["logits"].shape[-1]
        ce = F.cross_entropy(out["logits"].reshape(-1, num_classes), targets.reshape(-1), ignore_index=IGNORE)
        total = ce
        logs = {"ce": ce.detach()}
        if len(self.modalities) > 1 and self.cfg.branch_loss_weight > 0:
            bl = out["branch_logits"]
            branch_ce = F.cross_entropy(bl.reshape(-1, num_classes), targets.repeat(bl.shape[0], 1).reshape(-1),
                                        ignore_index=IGNORE)
            total = total + self.cfg.branch_loss_weight * branch_ce
            logs["branch_ce"] = branch_ce.detach()
        observed = batch.get("observed_labels")                             # [B, T] (or [B, S_enc]) or absent
        if observed is not None and (observed != IGNORE).any() and self.cfg.semantic_source != "none":
            rec, align = 0.0, 0.0
            for branch, o in zip(self.branches.values(), out["branches"]):
                steps = min(observed.shape[1], o["recognition_logits"].shape[1])   # frames this branch saw
                labels = observed[:, :steps]
                rec_logits = o["recognition_logits"][:, :steps]                    # [B, steps, C]
                rec = rec + F.cross_entropy(rec_logits.reshape(-1, num_classes), labels.reshape(-1), ignore_index=IGNORE)
                if self.cfg.semantic_source == "predicted":
                    known = labels != IGNORE
                    target_emb = branch.semantics.label_embeddings[labels[known]]        # [n, E]
                    align = align + (1 - F.cosine_similarity(o["semantic_raw"][:, :steps][known], target_emb, dim=-1)).mean()
            m = len(self.modalities)
            total = total + self.cfg.recognition_loss_weight * rec / m
            logs["recognition_ce"] = (rec / m).detach()
            if self.cfg.semantic_source == "predicted":
                total = total + self.cfg.alignment_loss_weight * align / m
                logs["alignment"] = (align / m).detach()
        return {"loss": total, **logs}

    @torch.no_grad()
    def predict(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fused action logits [B, S_ant, C]."""
        return self(features)["logits"]
