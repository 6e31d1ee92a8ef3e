"""ICVL data: Ego4D LTA windows with per-segment visual features and intentions, a synthetic task, the prompt.

Ego4D (spec §1.1): every window of N = 8 observed + Z = 20 future annotated actions of a clip is a sample keyed
``"{clip_uid}_{last observed action_idx}"``. Visual features come from ``<features_dir>/<clip_uid>.npy`` with one
row per annotated action (row = ``action_idx``; ``[A, D]``, or ``[A, T, D]`` averaged over T): the observed
segments give the N visual tokens ``V ∈ R^{N×D}``. Intentions come from the curated asset
``knowledge/<intention_dataset>/intentions.jsonl`` (ids = window keys, or clip uids for one intention per clip), or
are generated on the fly through the cached asset engine (``data.intentions = generate``).

Synthetic task (tests and ``configs/tiny_synthetic.yaml``): each clip pursues one of G goals; a goal fixes a cycle
of N + 2 distinct actions (the sequence rule) and a clip performs that cycle from a random offset. The visual
feature of a segment is its action's prototype plus noise, and the intention is the goal ("The person intends to
make soup."), standing in for a VLM that reads the goal off the video. The two actions of the cycle that the
observation does not show can be inferred only from the goal (intention, in-context examples of the same goal).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mmreason.data.anticipation import ActionVocab, Vocabulary
from mmreason.methods.icvl.examples import Example, ExampleBank, make_text_embedder, query_text

VERB_WORDS = ("take", "put", "cut", "wash", "open", "close", "stir", "pour", "peel", "dry")
NOUN_WORDS = ("knife", "onion", "pan", "bowl", "door", "cup", "spoon", "water", "bread", "plate")
GOAL_WORDS = ("salad", "soup", "tea", "pasta", "toast", "juice", "rice", "cake")
SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}


@dataclass
class Window:
    """One sample: N visual tokens, the observed and future (verb, noun) ids, the intention text."""

    key: str
    clip: str
    visual: np.ndarray                 # [N, D] float32
    observed: list[tuple[int, int]]
    future: list[tuple[int, int]]      # Z pairs; (-1, -1) where unannotated
    intention: str = ""


def action_texts(pairs: Sequence[tuple[int, int]], vocab: ActionVocab) -> list[str]:
    return [f"{vocab.verbs.text(v)} {vocab.nouns.text(n)}" for v, n in pairs]


def build_prompt(model_cfg, examples: Sequence[Example], observed: Sequence[str], intention: str, z: int) -> str:
    """The LLM prompt: instruction, text-only in-context examples (observed -> future), then the query's intention,
    the visual placeholder (replaced by the soft visual tokens) and its observed actions. Ends at "Prediction:"."""
    lines = [model_cfg.instruction.format(z=z)]
    for ex in examples:
        lines += ["### Example", "Observed actions: " + ", ".join(ex.observed), "Prediction: " + ", ".join(ex.future[:z])]
    lines += ["### Query"]
    if intention:
        lines.append("Intention: " + intention)
    lines += ["Video: " + model_cfg.visual_placeholder, "Observed actions: " + ", ".join(observed), "Prediction:"]
    return "\n".join(lines)


# ============================================================================================== synthetic task

def synthetic_vocab(cfg) -> ActionVocab:
    d = cfg.data
    if d.num_verbs > len(VERB_WORDS) or d.num_nouns > len(NOUN_WORDS) or d.num_goals > len(GOAL_WORDS):
        raise ValueError(f"synthetic data has at most {len(VERB_WORDS)} verbs, {len(NOUN_WORDS)} nouns and "
                         f"{len(GOAL_WORDS)} goals; got {d.num_verbs}, {d.num_nouns}, {d.num_goals}")
    return ActionVocab(Vocabulary.from_names(VERB_WORDS[:d.num_verbs], "verb"),
                       Vocabulary.from_names(NOUN_WORDS[:d.num_nouns], "noun"))


def synthetic_rule(cfg) -> tuple[np.ndarray, np.ndarray]:
    """``(recipes [G, N + 2] action ids, prototypes [A, D])``, a pure function of ``data.seed``."""
    d, n = cfg.data, cfg.data.num_observed
    num_actions = d.num_verbs * d.num_nouns
    if num_actions < n + 2:
        raise ValueError(f"synthetic data needs at least {n + 2} actions (verbs x nouns), got {num_actions}")
    rng = np.random.default_rng(d.seed)
    recipes = np.stack([rng.choice(num_actions, n + 2, replace=False) for _ in range(d.num_goals)])
    prototypes = rng.normal(size=(num_actions, cfg.model.visual_dim)).astype(np.float32)
    return recipes, prototypes


def synthetic_intention(goal: int) -> str:
    return f"The person intends to make {GOAL_WORDS[goal]}."


def synthetic_windows(cfg, split: str) -> list[Window]:
    d, n, z = cfg.data, cfg.data.num_observed, cfg.model.num_future
    recipes, prototypes = synthetic_rule(cfg)
    vocab = synthetic_vocab(cfg)
    count = d.num_clips if split == "train" else max(d.num_clips // 4, 1)
    rng = np.random.default_rng(d.seed + 1000 * (1 + SPLIT_OFFSET[split]))
    length = recipes.shape[1]
    out = []
    for i in range(count):
        goal, offset = int(rng.integers(d.num_goals)), int(rng.integers(length))
        actions = [int(recipes[goal][(offset + t) % length]) for t in range(n + z)]
        pairs = [vocab.verb_noun(a) for a in actions]
        visual = prototypes[actions[:n]] + d.noise * rng.normal(size=(n, prototypes.shape[1])).astype(np.float32)
        clip = f"{split}{i:04d}"
        out.append(Window(f"{clip}_{n - 1}", clip, visual.astype(np.float32), pairs[:n], pairs[n:],
                          synthetic_intention(goal)))
    return out


# ============================================================================================== Ego4D LTA

def _root_file(cfg, name: str) -> Path:
    if not cfg.data.root:
        raise FileNotFoundError("data.root is empty: set it to the Ego4D folder holding the fho_lta_*.json files "
                                "(or use data.dataset=synthetic)")
    return Path(cfg.data.root) / name


def load_vocab(cfg) -> ActionVocab:
    if cfg.data.dataset == "synthetic":
        return synthetic_vocab(cfg)
    from mmreason.data.anticipation import load_ego4d_taxonomy

    return load_ego4d_taxonomy(_root_file(cfg, cfg.data.taxonomy_file))


def read_segment_features(features_dir: str | Path, clip: str, rows: Sequence[int], dim: int | None = None) -> np.ndarray:
    """Rows ``rows`` of ``<features_dir>/<clip>.npy`` -> ``[len(rows), D]`` float32 (``[A, T, D]`` is averaged over T)."""
    file = Path(features_dir) / f"{clip}.npy"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: visual features of clip {clip!r} not found (data.features_dir)")
    arr = np.load(file, mmap_mode="r")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{file}: expected [A, D] or [A, T, D] features, got shape {arr.shape}")
    idx = np.asarray(rows, dtype=np.int64)
    if idx.max() >= len(arr):
        raise ValueError(f"{file}: has {len(arr)} rows, action_idx {int(idx.max())} needs more")
    out = np.asarray(arr[idx], dtype=np.float32)
    out = out.mean(axis=1) if out.ndim == 3 else out
    if dim is not None and out.shape[-1] != dim:
        raise ValueError(f"{file}: features are {out.shape[-1]}-d but model.visual_dim is {dim}")
    return out


def _split_file(cfg, split: str) -> Path:
    d = cfg.data
    name = {"train": d.train_file, "val": d.val_file, "test": d.test_file or d.val_file}[split]
    return _root_file(cfg, name)


def ego4d_windows(cfg, split: str) -> list[Window]:
    from mmreason.data.anticipation import ego4d_lta_windows, read_ego4d_lta

    d = cfg.data
    if not d.features_dir:
        raise FileNotFoundError("data.features_dir is empty: set it to the folder of '<clip_uid>.npy' features")
    windows = ego4d_lta_windows(read_ego4d_lta(_split_file(cfg, split)), d.num_observed, cfg.model.num_future)
    if d.max_windows:
        windows = windows[:d.max_windows]
    out = []
    for w in windows:
        visual = read_segment_features(d.features_dir, w.clip_uid, [a.action_idx for a in w.observed],
                                       cfg.model.visual_dim)
        out.append(Window(w.key, w.clip_uid, visual, [tuple(p) for p in w.observed_labels().tolist()],
                          [tuple(p) for p in w.future_labels().tolist()]))
    attach_intentions(cfg, split, out, windows)
    return out


def attach_intentions(cfg, split: str, out: list[Window], windows) -> None:
    """Fill ``Window.intention`` from the curated asset or the cached asset engine (``data.intentions``)."""
    d = cfg.data
    if d.intentions == "none":
        return
    vocab = load_vocab(cfg)
    if d.intentions == "asset":
        from mmreason.assets.io import load_assets

        table = {str(r["id"]): r["intention"] for r in load_assets("intentions", d.intention_dataset, root=d.knowledge_root)}
    else:
        if not d.video_dir:
            raise FileNotFoundError("data.intentions=generate needs data.video_dir (folder of '<clip_uid>.mp4')")
        items = [{"id": w.key, "video": str(Path(d.video_dir) / f"{w.clip_uid}.mp4"),
                  "start_s": w.observed[0].start_sec, "end_s": w.observed[-1].end_sec,
                  "observed": action_texts([tuple(p) for p in w.observed_labels().tolist()], vocab)} for w in windows]
        table = generate_intentions(items, f"{d.intention_dataset}_{split}", d.intention_backend, d.intention_model,
                                    d.knowledge_root, d.llm_cache_dir)
    missing = [w.key for w in out if w.key not in table and w.clip not in table]
    if missing:
        raise KeyError(f"{len(missing)} windows have no intention in knowledge/{d.intention_dataset}/intentions.jsonl "
                       f"(first: {missing[0]!r}); generate them with mmreason generate intentions, or set "
                       "data.intentions=generate / none")
    for w in out:
        w.intention = table.get(w.key, table.get(w.clip, ""))


class TextOnlyView:
    """Shows a text-only LLM the intention requests without their frames (the frames stay in the cache key).

    The embedded Gemma is not a VLM: with it the intention is inferred from the observed actions alone, a reduced
    stand-in for ICVL's VLM (which the paper does not name)."""

    def __init__(self, backend):
        self.backend = backend
        self.name, self.model_id = backend.name, backend.model_id
        self.revision = getattr(backend, "revision", "")

    def generate(self, requests):
        from dataclasses import replace

        return self.backend.generate([replace(r, images=()) for r in requests])

    def library_versions(self):
        return self.backend.library_versions()


