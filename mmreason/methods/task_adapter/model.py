"""Task-Adapter (Cao et al., ACM MM 2024, arXiv 2408.00249): frozen CLIP ViT with task adapters, prototype matching.

Implemented (paper abstract; layer layout from the authors' released Task-Adapter++ code, ``module_adapter.py``,
which is the visual Task-Adapter; the Task-Adapter repository itself holds no code):

* frozen CLIP ViT; a zero-initialised learnable temporal embedding ``[1, T, D]`` after the positional embedding;
* adapted blocks in the last ``M`` layers (``adapter_layers``: 6 for SSv2, 2 otherwise). One adapted block on
  tokens ``x`` of shape ``[(B T), L, D]``, every attention being the block's *frozen* ``ln_1`` + attention:
  1. temporal: ``(b t) l d -> (b l) t d``; ``x += t_adapter(attn(x_t))``               (no inner skip)
  2. spatial:  ``x += s_adapter(attn(x))``                                               (inner skip)
  3. task:     ``(b t) l d -> (t l) b d`` (attention over the episode's videos);
               ``x += task_adapter(attn(x_b))``                                         (no inner skip)
  4. joint MLP: ``x += mlp(ln_2 x) + mlp_adapter(ln_2 x)``                               (no inner skip)
  adapters are bottlenecks ``D -> D/4 -> D`` (768 -> 192 -> 768); ``fc2`` is zero-initialised for the t/s/MLP
  adapters and not for the task adapter (``zero_init_task_adapter``);
* per-frame features = CLS -> ln_post -> proj, ``[B, T, E]``;
* prototype matching: class prototype = mean over shots and frames; query = mean over frames; score = cosine.

Reconstructions (named config fields, see ``config.py``): ``task_attention_scope`` (``separate`` = support and
query videos pass through the backbone in two calls, as the released code does, so task attention mixes support
with support and query with query; ``joint`` = one call over all videos of the episode); ``logit_scale`` (the
temperature of the cross-entropy over cosine scores: 64, Task-Adapter++'s value, since Task-Adapter's own loss
code is not released); ``adapter: lora`` (PEFT LoRA instead of task adapters, an alternative, not the paper's).
Released protocol: ``task_attention_chunks`` = the released ``nn.DataParallel`` over ``num_gpus`` GPUs, which
limits task attention to contiguous chunks of each call (:func:`chunked_call`); 1 (default) = all videos.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.clip.adapters import BottleneckAdapter, inject_lora
from mmreason.clip.towers import CLIPVisionTower, block_attention, block_forward


class TaskAdapterBlockAdapters(nn.Module):
    """The four adapters of one adapted block (names contain ``adapter``: the only trainable block params)."""

    def __init__(self, width: int, ratio: float, zero_init_task_adapter: bool):
        super().__init__()
        self.t_adapter = BottleneckAdapter(width, ratio, skip=False, zero_init=True)
        self.s_adapter = BottleneckAdapter(width, ratio, skip=True, zero_init=True)
        self.task_adapter = BottleneckAdapter(width, ratio, skip=False, zero_init=zero_init_task_adapter)
        self.mlp_adapter = BottleneckAdapter(width, ratio, skip=False, zero_init=True)


def task_adapted_block(block: nn.Module, adapters: TaskAdapterBlockAdapters, x: torch.Tensor,
                       num_videos: int, num_frames: int) -> torch.Tensor:
    """One Task-Adapter block on ``x`` ``[(B T), L, D]`` reusing the frozen ``block``'s ln_1/attention/MLP."""
    b, t = num_videos, num_frames
    length, width = x.shape[1:]
    # 1. temporal attention: each spatial position attends over the T frames of its video
    xt = x.view(b, t, length, width).transpose(1, 2).reshape(b * length, t, width)  # [(B L), T, D]
    at = adapters.t_adapter(block_attention(block, xt))
    x = x + at.view(b, length, t, width).transpose(1, 2).reshape(b * t, length, width)
    # 2. spatial attention within each frame (s_adapter adds its input back: attn + MLP(attn))
    x = x + adapters.s_adapter(block_attention(block, x))
    # 3. task attention: each (frame index, token position) attends over the B videos of the forward call
    xb = x.view(b, t * length, width).transpose(0, 1)  # [(T L), B, D]
    ab = adapters.task_adapter(block_attention(block, xb))
    x = x + ab.transpose(0, 1).reshape(b * t, length, width)
    # 4. frozen MLP plus a parallel MLP adapter on the same normalised input
    xn = block.ln_2(x)
    return x + block.ls_2(block.mlp(xn)) + adapters.mlp_adapter(xn)


