"""STDD: Spatiotemporal Dynamic Duo for zero-shot action recognition (Yu et al., AAAI 2025, arXiv 2412.09895).

Implemented (section numbers of specs/clip_action_recognition.md, which records the paper and released code):

* §3.1 Space-time Cross Attention in every ViT block, no new parameters (:mod:`mmreason.methods.stdd.stca`).
* §3.2 knowledge-graph prompt features: templates x (class name + each ASKG continuation), encoded by the frozen
  CLIP text tower, padded by cycling and stored as a fixed classifier ``[K, P, E]`` (:func:`class_prompt_features`).
* §3.3 frame-level to prompt-level alignment
  ``logit_{b,k} = 1/2 [mean_t max_n s_{btkn} + mean_n max_t s_{btkn}]`` (:func:`frame_prompt_logits`) with
  cross-entropy, plus FROSTER-style frozen-CLIP feature distillation through the residual projector
  ``f + 0.1 MLP(f)``: ``L = L_CE + 2.0 (1 - mean cos)``.
* §3.4 AdamW with warm-up and cosine decay (config defaults), and weight averaging of epoch checkpoints
  (:func:`average_run`, the engine's Gaussian / uniform / Beta / EMA rules).

Reconstruction choices (config fields): the logit scale is CLIP's and fixed (``model.logit_scale``); the
test-time mask shuffle is seeded (``model.mask_seed``); ``temporal_scales`` entry 0 means no shift; test views
are combined by averaging softmax scores; the vision tower is fully fine-tuned, the text tower frozen.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmreason.methods.stdd.stca import STCrossAttentionTower

log = logging.getLogger("mmreason.stdd")


# ------------------------------------------------------------------------------------------------ alignment

def frame_prompt_logits(frames: torch.Tensor, prompts: torch.Tensor, scale: float) -> torch.Tensor:
    """STDD's alignment: frames ``[B, T, E]``, prompts ``[K, P, E]`` -> ``[B, K]``
    ``= 1/2 [mean_t max_p s + mean_p max_t s]`` with ``s = scale * cos(f_bt, g_kp)``."""
    f, g = F.normalize(frames, dim=-1), F.normalize(prompts, dim=-1)
    s = scale * torch.einsum("bte,kpe->bktp", f, g)  # [B, K, T, P]
    return 0.5 * (s.amax(dim=3).mean(dim=2) + s.amax(dim=2).mean(dim=2))


def mean_pool_logits(frames: torch.Tensor, prompts: torch.Tensor, scale: float) -> torch.Tensor:
    """Open-VCLIP's classifier: cosine of the frame-averaged video feature and the prompt-averaged class feature."""
    video = F.normalize(F.normalize(frames, dim=-1).mean(dim=1), dim=-1)  # [B, E]
    classes = F.normalize(F.normalize(prompts, dim=-1).mean(dim=1), dim=-1)  # [K, E]
    return scale * video @ classes.t()


class ResidualProjector(nn.Module):
    """``f + alpha * W2 gelu(W1 f)``, bias-free, ``W1`` Kaiming-initialised and ``W2`` zero-initialised (FROSTER)."""

    def __init__(self, dim: int, alpha: float = 0.1):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        nn.init.kaiming_normal_(self.fc1.weight)
        nn.init.zeros_(self.fc2.weight)
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.fc2(F.gelu(self.fc1(x)))


# ------------------------------------------------------------------------------------------------ prompts

