"""CORM's dataset, model and evaluation hooks for the engine/API (see mmreason/methods/base.py)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmreason.data.multilabel import (MultiLabelTAL, SyntheticCooccurrenceTAL, cooccurrence_matrix, pad_collate,
                                      read_class_list, readable_class_name)
from mmreason.metrics.localization import (APMeter, conditional_matrices, conditional_summary, mean_nonzero,
                                           sampled_25)
from mmreason.utils.io import atomic_write_bytes
from mmreason.methods.corm.config import CORMExperiment
from mmreason.methods.corm.model import CORM, MultiLabelTALModel, build_backbone

SPLITS = ("train", "val", "test")


def class_names(cfg: CORMExperiment) -> list[str]:
    """Class names in id order: the dataset's class list file, or generated names."""
    data = cfg.data
    if data.dataset == "synthetic" and not data.class_list:
        return SyntheticCooccurrenceTAL(0, num_classes=data.num_classes, seed=data.seed).class_names
    if not data.class_list:
        if data.num_classes <= 0:
            raise ValueError("data.num_classes=0 means 'count the class list', but data.class_list is empty")
        return [f"class {c}" for c in range(data.num_classes)]
    names = read_class_list(data.class_list)
    if data.num_classes > 0 and len(names) != data.num_classes:
        raise ValueError(f"{data.class_list}: {len(names)} classes listed but data.num_classes={data.num_classes}")
    return names


def num_classes(cfg: CORMExperiment) -> int:
    """``data.num_classes``, or the length of the class list when it is 0."""
    return cfg.data.num_classes if cfg.data.num_classes > 0 else len(class_names(cfg))