class TaskAdapterVision(nn.Module):
    """Frozen CLIP vision tower whose last ``adapter_layers`` blocks are Task-Adapter blocks (or carry LoRA)."""

    def __init__(self, tower: CLIPVisionTower, adapter_layers: int, ratio: float = 0.25,
                 zero_init_task_adapter: bool = False, adapter: str = "task", lora: dict | None = None):
        super().__init__()
        if tower.temporal_embedding is None:
            raise ValueError("Task-Adapter needs a temporal embedding: build the tower with num_frames > 0")
        if not 0 <= adapter_layers <= tower.num_layers:
            raise ValueError(f"adapter_layers={adapter_layers} but the tower has {tower.num_layers} blocks")
        self.tower = tower
        for p in tower.parameters():
            p.requires_grad_(False)
        tower.temporal_embedding.requires_grad_(True)
        self.adapter_kind = adapter
        first = tower.num_layers - adapter_layers
        self.adapted = list(range(first, tower.num_layers))
        self.block_adapters = nn.ModuleDict()
        if adapter == "task":
            for i in self.adapted:
                self.block_adapters[str(i)] = TaskAdapterBlockAdapters(tower.width, ratio, zero_init_task_adapter)
        elif adapter == "lora":
            lora = dict(lora or {})
            inject_lora(tower.blocks, self.adapted, lora.pop("targets"), where="visual.blocks", **lora)
        else:
            raise ValueError(f"unknown adapter {adapter!r}; choose 'task' or 'lora'")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> per-frame features ``[B, T, E]``; task attention mixes these B videos."""
        b, t = frames.shape[:2]
        x = self.tower.embed(frames)  # [(B T), L, D]
        for i, block in enumerate(self.tower.blocks):
            if str(i) in self.block_adapters:
                x = task_adapted_block(block, self.block_adapters[str(i)], x, b, t)
            else:
                x = block_forward(block, x)
        return self.tower.head(x).view(b, t, -1)


def chunked_call(vision: nn.Module, videos: torch.Tensor, chunks: int) -> torch.Tensor:
    """``vision(videos)`` with task attention restricted to each of ``chunks`` contiguous groups of videos.

    Emulates the released code's ``nn.DataParallel`` over ``num_gpus`` GPUs: DataParallel scatters a call's
    batch with ``torch.chunk`` (groups of ``ceil(B / chunks)`` videos, possibly fewer groups than GPUs) and each
    replica's task attention sees only its own group. ``chunks <= 1``: one call, attention over all videos.
    """
    if chunks <= 1:
        return vision(videos)
    return torch.cat([vision(group) for group in videos.chunk(chunks)])  # [B, T, E]


def episode_features(vision: nn.Module, support: torch.Tensor, query: torch.Tensor, scope: str,
                     chunks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame features of an episode's support ``[NK, T, ...]`` and query ``[NQ, T, ...]`` videos.

    ``separate``: two backbone calls (task attention within support, within query; the released code);
    ``joint``: one call, task attention over all NK + NQ videos. ``chunks`` > 1 further splits each call into
    contiguous groups (:func:`chunked_call`, the released multi-GPU scope).
    """
    if scope == "separate":
        return chunked_call(vision, support, chunks), chunked_call(vision, query, chunks)
    if scope == "joint":
        feats = chunked_call(vision, torch.cat([support, query]), chunks)
        return feats[: support.shape[0]], feats[support.shape[0]:]
    raise ValueError(f"unknown task_attention_scope {scope!r}; choose 'separate' or 'joint'")


def prototype_cosine(support_feats: torch.Tensor, support_labels: torch.Tensor, query_feats: torch.Tensor,
                     n_way: int) -> torch.Tensor:
    """Cosine between frame-averaged queries ``[NQ, E]`` and class prototypes (mean over shots and frames).

    support_feats ``[NK, T, E]``, support_labels ``[NK]`` in ``0..N-1``, query_feats ``[NQ, T, E]`` -> ``[NQ, N]``.
    """
    onehot = F.one_hot(support_labels.long(), n_way).to(support_feats.dtype)  # [NK, N]
    protos = (onehot.t() @ support_feats.mean(dim=1)) / onehot.sum(0)[:, None]  # [N, E]
    return F.normalize(query_feats.mean(dim=1), dim=-1) @ F.normalize(protos, dim=-1).t()