def class_prompt_features(encode, class_names: list[str], *, prompt_type: str, templates: list[str],
                          num_templates: int, graph_records: list[dict] | None = None) -> torch.Tensor:
    """``[K, P, E]`` prompt features of ``class_names`` from ``encode(list[str]) -> [n, E]`` (a frozen text
    tower behind a :class:`~mmreason.clip.TextFeatureCache`).

    ``prompt_type="graph"``: per class, :func:`~mmreason.assets.action_graph.build_prompt_sets` over its ASKG
    record (matched by class name or label), padded to the longest set by cycling; ``"templates"``: the class
    name in each template.
    """
    from mmreason.assets.action_graph import build_prompt_sets, pad_cycle

    if not class_names:
        raise ValueError("no class names to build prompt features for")
    if prompt_type == "graph":
        if not graph_records:
            raise ValueError("prompt_type=graph needs action-graph records of the classes: set data.graph_dataset / "
                             "data.test_graph_dataset (curated assets) or model.askg_file + model.xprompt_file")
        by_name: dict[str, dict] = {}
        for r in graph_records:
            for key in (r.get("class"), r.get("label"), r.get("id")):
                if key:
                    by_name.setdefault(str(key).lower(), r)
        missing = [c for c in class_names if c.lower() not in by_name]
        if missing:
            raise ValueError(f"no action-graph record for {len(missing)} of {len(class_names)} classes, e.g. "
                             f"{missing[:5]}; import/generate the graph of this dataset or use prompt_type=templates")
        records = [{**by_name[c.lower()], "class": c} for c in class_names]
    else:
        records = [{"class": c} for c in class_names]
    sets = pad_cycle(build_prompt_sets(records, templates, num_templates))  # K lists of P prompts
    flat = [p for s in sets for p in s]
    feats = encode(flat).float()  # [K * P, E]
    return F.normalize(feats.view(len(class_names), len(sets[0]), -1), dim=-1)


def load_graph_records(askg_file: str, xprompt_file: str, asset_dataset: str) -> list[dict] | None:
    """ASKG records from official STDD files, else from the curated asset ``asset_dataset``, else None."""
    if askg_file:
        from mmreason.assets.importers import read_stdd_askg

        if not xprompt_file:
            raise ValueError(f"askg file {askg_file} given without its xprompt file (model.xprompt_file)")
        return read_stdd_askg(askg_file, xprompt_file)
    if asset_dataset:
        from mmreason.assets.io import load_assets

        return load_assets("action_graph", asset_dataset)
    return None


# ------------------------------------------------------------------------------------------------ model

def check_trainable(model: "ZeroShotVideoCLIP") -> None:
    if len(model.train_prompts) == 0:
        raise ValueError("this config has no training classes (data.train_list is empty): it can evaluate a "
                         "checkpoint but not train; give data.train_list and data.train_classes")