def intention_llm(backend: str, model: str):
    """The intention backend; a text-only hf model is wrapped in :class:`TextOnlyView`."""
    from mmreason.llm import make_backend

    llm = make_backend(backend, model=model) if backend != "replay" else None
    if llm is not None and getattr(llm, "is_vlm", True) is False:
        llm = TextOnlyView(llm)
    return llm


def generate_intentions(items: list[dict], dataset: str, backend: str | object, model: str, knowledge_root: str,
                        cache_dir: str) -> dict[str, str]:
    """``{item id: intention}`` through :func:`mmreason.assets.build.generate_assets` (answers cached per clip)."""
    from mmreason.assets.build import generate_assets
    from mmreason.assets.io import read_records

    llm = intention_llm(backend, model) if isinstance(backend, str) else backend
    summary = generate_assets("intentions", dataset, backend=backend if isinstance(backend, str) else "custom",
                              model=model, items=items, llm=llm, knowledge_root=knowledge_root, cache_dir=cache_dir,
                              embed=False, progress=False, echo=lambda s: None)
    if summary["failed"]:
        raise RuntimeError(f"{summary['failed']} intentions could not be parsed; see "
                           f"{Path(knowledge_root) / dataset / 'intentions.manifest.json'}")
    return {str(r["id"]): r["intention"] for r in read_records(summary["path"])}


