"""STDD: Spatiotemporal Dynamic Duo for zero-shot action recognition (Yu et al., AAAI 2025, arXiv 2412.09895).

Implemented (section numbers of specs/clip_action_recognition.md, which records the paper and released code):

* §3.1 Space-time Cross Attention in every ViT block, no new parameters (:mod:`mmreason.methods.stdd.stca`).
* §3.2 knowledge-graph prompt features: templates x (class name + each ASKG continuation), encoded by the frozen
  CLIP text tower, each template's block padded by cycling (released ``text2feature``) and stored as a fixed
  classifier ``[K, P, E]`` (:func:`class_prompt_features`).
* §3.3 frame-level to prompt-level alignment
  ``logit_{b,k} = 1/2 [mean_t max_n s_{btkn} + mean_n max_t s_{btkn}]`` (:func:`frame_prompt_logits`) with
  cross-entropy, plus FROSTER-style frozen-CLIP feature distillation through the residual projector
  ``f + 0.1 MLP(f)`` on the L2-normalised frame feature: ``L = L_CE + 2.0 (1 - mean cos)``
  (``model.distill_mode``: ``paper`` trains through the term, ``released`` computes it under ``no_grad`` as the
  released ``TemporalClipVideo.forward`` does, so it has no gradient).
* the released 2-D classifier (Open-VCLIP's, no text augmentation): per-frame logits against the
  template-averaged class feature, averaged over frames (:func:`mean_pool_logits`).
* §3.4 AdamW with warm-up and cosine decay (config defaults), and weight averaging of epoch checkpoints
  (:func:`average_run`, the engine's Gaussian / uniform / Beta / EMA rules).

Reconstruction choices (config fields): the test-time mask shuffle is seeded (``model.mask_seed``);
``temporal_scales`` entry 0 means no shift; the vision tower and the log logit scale are trained (as released),
the text tower is frozen. Released checkpoints convert with :mod:`mmreason.methods.stdd.released`.
"""
from __future__ import annotations

import copy
import logging
import math
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


def mean_pool_logits(frames: torch.Tensor, prompts: torch.Tensor, scale) -> torch.Tensor:
    """The released 2-D classifier (Open-VCLIP's ``achieve_csf_matrix`` + ``pred.reshape(b, t, -1).mean(1)``):
    frames ``[B, T, E]``, prompts ``[K, P, E]`` -> ``[B, K] = scale * mean_t(normalize(f_t) @ C^T)`` with the class
    feature ``C_k = normalize(mean_p normalize(g_kp))``. The frame mean is not re-normalised: per-frame logits
    are averaged."""
    classes = F.normalize(F.normalize(prompts, dim=-1).mean(dim=1), dim=-1)  # [K, E]
    return scale * F.normalize(frames, dim=-1).mean(dim=1) @ classes.t()  # mean_t of [B, T, K] = [B, K]


class ResidualProjector(nn.Module):
    """``f + alpha * W2 gelu(W1 f)``, bias-free, ``W1`` Kaiming-initialised and ``W2`` zero-initialised (FROSTER).

    ``seed`` draws the initial weights from a forked RNG, so a rebuilt model (and the checkpoint converter, which
    fills in the projector a released averaged checkpoint does not hold) gets the same initial projector."""

    def __init__(self, dim: int, alpha: float = 0.1, seed: int | None = None):
        super().__init__()
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.fc1, self.fc2 = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
            nn.init.kaiming_normal_(self.fc1.weight)
            nn.init.zeros_(self.fc2.weight)
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.fc2(F.gelu(self.fc1(x)))


# ------------------------------------------------------------------------------------------------ prompts

def match_graph_records(class_names: list[str], graph_records: list[dict] | None, source: str) -> list[dict]:
    """The action-graph record of each class, ``[{**record, "class": name}]`` in ``class_names`` order.

    Classes match records by :func:`~mmreason.assets.classes.class_key` of the record's ``class`` / ``label`` /
    ``id``. The released ``text2feature`` pairs the i-th class with the i-th entry of the xprompt file instead
    (so HMDB51's "fall floor" takes the entry "falling to the floor"): when some names do not match, the file has
    exactly one entry per class and every class that does match sits at its own position, the pairing is by
    position (when at least half the classes match by name, so an unrelated file of the same length is not
    paired). Otherwise one ``ValueError`` names every class without a record (``source`` says which asset).
    """
    from mmreason.assets.classes import class_key
    from mmreason.assets.io import require_classes

    if not graph_records:
        raise ValueError("prompt_type=graph needs action-graph records of the classes: set data.graph_dataset / "
                         "data.test_graph_dataset (curated assets) or model.askg_file + model.xprompt_file")
    index: dict[str, dict] = {}
    for r in graph_records:
        for key in (r.get("class"), r.get("label"), r.get("id")):
            if key:
                index.setdefault(class_key(key), r)
    found = [index.get(class_key(c)) for c in class_names]
    matched = sum(r is not None for r in found)
    by_position = (len(graph_records) == len(class_names) and 2 * matched >= len(class_names)
                   and all(r is None or r is graph_records[i] for i, r in enumerate(found)))
    if by_position:
        found = list(graph_records)
    require_classes(class_names, {c for c, r in zip(class_names, found) if r is not None}, source, "action-graph")
    return [{**r, "class": c} for c, r in zip(class_names, found)]


