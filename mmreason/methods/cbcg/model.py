"""CBCG: "Weakly Supervised Video Anomaly Detection Based on Cross-Batch Clustering Guidance" (Cao, Zhang, Zhang,
Wang, Zhang; ICME 2023, arXiv 2212.08506).

Only the abstract could be read (specs/vad.md §3.1); it names three parts, implemented here as reconstructions
(every unstated choice is a field of :class:`~mmreason.methods.cbcg.config.CbcgConfig`):

1. **Batch clustering loss** on a clustering branch, so the segments of a mini-batch form distinct normal and
   abnormal clusters: 2-means over unit-norm segment embeddings (normal-video segments anchored to the normal
   cluster; the abnormal cluster is the one with the smaller share of normal-video segments), then
   ``mean ||e - c_assigned||^2 + relu(margin - ||c_normal - c_abnormal||)^2`` (:func:`batch_clustering_loss`).
   What is clustered is ``cluster_on``: by default the snippet features themselves (``'input'``; the clusters then
   follow the feature geometry rather than what the MIL head has learned, and the loss has no weights to train),
   or the shared backbone features / a projection of them, which the loss trains (``'backbone'``, ``'branch'``).
   Only ``'input'`` makes the guidance clearly beat the baseline in the README's ablation.
2. **Cross-batch learning**: the clustering results of previous mini-batches (embeddings with their cluster) stay
   in a FIFO memory per cluster (:class:`CrossBatchMemory`) and are clustered with the current batch, so the rare
   abnormal segments of earlier batches keep the abnormal cluster populated.
3. **Clustering-guided segment scores**: each abnormal-video segment's soft assignment to the abnormal centre,
   ``softmax(-||e - c||^2 / tau)``, (a) is a segment-level target for the scoring head (BCE), beyond the bag-level
   MIL, and (b) ranks the abnormal bag's segments for the top-k MIL selection in place of (or blended with) the
   head's own scores (:func:`guided_topk_mean`), so incoherent high-scoring segments (noise spikes) do not become
   the MIL positives when the cross-batch clusters say otherwise.

The baseline it extends (``use_clustering=False``): a top-k MIL scoring head on 32-segment I3D bags (RTFM-style
bag score = mean of the top-k segment scores, BCE against the video label) with Sultani et al.'s smoothness and
sparsity terms. Crops are folded into the batch and their segment scores averaged (RTFM).

Further reconstructions (fields of the config, off by default): ``backbone='mtn'`` puts RTFM's multi-scale temporal
network (:class:`MultiScaleTemporal`, after RTFM's released ``Aggregate``) before the MLP, and ``test_guidance``
blends the head's test score with the abnormal-cluster posterior against the centres kept from training
(:func:`cluster_posterior`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.methods.cbcg.config import CbcgConfig


def bag_k(top_k: int, num_segments: int) -> int:
    """The MIL k: ``top_k``, or with ``top_k = 0`` the XD-Violence peers' ``S // 16 + 1`` (XDVioDet, UR-DMU)."""
    return top_k if top_k > 0 else num_segments // 16 + 1