class ZeroShotVideoCLIP(nn.Module):
    """A CLIP video learner scored against a fixed text classifier (shared by STDD and Open-MeDe).

    ``train_prompts`` ``[K, P, E]`` (buffer) are the training classes' prompt features; evaluation passes the
    test classes' features to :meth:`logits`. Trainable: the whole vision tower (``vision.*``); the text tower
    is frozen and used only to encode class prompts.
    """

    def __init__(self, cfg, train_prompts: torch.Tensor, towers):
        super().__init__()
        from mmreason.clip import TextFeatureCache, freeze

        self.cfg = cfg
        vision = towers.vision
        if cfg.temporal_modeling == "stcross":
            vision = STCrossAttentionTower(vision, mask_rate=cfg.mask_rate, window=cfg.mask_window,
                                           temporal_shuffle=cfg.temporal_shuffle,
                                           test_temporal_shuffle=cfg.test_temporal_shuffle,
                                           temporal_scales=cfg.temporal_scales, channel_fold=cfg.channel_fold,
                                           mask_seed=cfg.mask_seed)
        self.vision = vision
        self.text = freeze(towers.text)
        self._cache = TextFeatureCache(self.text, towers.tokenize)
        self.scale = float(cfg.logit_scale or towers.logit_scale)
        if train_prompts.shape[-1] != vision.output_dim:
            raise ValueError(f"prompt features have dimension {train_prompts.shape[-1]} but the CLIP embedding has "
                             f"{vision.output_dim} (synthetic data: set data.synthetic_embed_dim)")
        self.register_buffer("train_prompts", F.normalize(train_prompts.float(), dim=-1), persistent=False)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self._cache.encode(prompts).to(self.train_prompts.device)

    def logits(self, frames: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, K]`` (``[B, V, T, ...]``: softmax scores averaged over the V views)."""
        if frames.ndim == 6:
            batch, views = frames.shape[:2]
            out = self.logits(frames.flatten(0, 1), prompts).view(batch, views, -1)
            return out.softmax(-1).mean(1).log()  # log of the view-averaged probabilities
        return self.align(self.vision(frames), prompts)

    def align(self, frame_feats: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        fn = frame_prompt_logits if self.cfg.alignment == "frame_prompt" else mean_pool_logits
        return fn(frame_feats, prompts.to(frame_feats.dtype), self.scale)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.logits(frames, self.train_prompts)


class STDDModel(ZeroShotVideoCLIP):
    """STDD: Space-time Cross Attention tower + knowledge-graph prompts + frame-prompt alignment + distillation."""

    def __init__(self, cfg, train_prompts: torch.Tensor, towers):
        raw = copy.deepcopy(towers.vision) if cfg.distill_weight > 0 else None
        super().__init__(cfg, train_prompts, towers)
        if raw is not None:
            from mmreason.clip import freeze

            self.raw_vision = freeze(raw).eval()  # frozen plain CLIP: the distillation teacher
            self.projector = ResidualProjector(self.vision.output_dim, cfg.projector_alpha)
        else:
            self.raw_vision, self.projector = None, None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.raw_vision is not None:
            self.raw_vision.eval()
        return self

    def loss(self, batch: dict) -> dict:
        frames, labels = batch["frames"], batch["labels"]
        check_trainable(self)
        feats = self.vision(frames)  # [B, T, E]
        ce = F.cross_entropy(self.align(feats, self.train_prompts), labels)
        out = {"ce": ce.detach()}
        total = ce
        if self.raw_vision is not None:
            with torch.no_grad():
                target = self.raw_vision(frames)  # [B, T, E]
            distill = 1.0 - F.cosine_similarity(self.projector(feats), target, dim=-1).mean()
            total = total + self.cfg.distill_weight * distill
            out["distill"] = distill.detach()
        out["loss"] = total
        return out


# ------------------------------------------------------------------------------------------------ build / eval

def build_towers(mcfg):
    from mmreason.clip import build_clip

    return build_clip(mcfg.clip_model, pretrained=mcfg.pretrained, checkpoint=mcfg.checkpoint,
                      checkpoint_activation=mcfg.checkpoint_activation, init_seed=mcfg.init_seed)


def split_prompt_features(model: ZeroShotVideoCLIP, cfg, split, test: bool) -> torch.Tensor:
    """Prompt features ``[K, P, E]`` of a :class:`~mmreason.data.zeroshot.ZeroShotSplit`'s classes."""
    if split.prompt_features is not None:  # synthetic: the data carries the text features
        return split.prompt_features.to(model.train_prompts.device)
    m = cfg.model
    records = None
    if m.prompt_type == "graph":
        records = (load_graph_records(m.test_askg_file, m.test_xprompt_file, cfg.data.test_graph_dataset) if test
                   else load_graph_records(m.askg_file, m.xprompt_file, cfg.data.graph_dataset))
    return class_prompt_features(model.encode_prompts, split.class_names, prompt_type=m.prompt_type,
                                 templates=m.templates, num_templates=m.num_templates, graph_records=records)


