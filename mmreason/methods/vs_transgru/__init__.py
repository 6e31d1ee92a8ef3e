"""VS-TransGRU (arXiv 2307.03918): egocentric action anticipation with a Transformer encoder, a GRU decoder and
visual-semantic fusion, trained and scored with the RULSTM protocol. See ``model.py`` for what is the paper's
and what is reconstructed, ``README.md`` for how to run it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmreason.methods.base import MethodSpec
from mmreason.methods.vs_transgru.config import VSTransGRUConfig, VSTransGRUDataConfig, VSTransGRUExperiment
from mmreason.methods.vs_transgru.data import build_dataset, collate, load_vocab, recall_classes
from mmreason.methods.vs_transgru.model import IGNORE, VSTransGRU


def label_embeddings(cfg, vocab=None) -> torch.Tensor:
    """The frozen [C, E] action-label embedding matrix chosen by ``model.label_embedding_source``."""
    m = cfg.model
    vocab = vocab if vocab is not None else load_vocab(cfg)
    num_actions = vocab.num_actions
    if m.label_embedding_source == "random":
        g = torch.Generator().manual_seed(m.label_embedding_seed)
        emb = torch.randn(num_actions, m.label_embedding_dim, generator=g)
        return emb / emb.norm(dim=-1, keepdim=True)
    if m.label_embedding_source == "file":
        path = Path(m.label_embeddings)
        if not m.label_embeddings or not path.exists():
            raise FileNotFoundError(f"{m.label_embeddings or '(empty)'}: label-embedding file not found "
                                    "(model.label_embeddings must point to a [C, E] .npy or .pt file)")
        arr = torch.load(path, map_location="cpu") if path.suffix in (".pt", ".pth") else torch.from_numpy(np.load(path))
        arr = torch.as_tensor(arr, dtype=torch.float32)
        if arr.ndim != 2 or arr.shape[0] != num_actions:
            raise ValueError(f"{path}: label embeddings must be [C={num_actions}, E], got {tuple(arr.shape)}")
        return arr
    try:
        from mmreason.text import TextEmbedder
    except ImportError as e:
        raise ImportError("model.label_embedding_source=text_encoder needs mmreason.text.TextEmbedder "
                          f"({e}); use label_embedding_source=file or random instead") from e
    texts = [m.label_template.format(verb=vocab.verbs.text(v), noun=vocab.nouns.text(n))
             for v, n in (vocab.verb_noun(a) for a in range(num_actions))]
    embedder = TextEmbedder(m.text_model or None)
    return torch.as_tensor(np.asarray(embedder.embed(texts)), dtype=torch.float32)


def build_model(cfg: VSTransGRUExperiment) -> VSTransGRU:
    vocab = load_vocab(cfg)
    return VSTransGRU(cfg.model, cfg.data.modalities, cfg.data.feature_dims, label_embeddings(cfg, vocab),
                      cfg.data.observed_steps, cfg.data.anticipation_steps)


@torch.no_grad()
def predict_scores(model: VSTransGRU, dataset, batch_size: int = 256, accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """Fused action logits [N, S_ant, C] and targets [N, S_ant] over ``dataset`` (gathered across processes)."""
    from mmreason.engine import gather_for_eval, prepare_eval_loader

    loader = prepare_eval_loader(dataset, batch_size, accelerator=accelerator, collate_fn=collate)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores, targets = [], []
    for batch in loader:
        logits = model({m: f.to(device) for m, f in batch["features"].items()})["logits"].float()
        tgt = batch["targets"].to(device)
        logits, tgt = gather_for_eval(accelerator, (logits, tgt))
        scores.append(logits.cpu().numpy())
        targets.append(tgt.cpu().numpy())
    model.train(was_training)
    return np.concatenate(scores), np.concatenate(targets)


def evaluate(model: VSTransGRU, cfg: VSTransGRUExperiment, split: str = "val", accelerator=None,
             report: dict | None = None) -> dict[str, float]:
    """RULSTM-protocol scores: verb/noun/action top-1/top-5 and mean top-5 recall at every anticipation time.

    Headline numbers are copied to ``action_top5@1s`` and ``action_mt5r@1s`` (tau_a = 1 s, output index 4).
    """
    from mmreason.metrics.anticipation import rulstm_anticipation_metrics

    dataset = build_dataset(cfg, split)
    scores, targets = predict_scores(model, dataset, cfg.data.eval_batch_size, accelerator)
    vocab = load_vocab(cfg)
    if getattr(dataset, "base", None) is not None and cfg.data.score_discarded and dataset.base.discarded:
        # RULSTM (EK-100 validation) keeps rows without enough past frames, with all-zero scores
        extra = np.array([r.action for r in dataset.base.discarded])
        scores = np.concatenate([scores, np.zeros((len(extra),) + scores.shape[1:], scores.dtype)])
        targets = np.concatenate([targets, np.repeat(extra[:, None], targets.shape[1], 1)])
    if (targets == IGNORE).any():
        return {}  # an unlabelled (challenge) split: nothing to score
    times = tuple(cfg.data.time_step * (cfg.data.anticipation_steps - j) for j in range(cfg.data.anticipation_steps))
    metrics = rulstm_anticipation_metrics(scores, targets, vocab.action_verbs(), vocab.action_nouns(),
                                          num_verbs=len(vocab.verbs), num_nouns=len(vocab.nouns),
                                          recall_classes=recall_classes(cfg, vocab), times=times)
    if 1.0 in times:
        metrics["action_top5@1s"] = metrics["action_top5@1.0s"]
        metrics["action_mt5r@1s"] = metrics["action_mt5r@1.0s"]
    if report is not None:  # `mmreason eval --output`: per-action top-5 recall at each time, top-5 predictions
        top5 = np.argsort(-scores, axis=-1)[..., :5]  # [N, S_ant, 5]
        hit = (top5 == targets[..., None]).any(-1)  # [N, S_ant]
        per_class = {}
        for a in np.unique(targets):
            row = per_class.setdefault(vocab.action_text(int(a)), {})
            for j, t in enumerate(times):
                mask = targets[:, j] == a  # [N] samples whose action at this anticipation time is a
                if mask.any():
                    row[f"top5_recall@{t}s"] = 100.0 * float(hit[mask, j].mean())
                    row[f"samples@{t}s"] = int(mask.sum())
        report["per_class"] = per_class
        report["predictions"] = {"times_s": list(times), "top5_actions": top5, "target_actions": targets}
    return metrics


METHOD = MethodSpec(
    name="vs_transgru",
    config_cls=VSTransGRUExperiment,
    build_model=build_model,
    build_dataset=build_dataset,
    evaluate=evaluate,
    collate_fn=collate,
    summary="VS-TransGRU (arXiv 2307.03918): Transformer-GRU egocentric action anticipation with visual-semantic fusion",
    headline_metrics=("action_top5@1s",),
)

__all__ = ["METHOD", "VSTransGRU", "VSTransGRUConfig", "VSTransGRUDataConfig", "VSTransGRUExperiment",
           "build_dataset", "build_model", "collate", "evaluate", "label_embeddings", "predict_scores"]
