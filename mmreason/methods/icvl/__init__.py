"""ICVL (arXiv 2505.01713): VLM intentions fused into visual tokens, in-context examples chosen by joint visual +
textual similarity, and a LoRA-tuned LLM that predicts the next Z (verb, noun) actions. See ``model.py`` for what is
the paper's and what is reconstructed, ``README.md`` for how to run it, ``anticipator.py`` for the interactive API.

Evaluation runs the benchmarks' protocols (``specs/anticipation_tal.md`` §1.1-1.2): Ego4D LTA edit distance (K = 5
sequences of Z = 20 actions) and, for EK-55 / EGTEA Gaze+ (the paper's second table), verb-set mAP All / Freq / Rare
over the EGO-TOPO samples, from the same K x Z answers. The results say which observed actions were used
(``observed_source``: a recogniser's predictions, or the ground-truth ORACLE) and where the intentions came from
(``intention_source``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmreason.methods.base import MethodSpec
from mmreason.methods.icvl.config import ICVLConfig, ICVLDataConfig, ICVLExperiment
from mmreason.methods.icvl.data import GOAL_WORDS, build_dataset, collate, load_vocab
from mmreason.methods.icvl.model import ICVL


def build_model(cfg: ICVLExperiment) -> ICVL:
    extra = [" ".join(GOAL_WORDS)] if cfg.data.dataset.startswith("synthetic") else []
    return ICVL(cfg.model, load_vocab(cfg), extra_words=extra)


@torch.no_grad()
def predict(model: ICVL, dataset, batch_size: int = 8, accelerator=None, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"verbs" [N, K, Z], "nouns" [N, K, Z], "labels" [N, Z, 2]}`` (+ ``"verb_set" [N, V]`` for the EK-55/EGTEA
    protocol) over ``dataset``, gathered across processes."""
    from mmreason.engine import gather_for_eval, prepare_eval_loader

    loader = prepare_eval_loader(dataset, batch_size, accelerator=accelerator, collate_fn=collate)
    out: dict[str, list] = {"verbs": [], "nouns": [], "labels": []}
    for step, batch in enumerate(loader):
        cands = model.anticipate(batch["visual"], batch["prompt"], batch["intention"], seed=seed + step)
        pairs = torch.tensor([[c.pairs for c in row] for row in cands], dtype=torch.long, device=model.device)  # [B, K, Z, 2]
        extra = (batch["verb_set"].to(model.device),) if "verb_set" in batch else ()
        gathered = gather_for_eval(accelerator, (pairs, batch["future"].to(model.device), *extra))
        out["verbs"].append(gathered[0][..., 0].cpu().numpy())
        out["nouns"].append(gathered[0][..., 1].cpu().numpy())
        out["labels"].append(gathered[1].cpu().numpy())
        if extra:
            out.setdefault("verb_set", []).append(gathered[2].cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def result_labels(cfg: ICVLExperiment, split: str, dataset) -> dict[str, str]:
    """What a results table must say next to the numbers: protocol, observed actions, intention source."""
    from mmreason.methods.icvl.data import observed_source_label, protocol

    sources = sorted({w.intention_source for w in dataset.windows}) or ["none"]
    return {"protocol": {"ego4d_lta": "Ego4D LTA edit distance (K x Z)",
                         "verb_set": "EK-55/EGTEA verb-set mAP (EGO-TOPO)"}[protocol(cfg)],
            "split": split, "observed_source": observed_source_label(cfg, split),
            "intention_source": "; ".join(sources)}


def evaluate(model: ICVL, cfg: ICVLExperiment, split: str = "val", accelerator=None,
             report: dict | None = None) -> dict:
    """The split's protocol metrics with their labels.

    Ego4D: verb / noun / action edit distance at Z (``*_ED``) and ``*_AUED`` (spec §1.1). EK-55 / EGTEA: verb-set
    ``mAP`` / ``mAP_freq`` / ``mAP_rare`` (spec §1.2) of the K x Z answers scored by ``model.verb_set_scoring``.
    Labels: ``protocol``, ``observed_source`` (``ground_truth (ORACLE ...)`` when the annotations were used),
    ``intention_source``. An Ego4D split without future labels is an error before anything is generated (score
    it on EvalAI with :func:`write_submission`). ``report`` (``mmreason eval --output``) gets one record per window."""
    from mmreason.methods.icvl.data import action_texts, many_shot_verbs, protocol

    dataset = build_dataset(cfg, split)
    labels = result_labels(cfg, split, dataset)
    if protocol(cfg) == "ego4d_lta":
        unlabelled = [w.key for w in dataset.windows if any(v < 0 or n < 0 for v, n in w.future)]
        if unlabelled:
            raise ValueError(f"split {split!r}: {len(unlabelled)} windows have unannotated future actions (first: "
                             f"{unlabelled[0]}); score them on EvalAI with an outputs.json from "
                             "mmreason.methods.icvl.write_submission")
    out = predict(model, dataset, cfg.data.eval_batch_size, accelerator, seed=cfg.train.seed)
    if protocol(cfg) == "ego4d_lta":
        from mmreason.metrics.anticipation import ego4d_lta_metrics

        y = out["labels"]
        metrics = ego4d_lta_metrics(out["verbs"], out["nouns"], y[..., 0], y[..., 1], len(model.vocab.nouns))
    else:
        from mmreason.metrics.anticipation import verb_set_map, verb_set_scores

        scores = verb_set_scores(out["verbs"], len(model.vocab.verbs), cfg.model.verb_set_scoring)
        metrics = verb_set_map(scores, out["verb_set"], many_shot_verbs(cfg))
    if report is not None and len(out["verbs"]) == len(dataset.windows):
        report["predictions"] = [
            {"key": w.key, "observed": action_texts(w.observed, model.vocab), "intention": w.intention,
             "intention_source": w.intention_source, "verbs": out["verbs"][i], "nouns": out["nouns"][i]}
            for i, w in enumerate(dataset.windows)]
    return {**labels, **metrics}


def write_submission(model: ICVL, cfg: ICVLExperiment, path: str | Path, split: str = "test") -> Path:
    """Ego4D EvalAI ``outputs.json`` of ``split`` (``{key: {"verb": K x Z, "noun": K x Z}}``); the observed actions
    come from ``data.test_observed_file`` (``observed_source = predictions``), as the test split has no labels."""
    from mmreason.data.anticipation import write_ego4d_submission
    from mmreason.methods.icvl.data import protocol

    if protocol(cfg) != "ego4d_lta":
        raise ValueError(f"write_submission writes the Ego4D LTA outputs.json; data.dataset is {cfg.data.dataset!r}")
    dataset = build_dataset(cfg, split)
    out = predict(model, dataset, cfg.data.eval_batch_size, seed=cfg.train.seed)
    m = cfg.model
    return write_ego4d_submission(path, [w.key for w in dataset.windows], out["verbs"], out["nouns"],
                                  num_sequences=m.num_sequences, num_future=m.num_future)


def save_example_bank(cfg: ICVLExperiment, run_dir) -> str:
    """post_train: the example bank (FAISS index + texts) goes into the run folder, for the Anticipator."""
    from mmreason.methods.icvl.anticipator import save_example_bank as save

    return save(cfg, run_dir)


METHOD = MethodSpec(name="icvl", config_cls=ICVLExperiment, build_model=build_model, build_dataset=build_dataset,
                    evaluate=evaluate, collate_fn=collate, headline_metrics=("action_ED", "mAP"),
                    post_train=save_example_bank,
                    summary="ICVL (arXiv 2505.01713): intention-enhanced visual tokens + LLM long-term anticipation")

__all__ = ["METHOD", "ICVL", "ICVLConfig", "ICVLDataConfig", "ICVLExperiment", "build_model", "evaluate", "predict",
           "write_submission"]