def topk_mean(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the ``k`` largest scores along the last axis: ``[B, S]`` -> ``[B]``."""
    return scores.topk(min(k, scores.shape[-1]), dim=-1).values.mean(-1)


def guided_topk_mean(scores: torch.Tensor, guide: torch.Tensor, k: int, weight: float) -> torch.Tensor:
    """Mean score of the ``k`` segments ranked highest by ``(1 - weight) * score + weight * guide`` (``[B, S]`` ->
    ``[B]``); the ranking is not differentiated, the selected scores are. ``weight = 0`` is :func:`topk_mean`."""
    rank = (1 - weight) * scores.detach() + weight * guide  # [B, S]
    picked = rank.topk(min(k, scores.shape[-1]), dim=-1).indices  # [B, k]
    return scores.gather(-1, picked).mean(-1)


def mil_loss(normal_scores: torch.Tensor, abnormal_scores: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k MIL: BCE of each bag's top-k mean score against its video label (``[B, S]`` scores in (0, 1))."""
    bag = torch.cat([topk_mean(normal_scores, k), topk_mean(abnormal_scores, k)])  # [2B]
    target = torch.cat([torch.zeros(len(normal_scores)), torch.ones(len(abnormal_scores))]).to(bag)
    return F.binary_cross_entropy(bag.clamp(1e-6, 1 - 1e-6), target)


def cluster_posterior(emb: torch.Tensor, centres: torch.Tensor, temperature: float) -> torch.Tensor:
    """Abnormal-cluster posterior ``softmax(-||e - c||^2 / tau)[abnormal]`` of ``[..., E]`` embeddings against
    ``[2, E]`` (normal, abnormal) centres; ``[...]``. Equal distances (e.g. centres not set yet) give 0.5."""
    d2 = ((emb[..., None, :] - centres) ** 2).sum(-1)  # [..., 2]
    return (d2 / -temperature).softmax(-1)[..., 1]


class NonLocal1d(nn.Module):
    """Non-local block over time in RTFM's released form (dot-product affinity divided by T, no subsampling, half
    the channels inside): ``z = x + BN(W ((theta x)^T (phi x) / T) g x)``; the BN starts at zero (identity block)."""

    def __init__(self, channels: int):
        super().__init__()
        inter = max(channels // 2, 1)
        self.theta, self.phi, self.g = (nn.Conv1d(channels, inter, 1) for _ in range(3))
        self.out = nn.Sequential(nn.Conv1d(inter, channels, 1), nn.BatchNorm1d(channels))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, C, T]
        affinity = self.theta(x).transpose(1, 2) @ self.phi(x) / x.shape[-1]  # [N, T, T]
        y = (affinity @ self.g(x).transpose(1, 2)).transpose(1, 2)  # [N, inter, T]
        return x + self.out(y)


class MultiScaleTemporal(nn.Module):
    """RTFM's multi-scale temporal network (released ``Aggregate``), for ``dim`` divisible by 4: three 3-tap 1-D
    convolutions with dilation 1, 2, 4 (``dim -> dim/4`` each, ReLU, BN) for local context, a 1x1 convolution
    (``dim -> dim/4``, ReLU) and a non-local block for global context, concatenated (``dim``) and fused by a 3-tap
    convolution (ReLU, BN) plus the input (residual). ``[N, T, D] -> [N, T, D]``."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 4:
            raise ValueError(f"backbone='mtn' needs feature_dim divisible by 4, got {dim}")
        q = dim // 4
        self.dilated = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, q, 3, padding=d, dilation=d), nn.ReLU(), nn.BatchNorm1d(q)) for d in (1, 2, 4))
        self.reduce = nn.Sequential(nn.Conv1d(dim, q, 1, bias=False), nn.ReLU())
        self.non_local = NonLocal1d(q)
        self.fuse = nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm1d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # [N, D, T]
        parts = [conv(h) for conv in self.dilated] + [self.non_local(self.reduce(h))]  # 4 x [N, D/4, T]
        return (self.fuse(torch.cat(parts, 1)) + h).transpose(1, 2)


class ClusterBranch(nn.Linear):
    """The clustering branch's projection, holding the ``[2, E]`` (normal, abnormal) cluster centres of the last
    training step as a persistent buffer, so a checkpoint carries them to test-time guided scoring."""

    def __init__(self, width: int, embed_dim: int, centre_dim: int):
        super().__init__(width, embed_dim)
        self.register_buffer("centres", torch.zeros(2, centre_dim))


class CrossBatchMemory(nn.Module):
    """Two FIFO queues (normal cluster, abnormal cluster) of detached embeddings from previous mini-batches."""

    def __init__(self, capacity: int, dim: int):
        super().__init__()
        self.capacity = capacity
        for name in ("normal", "abnormal"):
            self.register_buffer(f"{name}_bank", torch.zeros(capacity, dim), persistent=False)
            self.register_buffer(f"{name}_count", torch.zeros((), dtype=torch.long), persistent=False)  # total pushed

    def _push(self, name: str, emb: torch.Tensor) -> None:
        bank, count = getattr(self, f"{name}_bank"), getattr(self, f"{name}_count")
        emb = emb.detach()[-self.capacity:] if self.capacity else emb[:0]
        if len(emb) == 0:
            return
        slots = (count + torch.arange(len(emb), device=emb.device)) % self.capacity  # ring-buffer positions
        bank[slots] = emb.to(bank)
        count += len(emb)

    def push(self, embeddings: torch.Tensor, is_abnormal: torch.Tensor) -> None:
        """Add ``[N, E]`` embeddings with their cluster (``[N]`` bool); the oldest entries are overwritten."""
        self._push("normal", embeddings[~is_abnormal])
        self._push("abnormal", embeddings[is_abnormal])

    def get(self, name: str) -> torch.Tensor:
        """The stored embeddings of cluster ``name`` (at most ``capacity``; order is not meaningful)."""
        n = int(min(getattr(self, f"{name}_count").item(), self.capacity))
        return getattr(self, f"{name}_bank")[:n]


@torch.no_grad()
def two_means(points: torch.Tensor, from_normal_video: torch.Tensor, iters: int, anchor_normal: bool,
              init: tuple[torch.Tensor, torch.Tensor] | None = None,
              force_abnormal: torch.Tensor | None = None) -> torch.Tensor:
    """2-means over ``[N, E]`` points; returns ``[N]`` bool, True = abnormal cluster.

    Initial centres: ``init`` (normal, abnormal), else the normal-video mean and the point farthest from it.
    The abnormal cluster is the one with the smaller share of normal-video points (so the result does not depend
    on the cluster order); with ``anchor_normal`` normal-video points are always normal, and points flagged in
    ``force_abnormal`` (``[N]`` bool) are always abnormal.
    """
    if init is None:
        c_normal = points[from_normal_video].mean(0) if from_normal_video.any() else points.mean(0)
        c_abnormal = points[((points - c_normal) ** 2).sum(-1).argmax()]
    else:
        c_normal, c_abnormal = init
    centres = torch.stack([c_normal, c_abnormal])  # [2, E]
    assign = None
    for _ in range(max(iters, 1)):
        # nearest centre by ||c||^2 - 2 x.c (||x||^2 is common to both): one [N, E] x [E, 2] matmul (cdist is slow)
        previous, assign = assign, ((centres ** 2).sum(-1) - 2 * points @ centres.T).argmin(-1).bool()  # [N]
        if anchor_normal:
            assign = assign & ~from_normal_video
        if force_abnormal is not None:
            assign = assign | force_abnormal
        if previous is not None and torch.equal(assign, previous):
            break  # a fixed point: further Lloyd iterations change nothing
        members = torch.stack([~assign, assign]).to(points.dtype)  # [2, N]; a matmul, not two [N, E] copies
        counts = members.sum(1, keepdim=True)  # [2, 1]
        centres = torch.where(counts > 0, (members @ points) / counts.clamp(min=1), centres)  # an empty one stays
    share = [from_normal_video[m].float().mean() if m.any() else torch.tensor(1.0) for m in (~assign, assign)]
    if not anchor_normal and share[1] > share[0]:
        assign = ~assign
    return assign


def batch_clustering_loss(embeddings: torch.Tensor, is_abnormal: torch.Tensor, memory_normal: torch.Tensor,
                          memory_abnormal: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Compactness + separation of the two clusters; returns ``(loss, centres [2, E])``.

    Centres average the current members (with gradient) and the memory's members (without); compactness is the
    mean squared distance of each current embedding to its centre; separation is ``relu(margin - ||c_n - c_a||)^2``.
    """
    centres = []
    for members, mem in ((embeddings[~is_abnormal], memory_normal), (embeddings[is_abnormal], memory_abnormal)):
        total = members.sum(0) + mem.detach().sum(0)
        count = len(members) + len(mem)
        centres.append(total / count if count else embeddings.detach().mean(0))
    centres = torch.stack(centres)  # [2, E]
    compact = ((embeddings - centres[is_abnormal.long()]) ** 2).sum(-1).mean()
    separation = F.relu(margin - (centres[0] - centres[1]).norm()) ** 2
    return compact + separation, centres


class CbcgModel(nn.Module):
    """Feature MLP -> scoring head (segment anomaly score) and clustering branch (unit-norm embedding)."""

    def __init__(self, cfg: CbcgConfig):
        super().__init__()
        self.cfg = cfg
        self.temporal = MultiScaleTemporal(cfg.feature_dim) if cfg.backbone == "mtn" else None
        layers, width = ([nn.Dropout(cfg.dropout)] if self.temporal is not None else []), cfg.feature_dim
        for hidden in cfg.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = hidden
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        centre_dim = {"backbone": width, "branch": cfg.embed_dim, "input": cfg.feature_dim}[cfg.cluster_on]
        self.cluster_branch = ClusterBranch(width, cfg.embed_dim, centre_dim)
        self.memory = CrossBatchMemory(cfg.memory_size, centre_dim)
        self.register_buffer("step", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, S, D]`` crop features -> segment scores ``[B, S]`` (crop mean) and embeddings ``[B, S, E]``."""
        x = features
        if self.temporal is not None:  # temporal context within each crop's sequence
            b, c, s, d = x.shape
            x = self.temporal(x.reshape(b * c, s, d)).view(b, c, s, d)
        h = self.backbone(x)  # [B, C, S, H]
        scores = torch.sigmoid(self.head(h).squeeze(-1)).mean(1)  # [B, S]
        on = self.cfg.cluster_on
        feats = h if on == "backbone" else self.cluster_branch(h) if on == "branch" else features
        return scores, F.normalize(feats.mean(1), dim=-1)  # embeddings [B, S, E]: crop mean, unit norm

    @torch.no_grad()
    def segment_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Test-time scores ``[B, T]`` of ``[B, C, T, D]`` snippet features: the head's (crop mean), blended with
        the abnormal-cluster posterior when ``test_guidance > 0``."""
        scores, emb = self.forward(features)
        w = self.cfg.test_guidance
        if w > 0:
            posterior = cluster_posterior(emb, self.cluster_branch.centres, self.cfg.guide_temperature)  # [B, T]
            scores = (1 - w) * scores + w * posterior
        return scores

    def loss(self, batch: dict) -> dict:
        cfg = self.cfg
        normal, abnormal = batch["normal"], batch["abnormal"]  # [B, C, S, D] each
        scores, emb = self.forward(torch.cat([normal, abnormal]))
        b, s = len(normal), scores.shape[1]
        k = bag_k(cfg.top_k, s)
        s_normal, s_abnormal = scores[:b], scores[b:]
        smooth = ((s_abnormal[:, 1:] - s_abnormal[:, :-1]) ** 2).sum(-1).mean()
        sparse = s_abnormal.sum(-1).mean()
        total = cfg.smoothness_weight * smooth + cfg.sparsity_weight * sparse
        out = {}
        guided = None  # [B, S] abnormal-cluster posterior of the abnormal bags' segments, once clustering is on
        if cfg.use_clustering and (self.step >= cfg.cluster_warmup_steps or not self.training):
            flat = emb.reshape(-1, emb.shape[-1])  # [2B S, E]
            from_normal = torch.arange(2 * b, device=flat.device).repeat_interleave(s) < b  # [2B S]
            mem_n, mem_a = self.memory.get("normal"), self.memory.get("abnormal")
            pool = torch.cat([flat.detach(), mem_n, mem_a])
            pool_normal = torch.cat([from_normal, torch.zeros(len(mem_n) + len(mem_a), dtype=torch.bool,
                                                              device=flat.device)])
            # initial centres: normal-video mean; abnormal = mean of the abnormal bags' top-k scored segments
            # (the MIL head's most confident anomalies), blended with the memory's abnormal mean
            top = s_abnormal.detach().topk(min(k, s), dim=-1).indices  # [B, k]
            seeds = emb[b:].detach().gather(1, top[..., None].expand(-1, -1, emb.shape[-1])).reshape(-1, emb.shape[-1])
            c_abnormal = torch.cat([seeds, mem_a]).mean(0)
            c_normal = torch.cat([flat.detach()[from_normal], mem_n]).mean(0)
            init = (c_normal, c_abnormal) if cfg.cluster_init == "topk" else None
            forced = torch.zeros(len(pool), dtype=torch.bool, device=flat.device)
            if cfg.anchor_top_abnormal > 0:  # MIL prior: each abnormal bag holds an anomaly, its top scored segments
                rows = torch.arange(b, 2 * b, device=flat.device)[:, None] * s + top[:, : cfg.anchor_top_abnormal]
                forced[rows.reshape(-1)] = True
            assign = two_means(pool, pool_normal, cfg.kmeans_iters, cfg.anchor_normal, init, forced)[: len(flat)]
            cluster, centres = batch_clustering_loss(flat, assign, mem_n, mem_a, cfg.cluster_margin)
            total = total + cfg.cluster_weight * cluster
            # clustering guidance: abnormal-video segments' soft assignment to the abnormal centre is their target
            with torch.no_grad():
                posterior = cluster_posterior(emb[b:].reshape(-1, emb.shape[-1]), centres, cfg.guide_temperature)
                target = posterior if cfg.guide_targets == "soft" else assign[b * s:].float()  # [B S]
                guided = posterior.view(b, s)
            guide = F.binary_cross_entropy(s_abnormal.reshape(-1).clamp(1e-6, 1 - 1e-6), target)
            total = total + cfg.guide_weight * guide
            out["guide"] = guide.detach()
            if self.training:  # this batch's clustering result joins the cross-batch memory
                self.memory.push(flat.detach(), assign)
                self.cluster_branch.centres.copy_(centres.detach())  # for test-time guided scoring
            out["cluster"] = cluster.detach()
            out["abnormal_cluster_share"] = assign[b * s:].float().mean()
        if guided is not None and cfg.guide_selection > 0:
            # clustering-guided MIL: the abnormal bag's top-k segments are ranked by a blend of the head's score and
            # the cross-batch cluster posterior, so incoherent high-score segments lose their place to the cluster's
            bag = torch.cat([topk_mean(s_normal, k), guided_topk_mean(s_abnormal, guided, k, cfg.guide_selection)])
            target = torch.cat([torch.zeros(b), torch.ones(b)]).to(bag)
            mil = F.binary_cross_entropy(bag.clamp(1e-6, 1 - 1e-6), target)
        else:
            mil = mil_loss(s_normal, s_abnormal, k)
        total = total + mil
        out["mil"] = mil.detach()
        if self.training:
            self.step += 1
        return {"loss": total, **out}