def build_dataset(cfg: CORMExperiment, split: str):
    """The ``split`` (train/val/test) dataset; val and test both read ``data.eval_subset`` on real data."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} must be one of {SPLITS}")
    data = cfg.data
    if data.dataset == "synthetic":
        train = split == "train"
        return SyntheticCooccurrenceTAL(
            data.synthetic_train_videos if train else data.synthetic_test_videos,
            num_classes=data.num_classes, feature_dim=data.feature_dim,
            anchor_strength=data.synthetic_anchor_strength, dependent_strength=data.synthetic_dependent_strength,
            noise=data.synthetic_noise, seed=data.seed,
            video_offset=0 if train else 1_000_000 + (0 if split == "val" else 1_000_000))
    for name in ("annotation_file", "features_root"):
        if not getattr(data, name):
            raise ValueError(f"data.{name} must be set for dataset {data.dataset!r}")
    return MultiLabelTAL(
        data.annotation_file, data.features_root, data.train_subset if split == "train" else data.eval_subset,
        num_classes(cfg), class_index_base=data.class_index_base, inclusive_bounds=data.inclusive_bounds,
        feature_fps=data.feature_fps, labels_root=data.labels_root,
        skip_videos_without_actions=data.skip_videos_without_actions,
        max_snippets=data.max_snippets if split == "train" else 0, missing_features=data.missing_features,
        class_names=class_names(cfg))


def label_embeddings(cfg: CORMExperiment, names: list[str], embedder: Any = None) -> torch.Tensor:
    """``[C, E]`` label embeddings from the configured source (see ``model.label_embeddings``); ``embedder``
    (an ``mmreason.text`` embedder) replaces the default packaged MiniLM for ``"minilm"``."""
    source = cfg.model.label_embeddings
    if source == "file":
        path = Path(cfg.model.label_embedding_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: label embedding file not found (model.label_embedding_file)")
        emb = np.load(path)
        if emb.ndim != 2 or emb.shape[0] != len(names):
            raise ValueError(f"{path}: label embeddings must be [{len(names)}, E], got {emb.shape}")
        return torch.from_numpy(np.asarray(emb, dtype=np.float32))
    if source == "random":
        gen = torch.Generator().manual_seed(1234)
        return torch.randn(len(names), cfg.model.label_embedding_dim, generator=gen)
    if embedder is None:
        from mmreason.text import TextEmbedder   # sentence-transformers is heavy: import only here

        embedder = TextEmbedder()
    return torch.from_numpy(np.asarray(embedder.embed([readable_class_name(n) for n in names]), dtype=np.float32))


def build_model(cfg: CORMExperiment) -> MultiLabelTALModel:
    torch.manual_seed(cfg.train.seed)
    m = cfg.model
    backbone = build_backbone(m, cfg.data.feature_dim)
    corm = None
    if m.use_corm:
        names = class_names(cfg)
        embeddings = label_embeddings(cfg, names) if m.semantic_graph != "none" else None
        statistics = None
        if m.use_statistics:   # P(c_j | c_i) counted on the training labels
            statistics = torch.from_numpy(cooccurrence_matrix(build_dataset(cfg, "train").all_labels()))
        corm = CORM(backbone.out_dim, len(names), m, embeddings, statistics)
    return MultiLabelTALModel(backbone, num_classes(cfg), corm, base_logits=m.base_logits,
                              heatmap_weight=m.heatmap_weight, heatmap_pairing=m.heatmap_pairing)


def predict_dataset(model: MultiLabelTALModel, dataset, batch_size: int = 1,
                    accelerator: Any = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-video sigmoid scores and labels ``[T_v, C]`` (this process's share when an accelerator is given,
    gathered to every process)."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    indices = list(range(rank, len(dataset), world))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores, labels = [], []
    for start in range(0, len(indices), batch_size):
        batch = pad_collate([dataset[i] for i in indices[start:start + batch_size]])
        probs = model.predict(batch["features"].to(device), batch["mask"].to(device)).float().cpu()
        for b in range(probs.shape[0]):
            length = int(batch["mask"][b].sum())
            scores.append(probs[b, :length].numpy())
            labels.append(batch["labels"][b, :length].numpy())
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        scores, labels = gather_object(scores), gather_object(labels)
    return scores, labels


def evaluate(model: MultiLabelTALModel, cfg: CORMExperiment, split: str = "test", accelerator: Any = None,
             report: dict | None = None) -> dict:
    """``mAP`` (per-frame, percent, non-zero-class mean by default), ``mAP_all_classes``, ``mAP_sampled25``
    (when ``eval.sampled_25``), and MLAD's action-conditional ``P_AC@t``, ``R_AC@t``, ``F1_AC@t``,
    ``mAP_AC@t`` for each offset t of ``eval.conditional_offsets``; the per-pair matrices go to
    ``eval.matrices_file`` when it is set."""
    dataset = build_dataset(cfg, split)
    scores, labels = predict_dataset(model, dataset, cfg.eval.batch_size, accelerator)
    meter, sampled = APMeter(), APMeter()
    for s, y in zip(scores, labels):
        meter.add(s, y)
        picked = sampled_25(s, y) if cfg.eval.sampled_25 else None
        if picked is not None:
            sampled.add(*picked)
    ap = meter.value()
    out = {"mAP": mean_nonzero(ap, cfg.eval.nonzero_mean), "mAP_all_classes": mean_nonzero(ap, False)}
    if cfg.eval.sampled_25:
        # MS-TCT leaves videos of <= 25 snippets out; 0 when every video is that short
        out["mAP_sampled25"] = mean_nonzero(sampled.value(), cfg.eval.nonzero_mean) if sampled.size else 0.0
    matrices = {}
    for t in cfg.eval.conditional_offsets:
        m = conditional_matrices(scores, labels, t=t, threshold=cfg.eval.threshold)
        cond = conditional_summary(m)
        out.update({f"P_AC@{t}": cond["precision"], f"R_AC@{t}": cond["recall"], f"F1_AC@{t}": cond["f1"],
                    f"mAP_AC@{t}": cond["mAP"]})
        matrices.update({f"{k}@{t}": v for k, v in m.items()})
    if cfg.eval.matrices_file and matrices and (accelerator is None or accelerator.is_main_process):
        buffer = io.BytesIO()
        np.savez(buffer, class_names=np.array(class_names(cfg)), **matrices)
        atomic_write_bytes(cfg.eval.matrices_file, buffer.getvalue())
    if report is not None:  # `mmreason eval --output`: per-class AP and each video's frame scores [T_v, C]
        names, world = class_names(cfg), accelerator.num_processes if accelerator is not None else 1
        order = [i for r in range(world) for i in range(r, len(dataset), world)]  # gather order of the shards
        ids = getattr(dataset, "videos", None)
        positives = sum(y.sum(0) for y in labels)  # [C] labelled frames per class
        report["per_class"] = {names[c]: {"AP": 100.0 * float(ap[c]), "positive_frames": int(positives[c])}
                               for c in range(len(names))}
        report["predictions"] = [{"video": ids[i] if ids is not None else i, "scores": s}
                                 for i, s in zip(order, scores)]
    return out