def class_prompt_features(encode, class_names: list[str], *, prompt_type: str, templates: list[str],
                          num_templates: int, graph_records: list[dict] | None = None,
                          source: str = "action graph") -> torch.Tensor:
    """``[K, P, E]`` prompt features of ``class_names`` from ``encode(list[str]) -> [n, E]`` (a frozen text
    tower behind a :class:`~mmreason.clip.TextFeatureCache`).

    ``prompt_type="graph"``: per class and template, :func:`~mmreason.assets.action_graph.build_prompt_sets`
    over its ASKG record (:func:`match_graph_records`): ``tpl(c)`` and ``tpl(c + ", " + x)`` per continuation.
    As in the released ``text2feature``, each template's block is padded to the longest block of that template
    over the classes by cycling, and the blocks are concatenated: ``P = sum over templates of the longest
    block``. ``"templates"``: the class name in each template (``P = num_templates``).
    """
    from mmreason.assets.action_graph import build_prompt_sets, pad_cycle

    if not class_names:
        raise ValueError("no class names to build prompt features for")
    if prompt_type == "graph":
        records = match_graph_records(class_names, graph_records, source)
    else:
        records = [{"class": c} for c in class_names]
    blocks = [pad_cycle(build_prompt_sets(records, [tpl], 1)) for tpl in list(templates)[:num_templates]]
    sets = [[p for block in blocks for p in block[k]] for k in range(len(records))]  # K lists of P prompts
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
    test classes' features to :meth:`logits`. Trainable: the whole vision tower (``vision.*``) and, with
    ``model.learn_logit_scale``, the log logit scale ``logit_scale`` (CLIP's parameter, trained in the released
    code); the text tower is frozen and used only to encode class prompts.
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
        initial_scale = float(cfg.logit_scale or towers.logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(initial_scale)), requires_grad=cfg.learn_logit_scale)
        if train_prompts.shape[-1] != vision.output_dim:
            raise ValueError(f"prompt features have dimension {train_prompts.shape[-1]} but the CLIP embedding has "
                             f"{vision.output_dim} (synthetic data: set data.synthetic_embed_dim)")
        self.register_buffer("train_prompts", F.normalize(train_prompts.float(), dim=-1), persistent=False)

    @property
    def scale(self) -> torch.Tensor:
        """The multiplier of the cosine similarities, ``exp(logit_scale)``."""
        return self.logit_scale.exp()

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self._cache.encode(prompts).to(self.train_prompts.device)

    def logits(self, frames: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, K]``; ``[B, V, T, ...]``: the V views' logits averaged
        (``view_fusion=logits``, the released protocol) or the log of the averaged softmax scores."""
        if frames.ndim == 6:
            batch, views = frames.shape[:2]
            out = self.logits(frames.flatten(0, 1), prompts).view(batch, views, -1)  # [B, V, K]
            if self.cfg.view_fusion == "logits":
                return out.mean(1)
            return out.softmax(-1).mean(1).log()
        return self.align(self.vision(frames), prompts)

    def align(self, frame_feats: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        fn = frame_prompt_logits if self.cfg.alignment == "frame_prompt" else mean_pool_logits
        return fn(frame_feats, prompts.to(frame_feats.dtype), self.scale.to(frame_feats.dtype))

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
            self.projector = ResidualProjector(self.vision.output_dim, cfg.projector_alpha, seed=cfg.init_seed)
            if cfg.distill_mode == "released":
                freeze(self.projector)  # released: used only under no_grad, so it keeps its initial weights
        else:
            self.raw_vision, self.projector = None, None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.raw_vision is not None:
            self.raw_vision.eval()
        return self

    def distillation(self, frames: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """``1 - mean_{b,t} cos(P(normalize(f_bt)), r_bt)`` for the student's frame features ``feats`` ``[B, T, E]``
        and the frozen teacher's ``r = raw_vision(frames)``. ``distill_mode=released`` evaluates it under
        ``no_grad`` (the released ``TemporalClipVideo.forward``), so the returned term has no gradient."""
        with torch.no_grad():
            target = self.raw_vision(frames)  # [B, T, E]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.distill_mode == "paper"):
            student = self.projector(F.normalize(feats, dim=-1))  # the projector sees normalised features
            return 1.0 - F.cosine_similarity(student, target, dim=-1).mean()

    def loss(self, batch: dict) -> dict:
        frames, labels = batch["frames"], batch["labels"]
        check_trainable(self)
        feats = self.vision(frames)  # [B, T, E]
        ce = F.cross_entropy(self.align(feats, self.train_prompts), labels)
        out = {"ce": ce.detach()}
        total = ce
        if self.raw_vision is not None:
            distill = self.distillation(frames, feats)
            total = total + self.cfg.distill_weight * distill
            out["distill"] = distill.detach()
        out["loss"] = total
        return out


# ------------------------------------------------------------------------------------------------ build / eval

def build_towers(mcfg):
    from mmreason.clip import build_clip

    return build_clip(mcfg.clip_model, pretrained=mcfg.pretrained, checkpoint=mcfg.checkpoint,
                      checkpoint_activation=mcfg.checkpoint_activation, init_seed=mcfg.init_seed)


def _graph_records(cfg, test: bool) -> tuple[list[dict] | None, str]:
    """The action-graph records of the training (``test=False``) or test classes, and where they come from."""
    m, d = cfg.model, cfg.data
    askg, xprompt, dataset = ((m.test_askg_file, m.test_xprompt_file, d.test_graph_dataset) if test
                              else (m.askg_file, m.xprompt_file, d.graph_dataset))
    source = askg or (f"knowledge/{dataset}/action_graph.jsonl" if dataset else "action graph")
    return load_graph_records(askg, xprompt, dataset), source


def prompt_features(encode, cfg, class_names: list[str], test: bool) -> torch.Tensor:
    """``[K, P, E]`` prompt features of training (``test=False``) or test classes: the config's prompt type,
    templates (``model.test_templates`` for test classes when given) and action graph."""
    m = cfg.model
    records, source = _graph_records(cfg, test) if m.prompt_type == "graph" else (None, "")
    templates = (m.test_templates or m.templates) if test else m.templates
    return class_prompt_features(encode, class_names, prompt_type=m.prompt_type, templates=templates,
                                 num_templates=m.num_templates, graph_records=records,
                                 source=f"{source} ({'test' if test else 'training'} classes)")


def split_prompt_features(model: ZeroShotVideoCLIP, cfg, split, test: bool) -> torch.Tensor:
    """Prompt features ``[K, P, E]`` of a :class:`~mmreason.data.zeroshot.ZeroShotSplit`'s classes."""
    if split.prompt_features is not None:  # synthetic: the data carries the text features
        return split.prompt_features.to(model.train_prompts.device)
    return prompt_features(model.encode_prompts, cfg, split.class_names, test)


