"""VS-TransGRU datasets: RULSTM features (via :mod:`mmreason.data.anticipation`) or synthetic sequences.

Every item is ``{"features": {modality: float32 [T, D_m]}, "targets": int64 [S_ant], "observed_labels":
int64 [T] (-100 where unknown), "id": int | str}`` with T = S_enc + S_ant on the 0.25 s grid.

RULSTM rows give one label, the upcoming action, repeated over the S_ant outputs (RULSTM trains every
anticipation step on it). The observed label of each of the T past frames is the action of the annotated
segment that covers that frame (``data.observed_labels=segments``, :class:`SegmentIndex` over the split's own
CSV and any ``data.segment_csvs``), so the recognition and alignment losses train on real data too. The synthetic data is a sequence rule: actions follow ``a[t+1] = rule(a[t-1], a[t])``,
each frame shows its action (rgb: action prototype, flow: verb prototype, obj: noun prototype, plus noise), and
the target of anticipation step j is the next action after the latest frame the model has seen at that step.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mmreason.data.anticipation import (ActionVocab, RulstmFeatureDataset, Vocabulary, load_egtea_vocab,
                                        load_epic_vocab, open_features, read_class_ids)
from mmreason.data.anticipation.rulstm import SegmentIndex
from mmreason.methods.vs_transgru.model import IGNORE

log = logging.getLogger("mmreason.vs_transgru")


def _path(root: str, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() or not root else Path(root) / p


def load_vocab(cfg) -> ActionVocab:
    """The action vocabulary of the experiment (synthetic: every verb x noun pair)."""
    data = cfg.data
    if data.dataset == "synthetic":
        verbs = Vocabulary.from_names([f"verb{i}" for i in range(data.num_verbs)], "verb")
        nouns = Vocabulary.from_names([f"noun{i}" for i in range(data.num_nouns)], "noun")
        pairs = tuple((v, n) for v in range(data.num_verbs) for n in range(data.num_nouns))
        return ActionVocab(verbs, nouns, pairs)
    actions = _path(data.root, data.actions_csv)
    if data.verb_classes_csv and data.noun_classes_csv:
        return load_epic_vocab(_path(data.root, data.verb_classes_csv), _path(data.root, data.noun_classes_csv), actions)
    return load_egtea_vocab(actions)


def recall_classes(cfg, vocab: ActionVocab) -> dict[str, np.ndarray] | None:
    """EK-55: mean top-5 recall over many-shot verbs/nouns/actions; None (all classes) otherwise."""
    data = cfg.data
    if not (data.many_shot_verbs_csv and data.many_shot_nouns_csv):
        return None
    from mmreason.metrics.anticipation import many_shot_actions

    verbs = read_class_ids(_path(data.root, data.many_shot_verbs_csv))
    nouns = read_class_ids(_path(data.root, data.many_shot_nouns_csv))
    return {"verb": verbs, "noun": nouns,
            "action": many_shot_actions(vocab.action_verbs(), vocab.action_nouns(), verbs, nouns)}


class SyntheticSequences(torch.utils.data.Dataset):
    """Deterministic synthetic anticipation data (see module docstring); chance top-1 = 1 / (verbs x nouns)."""

    def __init__(self, cfg, split: str):
        data, model = cfg.data, cfg.model
        s_enc, s_ant = data.observed_steps, data.anticipation_steps
        num_actions = data.num_verbs * data.num_nouns
        rule_rng = np.random.default_rng(data.seed)                        # shared by all splits
        rule = rule_rng.integers(0, num_actions, size=(num_actions, num_actions))
        dims = dict(zip(data.modalities, data.feature_dims))
        protos = {m: rule_rng.standard_normal((num_actions if i == 0 else (data.num_verbs, data.num_nouns)[(i - 1) % 2], d))
                  for i, (m, d) in enumerate(dims.items())}
        split_offset = {"train": 1, "val": 2, "test": 3}[split]
        rng = np.random.default_rng(data.seed * 1000 + split_offset)
        n = data.num_samples if split == "train" else max(data.num_samples // 4, 16)
        length = s_enc + s_ant + 1
        seq = np.zeros((n, length), dtype=np.int64)
        seq[:, :2] = rng.integers(0, num_actions, size=(n, 2))
        for t in range(2, length):
            seq[:, t] = rule[seq[:, t - 2], seq[:, t - 1]]
        self.sequence = seq                                                # [N, T + 1] every action, for analysis
        frames = seq[:, :s_enc + s_ant]                                     # [N, T] action shown by each frame
        self.features = {}
        for i, (m, proto) in enumerate(protos.items()):
            if i == 0:
                cls = frames
            elif (i - 1) % 2 == 0:
                cls = frames // data.num_nouns                              # verb of the action
            else:
                cls = frames % data.num_nouns                               # noun of the action
            feats = proto[cls] + data.noise * rng.standard_normal(cls.shape + (proto.shape[1],))
            self.features[m] = feats.astype(np.float32)                     # [N, T, D_m]
        offset = 1 if model.decoder_input == "observation" else 0
        self.targets = seq[:, s_enc + offset:s_enc + offset + s_ant]       # [N, S_ant]
        self.observed = frames.copy()                                      # [N, T] action shown by each frame
        if data.observed_labels == "none":
            self.observed[:] = IGNORE

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict:
        return {"features": {m: torch.from_numpy(f[i]) for m, f in self.features.items()},
                "targets": torch.from_numpy(self.targets[i]), "observed_labels": torch.from_numpy(self.observed[i]),
                "id": i}


class RulstmSequences(torch.utils.data.Dataset):
    """RULSTM features for the method: the upcoming action repeated over the S_ant outputs, and the action
    performed in each of the T past frames (from the annotated segments) as observed labels."""

    def __init__(self, cfg, split: str):
        data = cfg.data
        if not data.root:
            raise ValueError("data.root is empty: set it to the RULSTM data folder (split CSVs, actions.csv, "
                             "one feature store per modality), or use data.dataset=synthetic")
        csv_name = {"train": data.train_csv, "val": data.val_csv, "test": data.test_csv or data.val_csv}[split]
        csv_path = _path(data.root, csv_name)
        stores = {m: open_features(_path(data.root, m), data.feature_format, data.img_tmpl) for m in data.modalities}
        self.base = RulstmFeatureDataset(csv_path, stores, fps=data.fps, time_step=data.time_step,
                                         sequence_length=data.observed_steps + data.anticipation_steps)
        self.s_enc, self.s_ant = data.observed_steps, data.anticipation_steps
        self.dims = dict(zip(data.modalities, data.feature_dims))
        length = data.observed_steps + data.anticipation_steps
        self.observed = np.full((len(self.base), length), IGNORE, dtype=np.int64)   # [N, T]
        if data.observed_labels == "segments":
            sources = [csv_path] + [_path(data.root, c) for c in data.segment_csvs]
            index = SegmentIndex.from_csvs(sources, data.observed_overlap)
            for i, (row, frames) in enumerate(zip(self.base.rows, self.base.frames)):
                self.observed[i] = index.labels(row.video, frames, unknown=IGNORE)
        # fraction of past frames with a known action (most, when the split's segments are labelled)
        self.observed_coverage = float((self.observed != IGNORE).mean()) if self.observed.size else 0.0
        if data.observed_labels == "segments":
            log.info("%s: %.1f%% of the past frames carry an observed label", csv_path, 100 * self.observed_coverage)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        feats = {}
        for m, f in item["features"].items():
            if f.shape[1] != self.dims[m]:
                raise ValueError(f"modality {m!r}: features have size {f.shape[1]}, data.feature_dims says {self.dims[m]}")
            feats[m] = torch.from_numpy(np.ascontiguousarray(f))
        action = item["action"] if item["action"] >= 0 else IGNORE
        return {"features": feats, "targets": torch.full((self.s_ant,), action, dtype=torch.long),
                "observed_labels": torch.from_numpy(self.observed[i]), "id": item["id"]}


def build_dataset(cfg, split: str) -> torch.utils.data.Dataset:
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    if cfg.data.dataset == "synthetic":
        return SyntheticSequences(cfg, split)
    return RulstmSequences(cfg, split)


def collate(items: list[dict]) -> dict:
    """Stack items: features {m: [B, T, D_m]}, targets [B, S_ant], observed_labels [B, T], id (list: EK-100
    ids are strings)."""
    return {"features": {m: torch.stack([it["features"][m] for it in items]) for m in items[0]["features"]},
            "targets": torch.stack([it["targets"] for it in items]),
            "observed_labels": torch.stack([it["observed_labels"] for it in items]),
            "id": [it["id"] for it in items]}
