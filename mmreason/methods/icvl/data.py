"""ICVL data: Ego4D LTA windows, EK-55/EGTEA verb-set samples, synthetic tasks, observed actions, intentions, prompt.

Protocols (``specs/anticipation_tal.md`` §1.1-1.2):
    * **Ego4D LTA** (``data.dataset = ego4d``): every window of N = 8 observed + Z = 20 future annotated actions of a
      clip is a sample keyed ``"{clip_uid}_{last observed action_idx}"``; scored by edit distance.
    * **EK-55 / EGTEA Gaze+** (``ek55`` / ``egtea``, EGO-TOPO splits): observe the first fraction r of a video
      (training r = 0.2..0.8, evaluation r = 0.25 / 0.5 / 0.75), positions relative to the video length; the target
      is the set of verbs of the rest of the video, scored by verb-set mAP (All / Freq / Rare). The N most recent
      observed segments are shown (at least 3 are observed); the answer the LLM learns is the first Z future actions.

Visual features come from ``<features_dir>/<clip>.npy`` with one row per annotated segment (row = ``action_idx``;
``[A, D]``, or ``[A, T, D]`` averaged over T): the shown observed segments give the visual tokens ``V ∈ R^{n×D}``.

Observed action labels (prompt, example retrieval, intention prompt) of the evaluation splits come from a
recogniser's output file (``data.observed_source = predictions``, :func:`read_recognized_actions`), as in the
benchmark protocol; ``ground_truth`` uses the annotations and is an ORACLE setting that ``evaluate`` labels as
such. An unlabelled (-1) observed action under ``ground_truth``, or a segment the predictions file lacks, is an error
naming the clip before anything is loaded or generated. Training windows always use the annotations.

Intentions come from the curated asset ``knowledge/<intention_dataset>/intentions.jsonl`` (ids = window keys, or
clip uids for one intention per clip), or are generated through the cached asset engine by the VLM
``data.intention_model`` (``data.intentions = generate``): frames are checked for every window first, then decoded
window by window. A text-only model is announced once and its intentions are recorded as ``text_only``.

Synthetic tasks (tests, ``configs/tiny_synthetic*.yaml``): each clip pursues one of G goals; a goal fixes a cycle of
N + 2 distinct actions (the sequence rule) and a clip performs that cycle from a random offset. The visual feature
of a segment is its action's prototype plus noise, and the intention is the goal ("The person intends to make
soup."), standing in for a VLM that reads the goal off the video. ``data.goal_cue`` makes the goal visible only
through one input (ablation tests): every goal then shares one observed action sequence and has its own future;
``visual`` adds a per-goal offset to the visual features (the intention is empty), ``intention`` names the goal
in the intention only. ``synthetic_verbset`` lays the cycles out as videos of ``segments_per_video`` segments for the
EK-55/EGTEA protocol.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mmreason.data.anticipation import ActionVocab, AnnotationError, Vocabulary
from mmreason.methods.icvl.examples import Example, ExampleBank, make_text_embedder, query_text

VERB_WORDS = ("take", "put", "cut", "wash", "open", "close", "stir", "pour", "peel", "dry")
NOUN_WORDS = ("knife", "onion", "pan", "bowl", "door", "cup", "spoon", "water", "bread", "plate")
GOAL_WORDS = ("salad", "soup", "tea", "pasta", "toast", "juice", "rice", "cake")
SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}
VERB_SET_DATASETS = ("ek55", "egtea", "synthetic_verbset")
ORACLE = "ground_truth (ORACLE: annotated observed actions, not the benchmark protocol)"


@dataclass
class Window:
    """One sample: n visual tokens, the observed and future (verb, noun) ids, the intention text.

    ``verb_set`` ([V] bool) is the EK-55/EGTEA target (verbs of the rest of the video); None for Ego4D windows.
    ``intention_source`` says where the intention came from (``vlm: <model>``, ``text_only: <model>``, ...)."""

    key: str
    clip: str
    visual: np.ndarray                 # [n, D] float32
    observed: list[tuple[int, int]]
    future: list[tuple[int, int]]      # Z pairs (Ego4D; (-1, -1) where unannotated), up to Z for verb-set samples
    intention: str = ""
    verb_set: np.ndarray | None = None
    intention_source: str = ""


def protocol(cfg) -> str:
    """``"verb_set"`` (EK-55 / EGTEA mAP) or ``"ego4d_lta"`` (edit distance)."""
    return "verb_set" if cfg.data.dataset in VERB_SET_DATASETS else "ego4d_lta"


def action_texts(pairs: Sequence[tuple[int, int]], vocab: ActionVocab) -> list[str]:
    return [f"{vocab.verbs.text(v)} {vocab.nouns.text(n)}" for v, n in pairs]


def build_prompt(model_cfg, examples: Sequence[Example], observed: Sequence[str], intention: str, z: int) -> str:
    """The LLM prompt: instruction, text-only in-context examples (observed -> future), then the query's intention
    (``model.intention_in_prompt``), the visual placeholder (replaced by the soft visual tokens) and its observed
    actions. Ends at "Prediction:"."""
    lines = [model_cfg.instruction.format(z=z)]
    for ex in examples:
        lines += ["### Example", "Observed actions: " + ", ".join(ex.observed), "Prediction: " + ", ".join(ex.future[:z])]
    lines += ["### Query"]
    if intention and getattr(model_cfg, "intention_in_prompt", True):
        lines.append("Intention: " + intention)
    lines += ["Video: " + model_cfg.visual_placeholder, "Observed actions: " + ", ".join(observed), "Prediction:"]
    return "\n".join(lines)


# ============================================================================================== synthetic tasks

def synthetic_vocab(cfg) -> ActionVocab:
    d = cfg.data
    if d.num_verbs > len(VERB_WORDS) or d.num_nouns > len(NOUN_WORDS) or d.num_goals > len(GOAL_WORDS):
        raise ValueError(f"synthetic data has at most {len(VERB_WORDS)} verbs, {len(NOUN_WORDS)} nouns and "
                         f"{len(GOAL_WORDS)} goals; got {d.num_verbs}, {d.num_nouns}, {d.num_goals}")
    return ActionVocab(Vocabulary.from_names(VERB_WORDS[:d.num_verbs], "verb"),
                       Vocabulary.from_names(NOUN_WORDS[:d.num_nouns], "noun"))


def _goal_actions(cfg, goal: int) -> np.ndarray:
    """The actions a goal's cycle draws from: all of them; for ``synthetic_verbset`` only those of the goal's half of
    the verbs (goal g: verbs g*V/G .. g*V/G + V/2 - 1, mod V), so the verbs to come depend on the goal."""
    d = cfg.data
    if d.dataset != "synthetic_verbset":
        return np.arange(d.num_verbs * d.num_nouns)
    step, width = max(d.num_verbs // d.num_goals, 1), max(d.num_verbs // 2, 1)
    verbs = [(goal * step + j) % d.num_verbs for j in range(width)]
    return np.array([v * d.num_nouns + n for v in verbs for n in range(d.num_nouns)])


def synthetic_rule(cfg) -> tuple[np.ndarray, np.ndarray]:
    """``(recipes [G, N + 2] action ids, prototypes [A, D])``, a pure function of ``data.seed``."""
    d, n = cfg.data, cfg.data.num_observed
    num_actions = d.num_verbs * d.num_nouns
    pools = [_goal_actions(cfg, g) for g in range(d.num_goals)]
    if min(len(p) for p in pools) < n + 2:
        raise ValueError(f"synthetic data needs at least {n + 2} actions per goal, got {min(len(p) for p in pools)} "
                         "(raise data.num_verbs or data.num_nouns)")
    rng = np.random.default_rng(d.seed)
    recipes = np.stack([rng.choice(pool, n + 2, replace=False) for pool in pools])
    prototypes = rng.normal(size=(num_actions, cfg.model.visual_dim)).astype(np.float32)
    return recipes, prototypes


def synthetic_intention(goal: int) -> str:
    return f"The person intends to make {GOAL_WORDS[goal]}."


def _single_cue(cfg) -> tuple[np.ndarray, np.ndarray]:
    """``goal_cue`` visual/intention: ``(shared observed action ids [N], goal offsets [G, D])``, from ``data.seed``."""
    d = cfg.data
    rng = np.random.default_rng(d.seed + 7)
    shared = rng.choice(d.num_verbs * d.num_nouns, d.num_observed, replace=False)
    offsets = rng.normal(size=(d.num_goals, cfg.model.visual_dim)).astype(np.float32)
    return shared, offsets


def synthetic_windows(cfg, split: str) -> list[Window]:
    d, n, z = cfg.data, cfg.data.num_observed, cfg.model.num_future
    recipes, prototypes = synthetic_rule(cfg)
    vocab = synthetic_vocab(cfg)
    count = d.num_clips if split == "train" else max(d.num_clips // 4, 1)
    rng = np.random.default_rng(d.seed + 1000 * (1 + SPLIT_OFFSET[split]))
    length = recipes.shape[1]
    shared, offsets = _single_cue(cfg) if d.goal_cue != "all" else (None, None)
    out = []
    for i in range(count):
        goal, offset = int(rng.integers(d.num_goals)), int(rng.integers(length))
        if d.goal_cue == "all":
            actions = [int(recipes[goal][(offset + t) % length]) for t in range(n + z)]
        else:   # one observed sequence for every goal; the future is the goal's cycle from its start
            actions = [int(a) for a in shared] + [int(recipes[goal][t % length]) for t in range(z)]
        pairs = [vocab.verb_noun(a) for a in actions]
        visual = prototypes[actions[:n]] + d.noise * rng.normal(size=(n, prototypes.shape[1])).astype(np.float32)
        if d.goal_cue == "visual":
            visual = visual + offsets[goal]
        clip = f"{split}{i:04d}"
        intention = synthetic_intention(goal) if d.goal_cue in ("all", "intention") else ""
        out.append(Window(f"{clip}_{n - 1}", clip, visual.astype(np.float32), pairs[:n], pairs[n:], intention,
                          intention_source="synthetic goal text (stands in for a VLM)" if intention else "none"))
    return out


def synthetic_videos(cfg, split: str):
    """``synthetic_verbset``: ``({video: [Segment]}, {video: features [L, D]}, {video: goal})``: each video runs its
    goal's cycle from a random offset over ``segments_per_video`` segments of 10 frames (8 annotated)."""
    from mmreason.data.anticipation import Segment

    d = cfg.data
    recipes, prototypes = synthetic_rule(cfg)
    vocab = synthetic_vocab(cfg)
    count = d.num_clips if split == "train" else max(d.num_clips // 4, 1)
    rng = np.random.default_rng(d.seed + 1000 * (1 + SPLIT_OFFSET[split]))
    length, num = recipes.shape[1], d.segments_per_video
    videos, features, goals = {}, {}, {}
    for i in range(count):
        goal, offset = int(rng.integers(d.num_goals)), int(rng.integers(length))
        actions = [int(recipes[goal][(offset + t) % length]) for t in range(num)]
        vid = f"{split}{i:04d}"
        videos[vid] = [Segment(vid, j, *vocab.verb_noun(a), (10 * j) / (10 * num), (10 * j + 8) / (10 * num),
                               10 * j, 10 * j + 8, 10 * num) for j, a in enumerate(actions)]
        features[vid] = (prototypes[actions] + d.noise * rng.normal(size=(num, prototypes.shape[1]))).astype(np.float32)
        goals[vid] = goal
    return videos, features, goals


def synthetic_many_shot(cfg) -> np.ndarray:
    """``synthetic_verbset`` Freq verbs: the more frequent half of the verbs among the training segments."""
    videos, _, _ = synthetic_videos(cfg, "train")
    counts = np.bincount([s.verb_label for segs in videos.values() for s in segs], minlength=cfg.data.num_verbs)
    return np.sort(np.argsort(-counts, kind="stable")[: max(cfg.data.num_verbs // 2, 1)])


# ============================================================================================== files

def _root_file(cfg, name: str) -> Path:
    if Path(name).is_absolute():
        return Path(name)
    if not cfg.data.root:
        raise FileNotFoundError(f"data.root is empty: set it to the {cfg.data.dataset} data folder that holds {name!r} "
                                "(or use data.dataset=synthetic)")
    return Path(cfg.data.root) / name


def load_vocab(cfg) -> ActionVocab:
    d = cfg.data
    if d.dataset in ("synthetic", "synthetic_verbset"):
        return synthetic_vocab(cfg)
    if d.dataset == "ego4d":
        from mmreason.data.anticipation import load_ego4d_taxonomy

        return load_ego4d_taxonomy(_root_file(cfg, d.taxonomy_file))
    lists = "EPIC_verb_classes.csv / EPIC_noun_classes.csv" if d.dataset == "ek55" else "verb_idx.txt / noun_idx.txt"
    for field in ("verb_classes_file", "noun_classes_file"):
        if not getattr(d, field):
            raise FileNotFoundError(f"data.{field} is empty: {d.dataset} needs its class lists ({lists})")
    if d.dataset == "ek55":
        from mmreason.data.anticipation import load_epic_vocab

        return load_epic_vocab(_root_file(cfg, d.verb_classes_file), _root_file(cfg, d.noun_classes_file))
    from mmreason.data.anticipation import load_egtea_idx_vocab

    return load_egtea_idx_vocab(_root_file(cfg, d.verb_classes_file), _root_file(cfg, d.noun_classes_file))


def many_shot_verbs(cfg) -> np.ndarray | None:
    """Freq verb ids of the verb-set protocol (None: report All only)."""
    d = cfg.data
    if d.dataset == "synthetic_verbset":
        return synthetic_many_shot(cfg)
    if not d.many_shot_verbs_file:
        return None
    from mmreason.data.anticipation import read_class_ids

    return read_class_ids(_root_file(cfg, d.many_shot_verbs_file))


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


# ============================================================================================== observed actions

def observed_source(cfg, split: str) -> str:
    """``"ground_truth"`` or ``"predictions"`` for ``split`` (training always reads the annotations)."""
    return "ground_truth" if split == "train" else cfg.data.observed_source


def observed_source_label(cfg, split: str) -> str:
    """How the results table names the observed actions of ``split``."""
    if observed_source(cfg, split) == "ground_truth":
        return ORACLE
    return f"predictions: {_observed_file(cfg, split)}"


def _observed_file(cfg, split: str) -> Path:
    name = getattr(cfg.data, f"{split}_observed_file", "")
    if not name:
        raise FileNotFoundError(f"data.observed_source=predictions needs data.{split}_observed_file: the recognised "
                                f"observed actions of the {split} split (JSON keyed '<clip_uid>_<action_idx>'); "
                                "data.observed_source=ground_truth is the oracle setting")
    return _root_file(cfg, name)


def resolve_observed(cfg, split: str, windows: Sequence[tuple[str, str, Sequence[tuple[int, int, int]]]],
                     vocab: ActionVocab, source_file: str | Path = "") -> list[list[tuple[int, int]]]:
    """The observed (verb, noun) ids of each window ``(key, clip, [(action_idx, gt verb, gt noun), ...])``.

    ``ground_truth``: the annotations; an unlabelled (-1) one is an error naming the clip. ``predictions``: the
    recogniser's output for ``"<clip>_<action_idx>"``; segments it lacks are one error naming them. Both are raised
    before any features, intentions or generations are touched."""
    if observed_source(cfg, split) == "ground_truth":
        bad = [(key, clip) for key, clip, segs in windows if any(v < 0 or n < 0 for _, v, n in segs)]
        if bad:
            hint = ("set data.observed_source=predictions and data.test_observed_file (the Ego4D test split has no "
                    "labels)" if split != "train" else "training needs annotated observed actions")
            raise AnnotationError(f"{source_file or split}: clip {bad[0][1]!r} (window {bad[0][0]}) has unlabelled "
                                  f"(-1) observed actions, as do {len(bad) - 1} more windows; {hint}")
        return [[(int(v), int(n)) for _, v, n in segs] for _, _, segs in windows]
    from mmreason.data.anticipation import read_recognized_actions

    path = _observed_file(cfg, split)
    table = read_recognized_actions(path, len(vocab.verbs), len(vocab.nouns))
    wanted = {f"{clip}_{i}": clip for _, clip, segs in windows for i, _, _ in segs}
    missing = sorted(k for k in wanted if k not in table)
    if missing:
        clips = sorted({wanted[k] for k in missing})
        raise AnnotationError(f"{path}: no recognised action for {len(missing)} observed segments of {len(clips)} "
                              f"clips (clips: {', '.join(clips[:5])}{', ...' if len(clips) > 5 else ''}; first "
                              f"segments: {', '.join(missing[:5])}); every observed segment of the {split} split "
                              "needs one")
    return [[table[f"{clip}_{i}"] for i, _, _ in segs] for _, clip, segs in windows]


# ============================================================================================== Ego4D LTA

def ego4d_windows(cfg, split: str) -> list[Window]:
    from mmreason.data.anticipation import ego4d_lta_windows, read_ego4d_lta
    from mmreason.features import check_features_encoder

    d = cfg.data
    vocab = load_vocab(cfg)
    file = _split_file(cfg, split)
    windows = ego4d_lta_windows(read_ego4d_lta(file), d.num_observed, cfg.model.num_future)
    if d.max_windows:
        windows = windows[:d.max_windows]
    observed = resolve_observed(cfg, split, [(w.key, w.clip_uid, [(a.action_idx, a.verb_label, a.noun_label)
                                                                  for a in w.observed]) for w in windows], vocab, file)
    if not d.features_dir:
        raise FileNotFoundError("data.features_dir is empty: set it to the folder of '<clip_uid>.npy' features")
    check_features_encoder(d.features_dir, d.encoder, "data.encoder")   # before any feature is read
    out = []
    for w, obs in zip(windows, observed):
        visual = read_segment_features(d.features_dir, w.clip_uid, [a.action_idx for a in w.observed],
                                       cfg.model.visual_dim)
        out.append(Window(w.key, w.clip_uid, visual, obs, [tuple(p) for p in w.future_labels().tolist()]))
    spans = [(w.observed[0].start_sec, w.observed[-1].end_sec) for w in windows]
    attach_intentions(cfg, split, out, spans, vocab)
    return out


# ============================================================================================== EK-55 / EGTEA

def _verb_set_ratios(cfg, split: str) -> list[float]:
    return list(cfg.data.train_ratios if split == "train" else cfg.data.eval_ratios)


def verb_set_windows(cfg, split: str) -> list[Window]:
    """EK-55 / EGTEA (EGO-TOPO split files or AntGPT's LTA JSON) and ``synthetic_verbset`` samples as windows."""
    from mmreason.data.anticipation import read_egotopo_split, read_lta_segments_json, verb_set_samples
    from mmreason.features import check_features_encoder

    d, z = cfg.data, cfg.model.num_future
    vocab = load_vocab(cfg)
    features = goals = None
    if d.dataset == "synthetic_verbset":
        videos, features, goals = synthetic_videos(cfg, split)
        file: str | Path = split
    else:
        file = _split_file(cfg, split)
        videos = read_lta_segments_json(file) if file.suffix == ".json" else read_egotopo_split(file)
    samples = verb_set_samples(videos, len(vocab.verbs), _verb_set_ratios(cfg, split))
    if d.max_windows:
        samples = samples[:d.max_windows]
    shown = [s.observed[-d.num_observed:] for s in samples]   # the N most recent observed segments
    observed = resolve_observed(cfg, split, [(s.last_observed_id, s.video_id, [(g.action_idx, g.verb_label,
                                                                                g.noun_label) for g in segs])
                                             for s, segs in zip(samples, shown)], vocab, file)
    if features is None and not d.features_dir:
        raise FileNotFoundError("data.features_dir is empty: set it to the folder of '<video_id>.npy' features")
    if features is None:
        check_features_encoder(d.features_dir, d.encoder, "data.encoder")
    out = []
    for s, segs, obs in zip(samples, shown, observed):
        rows = [g.action_idx for g in segs]
        visual = (features[s.video_id][rows] if features is not None
                  else read_segment_features(d.features_dir, s.video_id, rows, cfg.model.visual_dim))
        future = [(g.verb_label, g.noun_label) for g in s.future[:z]]
        intention = synthetic_intention(goals[s.video_id]) if goals is not None else ""
        out.append(Window(s.last_observed_id, s.video_id, np.asarray(visual, np.float32), obs, future, intention,
                          verb_set=s.target,
                          intention_source="synthetic goal text (stands in for a VLM)" if goals is not None else ""))
    if goals is None:
        spans = [(0.0, segs[-1].end_frame / d.fps if segs[-1].end_frame >= 0 else None) for segs in shown]
        attach_intentions(cfg, split, out, spans, vocab)
    return out


# ============================================================================================== intentions

def attach_intentions(cfg, split: str, out: list[Window], spans: Sequence[tuple[float, float | None]],
                      vocab: ActionVocab) -> None:
    """Fill ``Window.intention`` (and ``intention_source``) from the curated asset or the cached asset engine.

    ``spans[i]`` = (start, end) in seconds of window i's observed part in ``<video_dir>/<clip>.mp4``. Generation
    checks every clip's video first and announces a text-only model before anything loads."""
    d = cfg.data
    if d.intentions == "none":
        for w in out:
            w.intention, w.intention_source = "", "none"
        return
    if d.intentions == "asset":
        from mmreason.assets.io import load_assets

        records = load_assets("intentions", d.intention_dataset, root=d.knowledge_root)
        table = {str(r["id"]): r["intention"] for r in records}
        source = f"asset {d.intention_dataset}: {asset_intention_source(d.knowledge_root, d.intention_dataset)}"
    else:
        if not d.video_dir:
            raise FileNotFoundError("data.intentions=generate needs data.video_dir (folder of '<clip_uid>.mp4')")
        if any(end is None for _, end in spans):
            raise ValueError("data.intentions=generate needs the observed spans in frames: use the EGO-TOPO split "
                             "files (data.train_file / val_file = split/*.csv)")
        # one item per key (two EK-55/EGTEA ratios may end at the same observed segment: the same observation)
        by_key: dict[str, dict] = {}
        for w, (start, end) in zip(out, spans):
            by_key.setdefault(w.key, {"id": w.key, "video": str(Path(d.video_dir) / f"{w.clip}.mp4"),
                                      "start_s": start, "end_s": end, "observed": action_texts(w.observed, vocab)})
        items = list(by_key.values())
        table, kind = generate_intentions(items, f"{d.intention_dataset}_{split}", d.intention_backend,
                                          d.intention_model, d.knowledge_root, d.llm_cache_dir,
                                          num_frames=d.intention_frames, with_source=True)
        source = f"{kind}: {d.intention_model}"
    missing = [w.key for w in out if w.key not in table and w.clip not in table]
    if missing:
        raise KeyError(f"{len(missing)} windows have no intention in knowledge/{d.intention_dataset}/intentions.jsonl "
                       f"(first: {missing[0]!r}); generate them with mmreason generate intentions, or set "
                       "data.intentions=generate / none")
    for w in out:
        w.intention = table.get(w.key, table.get(w.clip, ""))
        w.intention_source = source


def asset_intention_source(knowledge_root: str, dataset: str) -> str:
    """``vlm`` / ``text_only`` as the intentions asset's manifest records it, else ``unknown``."""
    from mmreason.assets.io import asset_paths
    from mmreason.utils.io import read_json

    manifest = asset_paths("intentions", dataset, knowledge_root)["manifest"]
    if not Path(manifest).is_file():
        return "unknown (no manifest)"
    data = read_json(manifest)
    source = (data.get("options") or {}).get("intention_source", "unknown")
    return f"{source} ({data.get('model_id', '?')})"


class TextOnlyView:
    """A text-only model behind the intention interface: it is shown no frames (the requests' images are dropped),
    so its intention comes from the observed actions alone, a reduced stand-in for ICVL's VLM."""

    is_vlm = False

    def __init__(self, backend):
        self.backend = backend
        self.name, self.model_id = backend.name, backend.model_id
        self.revision = getattr(backend, "revision", "")

    def generate(self, requests):
        from dataclasses import replace

        return self.backend.generate([replace(r, images=()) for r in requests])

    def library_versions(self):
        return self.backend.library_versions()


class ImageRequestGuard:
    """Passes requests to a VLM backend; a failure on a request with frames becomes one error naming the model and
    the clip (answers of earlier batches are already in the response cache, so nothing generated is lost)."""

    def __init__(self, backend, model: str, cache_dir: str):
        self.backend, self.model, self.cache_dir = backend, model, cache_dir
        self.name, self.model_id = backend.name, backend.model_id
        self.revision = getattr(backend, "revision", "")
        self.is_vlm = getattr(backend, "is_vlm", True)

    def generate(self, requests):
        try:
            return self.backend.generate(requests)
        except (ValueError, RuntimeError, OSError) as e:   # what processors and vLLM raise on inputs they refuse
            clips = [r.tag for r in requests if r.images]
            if not clips:
                raise
            shown = ", ".join(clips[:8]) + (f", ... ({len(clips)} clips)" if len(clips) > 8 else "")
            raise RuntimeError(f"intention VLM {self.model!r} rejected the frames of clips {shown} "
                               f"({type(e).__name__}: {e}); use an image-text-to-text model as data.intention_model. "
                               f"Answers generated before this batch are kept in {self.cache_dir}") from e

    def library_versions(self):
        return self.backend.library_versions()


_ANNOUNCED: set[str] = set()


def announce_text_only(model: str) -> None:
    """Say once per model and process, loudly, that intentions will not see the video."""
    if model in _ANNOUNCED:
        return
    _ANNOUNCED.add(model)
    warnings.warn(f"ICVL intention model {model!r} is TEXT-ONLY: it is shown no frames, so its intentions come from "
                  "the observed action labels alone, not from the video (recorded as intention_source: text_only). "
                  "Set data.intention_model to an image-text-to-text model (e.g. HuggingFaceTB/SmolVLM-256M-Instruct)"
                  " for ICVL's VLM intentions.", UserWarning, stacklevel=3)


def model_is_vlm(model: str) -> bool | None:
    """Whether ``model`` (an id or folder) is an image-text-to-text model, from its config alone (no weights);
    None when the config cannot be read here (e.g. an uncached hub id offline)."""
    if model == "embedded":   # the packaged Gemma 3 270M
        return False
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError, KeyError):
        return None
    from mmreason.llm.hf import _is_image_text_to_text

    return _is_image_text_to_text(config)


def intention_llm(backend: str, model: str):
    """The intention backend (None for ``replay``); a text-only model is announced and wrapped in
    :class:`TextOnlyView`."""
    from mmreason.llm import make_backend

    if model_is_vlm(model) is False:
        announce_text_only(model)
    llm = make_backend(backend, model=model) if backend != "replay" else None
    if llm is not None and getattr(llm, "is_vlm", True) is False:
        announce_text_only(model)
        llm = TextOnlyView(llm)
    return llm


def generate_intentions(items: list[dict], dataset: str, backend: str | object, model: str, knowledge_root: str,
                        cache_dir: str, num_frames: int = 8, with_source: bool = False):
    """``{item id: intention}`` through :func:`mmreason.assets.build.generate_assets` (answers cached per clip);
    with ``with_source``, ``(table, "vlm" | "text_only")``.

    A text-only model (``model_is_vlm`` or the built backend says so) is shown no frames and its records and manifest
    say ``intention_source: text_only``. Every clip is checked before the model loads; frames are then decoded
    batch by batch."""
    from mmreason.assets.build import generate_assets
    from mmreason.assets.intentions import check_clip_items
    from mmreason.assets.io import read_records

    text_only = (getattr(backend, "is_vlm", True) is False if not isinstance(backend, str)
                 else model_is_vlm(model) is False)
    check_clip_items(items, 0 if text_only else num_frames)   # before any model loads
    llm = intention_llm(backend, model) if isinstance(backend, str) else backend
    text_only = text_only or getattr(llm, "is_vlm", True) is False
    if text_only:
        announce_text_only(model)
    elif llm is not None:
        llm = ImageRequestGuard(llm, model, cache_dir)
    source = "text_only" if text_only else "vlm"
    summary = generate_assets("intentions", dataset, backend=backend if isinstance(backend, str) else "custom",
                              model=model, items=items, llm=llm, knowledge_root=knowledge_root, cache_dir=cache_dir,
                              embed=False, progress=False, echo=lambda s: None,
                              num_frames=0 if text_only else num_frames, options={"intention_source": source})
    if summary["failed"]:
        raise RuntimeError(f"{summary['failed']} intentions could not be parsed; see "
                           f"{Path(summary['path']).with_suffix('.manifest.json')}")
    table = {str(r["id"]): r["intention"] for r in read_records(summary["path"])}
    return (table, source) if with_source else table


# ============================================================================================== bank + dataset

def load_windows(cfg, split: str) -> list[Window]:
    if split not in SPLIT_OFFSET:
        raise ValueError(f"split must be one of {list(SPLIT_OFFSET)}, got {split!r}")
    if cfg.data.dataset == "synthetic":
        windows = synthetic_windows(cfg, split)
        if observed_source(cfg, split) == "predictions":   # the recogniser path on synthetic clips
            vocab = synthetic_vocab(cfg)
            observed = resolve_observed(cfg, split, [(w.key, w.clip, [(i, v, n) for i, (v, n) in enumerate(w.observed)])
                                                     for w in windows], vocab)
            for w, obs in zip(windows, observed):
                w.observed = obs
        return windows
    if protocol(cfg) == "verb_set":
        return verb_set_windows(cfg, split)
    return ego4d_windows(cfg, split)


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

    Item: ``{"key", "visual" [n, D], "prompt" (str with the visual placeholder), "intention", "target" (str),
    "future" [Z, 2] long (-1 beyond the annotated future)}``, plus ``"verb_set"`` [V] bool for the EK-55/EGTEA
    protocol. Training windows never take examples from their own clip.
    """

    def __init__(self, cfg, windows: list[Window], bank: ExampleBank, vocab: ActionVocab, embedder,
                 exclude_own_clip: bool = True):
        m = cfg.model
        self.windows, self.vocab, self.num_future = windows, vocab, m.num_future
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
        future = torch.full((self.num_future, 2), -1, dtype=torch.long)
        if w.future:
            future[:len(w.future)] = torch.tensor(w.future[:self.num_future], dtype=torch.long).reshape(-1, 2)
        item = {"key": w.key, "visual": torch.from_numpy(w.visual), "prompt": self.prompts[i],
                "intention": w.intention, "target": self.targets[i], "future": future}
        if w.verb_set is not None:
            item["verb_set"] = torch.from_numpy(np.asarray(w.verb_set, dtype=bool))
        return item


def collate(items: list[dict]) -> dict:
    """Stack tensors, keep texts as lists; visual tokens of different counts stay a list of ``[n_b, D]``."""
    visual = [it["visual"] for it in items]
    out = {"key": [it["key"] for it in items],
           "visual": torch.stack(visual) if len({v.shape for v in visual}) == 1 else visual,
           "prompt": [it["prompt"] for it in items], "intention": [it["intention"] for it in items],
           "target": [it["target"] for it in items], "future": torch.stack([it["future"] for it in items])}
    if "verb_set" in items[0]:
        out["verb_set"] = torch.stack([it["verb_set"] for it in items])
    return out


def build_dataset(cfg, split: str) -> ICVLDataset:
    vocab = load_vocab(cfg)
    return ICVLDataset(cfg, load_windows(cfg, split), example_bank(cfg), vocab, text_embedder(cfg.model.text_embedder))


@lru_cache(maxsize=2)
def text_embedder(name: str):
    """One embedder per name in this process (the MiniLM load takes seconds)."""
    return make_text_embedder(name)