def check_test_graph(cfg) -> None:
    """Fail now, naming the classes, when the action graph lacks a validation or test class, so that a run does
    not stop at its first evaluation. Only class-name files are read, not the video lists."""
    from mmreason.data.zeroshot import read_class_names

    d = cfg.data
    if cfg.model.prompt_type != "graph" or d.dataset == "synthetic":
        return
    files = list(dict.fromkeys([*([d.val_classes] if d.val_list else []), *(d.test_classes if d.test_lists else [])]))
    if not files:
        return
    records, source = _graph_records(cfg, test=True)
    for f in files:
        match_graph_records(read_class_names(f), records, f"{source} (classes of {f})")


def train_prompt_features(cfg, towers) -> torch.Tensor:
    """``[K, P, E]`` features of the training classes; ``[0, 1, E]`` for an evaluation-only config (real data
    without ``data.train_list``), whose model can be evaluated and loaded but not trained. Before any text is
    encoded, the test classes' action graph is checked (:func:`check_test_graph`)."""
    from mmreason.clip import TextFeatureCache
    from mmreason.data.zeroshot import load_splits

    check_test_graph(cfg)
    if cfg.data.dataset != "synthetic" and not cfg.data.train_list:
        return torch.zeros(0, 1, towers.vision.output_dim)
    (split,) = load_splits(cfg.data, "train")
    if split.prompt_features is not None:
        return split.prompt_features
    return prompt_features(TextFeatureCache(towers.text, towers.tokenize).encode, cfg, split.class_names, test=False)


@torch.no_grad()
def evaluate_zero_shot(model: ZeroShotVideoCLIP, cfg, split: str = "test", accelerator=None,
                       report: dict | None = None) -> dict:
    """Top-1 (and top-5) per test split on its own class set, plus the protocol summary (mean/std or HM), in %.
    ``report`` (``mmreason eval --output``): per-class top-1 and each video's top-5 class names."""
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
        if report is not None:
            s, y = torch.cat(scores), torch.cat(labels)  # [N, C], [N]
            top = s.topk(min(5, s.shape[1]), dim=1).indices  # [N, <=5]
            names = zs.class_names
            report.setdefault("per_class", {}).update({
                f"{zs.name}/{names[c]}": {"top1": 100.0 * float((top[y == c, 0] == c).float().mean()),
                                          "samples": int((y == c).sum())} for c in y.unique().tolist()})
            report.setdefault("predictions", []).extend(
                {"split": zs.name, "label": names[int(t)], "top5": [names[int(i)] for i in row]}
                for t, row in zip(y, top))
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