def train_prompt_features(cfg, towers) -> torch.Tensor:
    """``[K, P, E]`` features of the training classes; ``[0, 1, E]`` for an evaluation-only config (real data
    without ``data.train_list``), whose model can be evaluated and loaded but not trained."""
    from mmreason.clip import TextFeatureCache
    from mmreason.data.zeroshot import load_splits

    if cfg.data.dataset != "synthetic" and not cfg.data.train_list:
        return torch.zeros(0, 1, towers.vision.output_dim)
    (split,) = load_splits(cfg.data, "train")
    if split.prompt_features is not None:
        return split.prompt_features
    m = cfg.model
    cache = TextFeatureCache(towers.text, towers.tokenize)
    records = (load_graph_records(m.askg_file, m.xprompt_file, cfg.data.graph_dataset)
               if m.prompt_type == "graph" else None)
    return class_prompt_features(cache.encode, split.class_names, prompt_type=m.prompt_type, templates=m.templates,
                                 num_templates=m.num_templates, graph_records=records)


@torch.no_grad()
def evaluate_zero_shot(model: ZeroShotVideoCLIP, cfg, split: str = "test", accelerator=None) -> dict:
    """Top-1 (and top-5) per test split on its own class set, plus the protocol summary (mean/std or HM), in %."""
    from mmreason.data.zeroshot import ZeroShotVideoDataset, collate_clips, load_splits, summarize
    from mmreason.engine import gather_for_eval, prepare_eval_loader
    from mmreason.metrics.classification import topk_accuracy

    core = accelerator.unwrap_model(model) if accelerator is not None else model
    was_training = core.training
    core.eval()
    device = core.train_prompts.device
    accuracies, extra = {}, {}
    for zs in load_splits(cfg.data, split):
        prompts = split_prompt_features(core, cfg, zs, test=True)
        loader = prepare_eval_loader(ZeroShotVideoDataset(zs, cfg.data, train=False), cfg.model.eval_batch_size,
                                     accelerator=accelerator, collate_fn=collate_clips)
        scores, labels = [], []
        for batch in loader:
            s = core.logits(batch["frames"].to(device), prompts)
            s, y = gather_for_eval(accelerator, (s.float(), batch["labels"].to(device)))
            scores.append(s.cpu())
            labels.append(y.cpu())
        acc = topk_accuracy(torch.cat(scores), torch.cat(labels), (1, 5))
        accuracies[zs.name] = 100.0 * acc[1]
        if len(zs.class_names) > 5:
            extra[f"top5_{zs.name}"] = 100.0 * acc[5]
    core.train(was_training)
    return {**summarize(accuracies, cfg.data.protocol), **extra}


def average_run(cfg, run_dir: str | Path, build_model, out_dir: str | Path | None = None) -> Path:
    """Average a run's per-epoch checkpoints (``cfg.average``) into ``<run_dir>/averaged`` (or ``out_dir``); the
    initial weights (a fresh ``build_model(cfg)``) count as epoch 0 when ``average.include_initial``.
    Evaluate with ``mmreason eval --config ... --checkpoint <run_dir>/averaged``."""
    from mmreason.engine import list_checkpoints, save_averaged

    avg = cfg.average
    paths = list_checkpoints(run_dir)
    if not paths:
        raise FileNotFoundError(f"{run_dir}: no checkpoints to average (train with train.save_every=0, one per epoch)")
    first = avg.first_epoch - 1 if avg.first_epoch > 0 else 0  # checkpoint k (0-based) holds epoch k + 1
    paths = paths[first:]
    initial = build_model(cfg) if avg.include_initial else None
    params = {"gaussian": {"mean": avg.mean, "std": avg.std}, "beta": {"alpha": avg.alpha, "beta": avg.beta},
              "ema": {"decay": avg.decay}}.get(avg.method, {})
    positions = None
    if avg.method == "gaussian":  # epochs: 0 for the initial weights, then first_epoch.. (1-based epochs)
        epochs = [first + 1 + i for i in range(len(paths))]
        positions = ([0] if initial is not None else []) + epochs
    out = Path(out_dir) if out_dir else Path(run_dir) / "averaged"
    log.info("averaging %d checkpoints of %s (%s) into %s", len(paths) + (initial is not None), run_dir, avg.method, out)
    return save_averaged(paths, out, avg.method, initial=initial, positions=positions, **params)