def episode_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=-1) == labels).float().mean()


def build_towers_and_vision(m: Any) -> tuple[Any, TaskAdapterVision, dict]:
    """CLIP towers from the model config ``m``, the Task-Adapter visual tower on them, and the LoRA settings
    (Task-Adapter++ reuses all three for its text side)."""
    from mmreason.clip.loading import build_clip

    towers = build_clip(m.clip_model, pretrained=m.pretrained, checkpoint=m.checkpoint,
                        num_frames=m.num_frames, checkpoint_activation=m.checkpoint_activation,
                        image_size=m.image_size)
    lora = dict(targets=list(m.lora_targets), rank=m.lora_rank, alpha=m.lora_alpha, dropout=m.lora_dropout)
    visual = TaskAdapterVision(towers.vision, m.adapter_layers, m.adapter_ratio, m.zero_init_task_adapter,
                               m.adapter, lora)
    return towers, visual, lora


class TaskAdapterModel(nn.Module):
    """Few-shot action recognition: Task-Adapter visual tower + cosine prototype matching + cross-entropy."""

    def __init__(self, cfg: Any):
        super().__init__()
        m = cfg.model
        _, self.visual, _ = build_towers_and_vision(m)
        self.scope, self.chunks = m.task_attention_scope, m.task_attention_chunks
        self.logit_scale = m.logit_scale
        self.n_way = cfg.data.n_way

    def forward(self, episode: dict) -> torch.Tensor:
        """Episode dict (``support`` ``[NK, T, 3, H, W]``, ``support_labels``, ``query``) -> logits ``[NQ, N]``."""
        s, q = episode_features(self.visual, episode["support"], episode["query"], self.scope, self.chunks)
        return self.logit_scale * prototype_cosine(s, episode["support_labels"], q, self.n_way)

    def loss(self, episode: dict) -> dict[str, torch.Tensor]:
        logits = self(episode)
        labels = episode["query_labels"].long()
        return {"loss": F.cross_entropy(logits, labels), "acc": episode_accuracy(logits.detach(), labels)}


def _to_device(episode: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in episode.items()}


@torch.no_grad()
def evaluate_episodes(model: nn.Module, dataset: Any, accelerator: Any = None,
                      report: dict | None = None) -> dict[str, float]:
    """Accuracy (%) over the dataset's episodes: mean and 95% confidence half-width (1.96 std / sqrt(n)).

    With an accelerator the episodes are sharded across processes and the per-episode accuracies gathered
    (padding duplicates dropped), so every process returns the same numbers. ``report`` (``mmreason eval
    --output``) receives each class's query accuracy over all episodes (``per_class``) and each episode's classes,
    query labels and predictions (``predictions``).
    """
    from mmreason.data.fewshot import collate_episode
    from mmreason.engine import gather_for_eval, prepare_eval_loader
    from mmreason.metrics.classification import mean_and_ci95

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = prepare_eval_loader(dataset, 1, accelerator=accelerator, collate_fn=collate_episode)
    accs, records = [], []
    for episode in loader:
        episode = _to_device(episode, device)
        logits = model(episode)  # [N*Q, N]
        accs.append(gather_for_eval(accelerator, episode_accuracy(logits, episode["query_labels"]).reshape(1)))
        if report is not None:  # python records: accelerate gathers objects and drops padding duplicates too
            records += gather_for_eval(accelerator, [{"classes": list(episode["class_names"]),
                                                      "labels": episode["query_labels"].tolist(),
                                                      "predicted": logits.argmax(-1).tolist()}])
    model.train(was_training)
    if report is not None:
        hits: dict[str, list[int]] = {}
        for r in records:
            for label, pred in zip(r["labels"], r["predicted"]):
                hits.setdefault(r["classes"][label], []).append(int(label == pred))
        report["per_class"] = {c: {"accuracy": 100.0 * sum(h) / len(h), "queries": len(h)}
                               for c, h in sorted(hits.items())}
        report["predictions"] = records
    mean, ci = mean_and_ci95(torch.cat(accs).cpu().numpy() * 100.0)
    return {"accuracy": mean, "ci95": ci, "episodes": float(sum(len(a) for a in accs))}