# ============================================================================================== bank + dataset

def load_windows(cfg, split: str) -> list[Window]:
    if split not in SPLIT_OFFSET:
        raise ValueError(f"split must be one of {list(SPLIT_OFFSET)}, got {split!r}")
    return synthetic_windows(cfg, split) if cfg.data.dataset == "synthetic" else ego4d_windows(cfg, split)


def bank_from_windows(windows: Sequence[Window], vocab: ActionVocab, embedder, example_text: str) -> ExampleBank:
    observed = [action_texts(w.observed, vocab) for w in windows]
    texts = [query_text(o, w.intention, example_text) for o, w in zip(observed, windows)]
    text = embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)
    visual = np.stack([w.visual.mean(axis=0) for w in windows]) if windows else np.zeros((0, 1), np.float32)
    return ExampleBank([w.key for w in windows], [w.clip for w in windows], observed,
                       [action_texts(w.future, vocab) for w in windows], visual, np.asarray(text))


_BANKS: dict[str, ExampleBank] = {}


def example_bank(cfg) -> ExampleBank:
    """The training windows as an :class:`ExampleBank` (built once per data config in this process)."""
    import json

    from mmreason.config import to_dict

    m = cfg.model
    key = json.dumps({"data": to_dict(cfg.data), "visual_dim": m.visual_dim, "num_future": m.num_future,
                      "example_text": m.example_text, "text_embedder": m.text_embedder}, sort_keys=True)
    if key not in _BANKS:
        _BANKS[key] = bank_from_windows(load_windows(cfg, "train"), load_vocab(cfg), text_embedder(m.text_embedder),
                                        m.example_text)
    return _BANKS[key]


