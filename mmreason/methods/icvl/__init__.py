"""ICVL (arXiv 2505.01713): VLM intentions fused into visual tokens, in-context examples chosen by joint visual +
textual similarity, and a LoRA-tuned LLM that predicts the next Z (verb, noun) actions. See ``model.py`` for what is
the paper's and what is reconstructed, ``README.md`` for how to run it, ``anticipator.py`` for the interactive API."""
from __future__ import annotations

import numpy as np
import torch

from mmreason.methods.base import MethodSpec
from mmreason.methods.icvl.config import ICVLConfig, ICVLDataConfig, ICVLExperiment
from mmreason.methods.icvl.data import GOAL_WORDS, build_dataset, collate, load_vocab
from mmreason.methods.icvl.model import ICVL


def build_model(cfg: ICVLExperiment) -> ICVL:
    extra = [" ".join(GOAL_WORDS)] if cfg.data.dataset == "synthetic" else []
    return ICVL(cfg.model, load_vocab(cfg), extra_words=extra)


@torch.no_grad()
def predict(model: ICVL, dataset, batch_size: int = 8, accelerator=None, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"verbs" [N, K, Z], "nouns" [N, K, Z], "labels" [N, Z, 2]}`` over ``dataset`` (gathered across processes)."""
    from mmreason.engine import gather_for_eval, prepare_eval_loader

    loader = prepare_eval_loader(dataset, batch_size, accelerator=accelerator, collate_fn=collate)
    verbs, nouns, labels = [], [], []
    for step, batch in enumerate(loader):
        cands = model.anticipate(batch["visual"], batch["prompt"], batch["intention"], seed=seed + step)
        pairs = torch.tensor([[c.pairs for c in row] for row in cands], dtype=torch.long, device=model.device)  # [B, K, Z, 2]
        pairs, future = gather_for_eval(accelerator, (pairs, batch["future"].to(model.device)))
        verbs.append(pairs[..., 0].cpu().numpy())
        nouns.append(pairs[..., 1].cpu().numpy())
        labels.append(future.cpu().numpy())
    return {"verbs": np.concatenate(verbs), "nouns": np.concatenate(nouns), "labels": np.concatenate(labels)}


def evaluate(model: ICVL, cfg: ICVLExperiment, split: str = "val", accelerator=None) -> dict[str, float]:
    """Ego4D LTA edit distance at Z (verb / noun / action ``*_ED``) and ``*_AUED`` (spec §1.1)."""
    from mmreason.metrics.anticipation import ego4d_lta_metrics

    out = predict(model, build_dataset(cfg, split), cfg.data.eval_batch_size, accelerator, seed=cfg.train.seed)
    labels = out["labels"]
    if (labels < 0).any():
        raise ValueError(f"split {split!r} has unannotated future actions; score it on EvalAI "
                         "(mmreason.data.anticipation.write_ego4d_submission)")
    return ego4d_lta_metrics(out["verbs"], out["nouns"], labels[..., 0], labels[..., 1], len(model.vocab.nouns))


METHOD = MethodSpec(name="icvl", config_cls=ICVLExperiment, build_model=build_model, build_dataset=build_dataset,
                    evaluate=evaluate, collate_fn=collate,
                    summary="ICVL (arXiv 2505.01713): intention-enhanced visual tokens + LLM long-term anticipation")

__all__ = ["METHOD", "ICVL", "ICVLConfig", "ICVLDataConfig", "ICVLExperiment", "build_model", "evaluate", "predict"]