class ICVLDataset(torch.utils.data.Dataset):
    """Windows with their prompt (examples chosen once, at construction) and answer text.

    Item: ``{"key", "visual" [N, D], "prompt" (str with the visual placeholder), "intention", "target" (str),
    "future" [Z, 2] long}``. Training windows never take examples from their own clip.
    """

    def __init__(self, cfg, windows: list[Window], bank: ExampleBank, vocab: ActionVocab, embedder,
                 exclude_own_clip: bool = True):
        m = cfg.model
        self.windows, self.vocab = windows, vocab
        observed = [action_texts(w.observed, vocab) for w in windows]
        if windows:
            text_q = embedder.embed([query_text(o, w.intention, m.example_text) for o, w in zip(observed, windows)])
            visual_q = np.stack([w.visual.mean(axis=0) for w in windows])
            self.examples = bank.select(visual_q, text_q, m.num_examples, visual_weight=m.visual_weight,
                                        exclude_clips=[w.clip for w in windows] if exclude_own_clip else None,
                                        use_mmr=m.use_mmr, mmr_lambda=m.mmr_lambda, mmr_pool=m.mmr_pool)
        else:
            self.examples = []
        self.prompts = [build_prompt(m, ex, o, w.intention, m.num_future)
                        for ex, o, w in zip(self.examples, observed, windows)]
        self.targets = [" " + ", ".join(action_texts(w.future, vocab)) for w in windows]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        w = self.windows[i]
        return {"key": w.key, "visual": torch.from_numpy(w.visual), "prompt": self.prompts[i],
                "intention": w.intention, "target": self.targets[i],
                "future": torch.tensor(w.future, dtype=torch.long).reshape(-1, 2)}


def collate(items: list[dict]) -> dict:
    """Stack tensors, keep texts as lists."""
    return {"key": [it["key"] for it in items], "visual": torch.stack([it["visual"] for it in items]),
            "prompt": [it["prompt"] for it in items], "intention": [it["intention"] for it in items],
            "target": [it["target"] for it in items], "future": torch.stack([it["future"] for it in items])}


def build_dataset(cfg, split: str) -> ICVLDataset:
    vocab = load_vocab(cfg)
    return ICVLDataset(cfg, load_windows(cfg, split), example_bank(cfg), vocab, text_embedder(cfg.model.text_embedder))


@lru_cache(maxsize=2)
def text_embedder(name: str):
    """One embedder per name in this process (the MiniLM load takes seconds)."""
    return make_text_embedder(name)
